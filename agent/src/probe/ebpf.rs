//! Loads and attaches Orca's kernel programs and reads what they collect.
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use orca_ebpf_common::{ConnStats, Event, ProbeConfig, counter};

use super::offsets::{self, OffsetError};

/// The kernel object, built by build.rs (aya-build) and embedded in the binary.
#[cfg(not(orca_ebpf_skipped))]
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/orca-probes"));
#[cfg(orca_ebpf_skipped)]
static PROBES: &[u8] = &[];

/// (program, tracepoint category, tracepoint name)
const ATTACHMENTS: &[(&str, &str, &str)] = &[
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sock_send_length", "sock", "sock_send_length"),
    ("sock_recv_length", "sock", "sock_recv_length"),
    ("tcp_retransmit_skb", "tcp", "tcp_retransmit_skb"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("task_newtask", "task", "task_newtask"),
];

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries per batch; must be at least the longest hash bucket, which it is by far.
const BATCH: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Names of the programs as the kernel lists them (for `bpf_stats`).
pub fn program_names() -> impl Iterator<Item = &'static str> {
    ATTACHMENTS.iter().map(|(name, _, _)| *name)
}

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("this orca-agent was built with AYA_BUILD_SKIP=1 and carries no eBPF programs")]
    NotBuilt,
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(
        "loading the eBPF programs failed: {0}; the agent needs root or CAP_BPF + CAP_PERFMON \
         and a kernel with BPF ring buffers (5.8+)"
    )]
    Load(#[source] Box<aya::EbpfError>),
    #[error("eBPF program {program} failed to load or attach to {category}:{name}: {source}")]
    Attach {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("eBPF map {0} missing or of the wrong type: {1}")]
    Map(&'static str, String),
}

/// Loaded, attached programs and their maps. Dropping it detaches everything.
pub struct EbpfProbe {
    _ebpf: Ebpf,
    /// Kernel-side diagnostics (aya-log), when asked for.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    ring: RingBuf<MapData>,
    conns: MapData,
    counters: PerCpuArray<MapData, u64>,
    batch_keys: Vec<u64>,
    batch_values: Vec<ConnStats>,
}

impl std::fmt::Debug for EbpfProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfProbe").finish_non_exhaustive()
    }
}

/// Counters kept by the kernel programs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub conn_map_full: u64,
    pub submitted: u64,
}

impl EbpfProbe {
    /// Loads and attaches the programs. With `netns_inum`, only sockets of that network
    /// namespace are tracked (an agent per network namespace on a shared kernel).
    /// `max_connections` sizes the kernel's connection map (connections beyond it are
    /// counted as lost).
    ///
    /// `log_level` turns on the programs' own diagnostics (aya-log), forwarded to this
    /// process's log; `None` leaves them off (they then cost one comparison).
    pub fn load(
        netns_inum: Option<u32>,
        max_connections: u32,
        log_level: Option<log::Level>,
    ) -> Result<Self, EbpfError> {
        if PROBES.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let config: ProbeConfig = offsets::probe_config(netns_inum)?;
        // Kernel 6.x accounts BPF memory to the memory cgroup; the old RLIMIT_MEMLOCK bump is
        // only needed on older kernels, and may be refused (no CAP_SYS_RESOURCE): warn only.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: setrlimit with a valid pointer to an initialised struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
            tracing::debug!(
                "could not raise RLIMIT_MEMLOCK (fine on kernels that charge BPF memory to cgroups)"
            );
        }
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .override_global(aya_log::LEVEL, &log_level.map_or(0u8, |l| l as u8), false)
            .map_max_entries("CONNS", max_connections.max(1024))
            .load(PROBES)
            .map_err(|e| EbpfError::Load(Box::new(e)))?;
        for (program, category, name) in ATTACHMENTS {
            let attach = |ebpf: &mut Ebpf| -> Result<(), aya::programs::ProgramError> {
                let tp: &mut TracePoint = ebpf
                    .program_mut(program)
                    .ok_or(aya::programs::ProgramError::UnexpectedProgramType)?
                    .try_into()?;
                tp.load()?;
                tp.attach(category, name)?;
                Ok(())
            };
            attach(&mut ebpf).map_err(|source| EbpfError::Attach {
                program,
                category,
                name,
                source: Box::new(source),
            })?;
        }
        let logger = match log_level {
            Some(_) => match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(logger) => Some(logger),
                Err(err) => {
                    tracing::warn!(%err, "eBPF diagnostics unavailable");
                    None
                }
            },
            None => None,
        };
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or(EbpfError::Map("EVENTS", "missing".into()))?,
        )
        .map_err(|e| EbpfError::Map("EVENTS", e.to_string()))?;
        let conns = match ebpf.take_map("CONNS") {
            Some(Map::HashMap(data)) => data,
            _ => return Err(EbpfError::Map("CONNS", "missing or not a hash map".into())),
        };
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or(EbpfError::Map("COUNTERS", "missing".into()))?,
        )
        .map_err(|e| EbpfError::Map("COUNTERS", e.to_string()))?;
        // Loading parsed the kernel's BTF (aya does so in `EbpfLoader::new`); hand the freed
        // memory back to the system rather than keep it in the allocator.
        // SAFETY: malloc_trim only releases free memory.
        unsafe { libc::malloc_trim(0) };
        Ok(Self {
            _ebpf: ebpf,
            logger,
            ring,
            conns,
            counters,
            batch_keys: vec![0; BATCH],
            // SAFETY: ConnStats is plain old data; all-zero is a valid value.
            batch_values: vec![unsafe { std::mem::zeroed() }; BATCH],
        })
    }

    /// The ring buffer's file descriptor, readable when the kernel wakes the reader.
    pub fn ring_fd(&self) -> std::os::fd::RawFd {
        self.ring.as_raw_fd()
    }

    /// Hands every pending event to `handle`; returns how many there were.
    pub fn drain(&mut self, mut handle: impl FnMut(&Event)) -> usize {
        if let Some(logger) = &mut self.logger {
            logger.flush();
        }
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            if item.len() >= std::mem::size_of::<Event>() {
                // SAFETY: the kernel wrote a whole `Event` (checked length); read unaligned.
                let event = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const Event) };
                handle(&event);
                n += 1;
            }
        }
        n
    }

    /// Hands every tracked connection's live counters to `visit`, reading the kernel map in
    /// batches (a few syscalls for tens of thousands of connections, instead of one each).
    pub fn for_each_conn(&mut self, mut visit: impl FnMut(u64, &ConnStats)) -> std::io::Result<()> {
        let fd = self.conns.fd().as_fd().as_raw_fd();
        let mut in_batch: u64 = 0;
        let mut out_batch: u64 = 0;
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { &raw mut in_batch as u64 },
                out_batch: &raw mut out_batch as u64,
                keys: self.batch_keys.as_mut_ptr() as u64,
                values: self.batch_values.as_mut_ptr() as u64,
                count: BATCH as u32,
                map_fd: fd as u32,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: BPF_MAP_LOOKUP_BATCH with buffers of `count` keys and values of the
            // map's key and value sizes, and batch cursors of 8 bytes (hash maps use 4).
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &raw mut attr,
                    std::mem::size_of::<BatchAttr>() as u32,
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            for i in 0..attr.count as usize {
                visit(self.batch_keys[i], &self.batch_values[i]);
            }
            match err {
                None => {}
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Some(e) => return Err(e),
            }
            in_batch = out_batch;
            first = false;
        }
    }

    pub fn counters(&self) -> KernelCounters {
        let sum = |index: u32| -> u64 {
            self.counters
                .get(&index, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        KernelCounters {
            ringbuf_full: sum(counter::RINGBUF_FULL),
            conn_map_full: sum(counter::CONN_MAP_FULL),
            submitted: sum(counter::EVENTS_SUBMITTED),
        }
    }
}
