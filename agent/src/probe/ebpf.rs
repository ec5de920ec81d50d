//! Loads and attaches Orca's kernel programs and reads what they collect.
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray, RingBuf},
    programs::{FExit, RawTracePoint, RawTracePointRunOptions, TestRun as _, TracePoint},
};
use orca_ebpf_common::{COUNTER_SLOTS, CounterSlot, Event, ProbeConfig, config_flag, counter};

use super::offsets::{self, OffsetError};

/// The kernel object, built by build.rs (aya-build) and embedded in the binary.
#[cfg(not(orca_ebpf_skipped))]
static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/orca-probes"));
#[cfg(orca_ebpf_skipped)]
static PROBES: &[u8] = &[];

/// (program, tracepoint category, tracepoint name)
const ATTACHMENTS: &[(&str, &str, &str)] = &[
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("task_newtask", "task", "task_newtask"),
];

/// The program user space runs to read open connections' counters (never attached).
pub const COUNTER_READER: &str = "read_counters";
/// The fexit program reporting accepted connections, and the kernel function it follows.
const ACCEPT_PROGRAM: &str = "inet_csk_accept";

/// Names of all of Orca's programs, attached or run on demand (for `bpf_stats`; the kernel
/// lists them cut to 15 characters).
pub fn program_names() -> impl Iterator<Item = &'static str> {
    ATTACHMENTS
        .iter()
        .map(|(name, _, _)| *name)
        .chain([ACCEPT_PROGRAM, COUNTER_READER])
}

/// Hands memory freed after a parse of the kernel's BTF back to the system, so that the next
/// parse does not stack on top of it in the allocator.
fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
}

/// `COUNTER_SLOTS_MAP` mapped into this process: the array's values, shared with the kernel.
struct SharedSlots {
    slots: NonNull<CounterSlot>,
    len: usize,
}

impl SharedSlots {
    fn map(map: &MapData) -> std::io::Result<Self> {
        let len = COUNTER_SLOTS as usize;
        let bytes = len * std::mem::size_of::<CounterSlot>();
        // SAFETY: maps the array's value area (the map was created BPF_F_MMAPABLE with
        // `len` values of CounterSlot's size, a multiple of 8, so values are contiguous).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            slots: NonNull::new(addr.cast()).ok_or_else(std::io::Error::last_os_error)?,
            len,
        })
    }

    fn slots(&mut self) -> &mut [CounterSlot] {
        // SAFETY: `len` values mapped in `map`; the kernel writes them only while this
        // process waits in BPF_PROG_TEST_RUN.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_ptr(), self.len) }
    }
}

impl Drop for SharedSlots {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `map` mapped.
        unsafe {
            libc::munmap(
                self.slots.as_ptr().cast(),
                self.len * std::mem::size_of::<CounterSlot>(),
            )
        };
    }
}

// SAFETY: the mapping is owned by this value and only touched through `&mut self`.
unsafe impl Send for SharedSlots {}

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
    ebpf: Ebpf,
    /// Kernel-side diagnostics (aya-log), when asked for.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    slots: SharedSlots,
    /// Kept alive with the mapping it reads through.
    _slot_map: MapData,
    /// Why accepted connections are attributed to the listening process rather than to the
    /// process that accepted them; None when they are attributed to the accepting process.
    listener_owns_accepted: Option<String>,
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
    pub submitted: u64,
}

impl EbpfProbe {
    /// Loads and attaches the programs. With `netns_inum`, only sockets of that network
    /// namespace are tracked (an agent per network namespace on a shared kernel).
    ///
    /// `log_level` turns on the programs' own diagnostics (aya-log), forwarded to this
    /// process's log; `None` leaves them off (they then cost one comparison).
    ///
    /// Accepted connections are reported when accept() returns them, naming the accepting
    /// process (an fexit program, which needs the kernel's BTF and BPF trampolines); where that
    /// cannot be used, the programs are loaded again to report them at the handshake instead,
    /// owned by the listening process, and a warning says why.
    pub fn load(netns_inum: Option<u32>, log_level: Option<log::Level>) -> Result<Self, EbpfError> {
        if PROBES.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let config: ProbeConfig = offsets::probe_config(netns_inum)?;
        match Self::load_with(config, log_level, true) {
            Err(err @ EbpfError::Attach { program, .. }) if program == ACCEPT_PROGRAM => {
                tracing::warn!(
                    %err,
                    "accepted connections will be reported at the handshake, owned by the \
                     listening process, instead of by the process that accepts them"
                );
                trim_heap();
                let mut config = config;
                config.flags |= config_flag::ACCEPT_AT_HANDSHAKE;
                let mut probe = Self::load_with(config, log_level, false)?;
                probe.listener_owns_accepted = Some(err.to_string());
                Ok(probe)
            }
            other => other,
        }
    }

    fn load_with(
        mut config: ProbeConfig,
        log_level: Option<log::Level>,
        accept_at_accept: bool,
    ) -> Result<Self, EbpfError> {
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
        // The fexit program needs aya's view of the kernel's BTF, which the loader also uses.
        // `EbpfLoader::new` parses one copy; when the fexit program is wanted, that copy is
        // dropped before another is parsed for both, so that only one (tens of MB) is in
        // memory at a time.
        let btf: Option<Btf>;
        let mut loader = EbpfLoader::new();
        let mut listener_owns_accepted = None;
        if accept_at_accept {
            loader.btf(None);
            trim_heap();
            btf = Btf::from_sys_fs()
                .inspect_err(|err| {
                    listener_owns_accepted = Some(format!("kernel BTF unreadable: {err}"));
                })
                .ok();
            loader.btf(btf.as_ref());
        } else {
            btf = None;
        }
        if btf.is_none() {
            config.flags |= config_flag::ACCEPT_AT_HANDSHAKE;
        }
        let mut ebpf = loader
            .override_global("CONFIG", &config, true)
            .override_global(aya_log::LEVEL, &log_level.map_or(0u8, |l| l as u8), false)
            .load(PROBES)
            .map_err(|e| EbpfError::Load(Box::new(e)))?;
        // First, so that a kernel refusing it costs no attach and detach of the others.
        if let Some(btf) = &btf {
            let attach = |ebpf: &mut Ebpf| -> Result<(), aya::programs::ProgramError> {
                let program: &mut FExit = ebpf
                    .program_mut(ACCEPT_PROGRAM)
                    .ok_or(aya::programs::ProgramError::UnexpectedProgramType)?
                    .try_into()?;
                program.load(ACCEPT_PROGRAM, btf)?;
                program.attach()?;
                Ok(())
            };
            attach(&mut ebpf).map_err(|source| EbpfError::Attach {
                program: ACCEPT_PROGRAM,
                category: "fexit",
                name: ACCEPT_PROGRAM,
                source: Box::new(source),
            })?;
        }
        drop(btf);
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
        let reader: &mut RawTracePoint = ebpf
            .program_mut(COUNTER_READER)
            .ok_or(EbpfError::Map(COUNTER_READER, "program missing".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| {
                EbpfError::Map(COUNTER_READER, e.to_string())
            })?;
        reader.load().map_err(|source| EbpfError::Attach {
            program: COUNTER_READER,
            category: "raw_tracepoint",
            name: "(run on demand)",
            source: Box::new(source),
        })?;
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
        let slot_map = match ebpf.take_map("COUNTER_SLOTS_MAP") {
            Some(Map::Array(data)) => data,
            _ => {
                return Err(EbpfError::Map(
                    "COUNTER_SLOTS_MAP",
                    "missing or not an array".into(),
                ));
            }
        };
        let slots = SharedSlots::map(&slot_map)
            .map_err(|e| EbpfError::Map("COUNTER_SLOTS_MAP", format!("mmap: {e}")))?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or(EbpfError::Map("COUNTERS", "missing".into()))?,
        )
        .map_err(|e| EbpfError::Map("COUNTERS", e.to_string()))?;
        // Loading parsed the kernel's BTF (aya does so in `EbpfLoader::new`); hand the freed
        // memory back to the system rather than keep it in the allocator.
        trim_heap();
        Ok(Self {
            ebpf,
            logger,
            ring,
            counters,
            slots,
            _slot_map: slot_map,
            listener_owns_accepted,
        })
    }

    /// Why accepted connections are attributed to the listening process instead of the
    /// process that accepted them (the fexit program could not be used), if they are.
    pub fn listener_owns_accepted(&self) -> Option<&str> {
        self.listener_owns_accepted.as_deref()
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

    /// Reads the live counters of the sockets at `sks` (connections' [`Event::sk`]) from the
    /// kernel, `COUNTER_SLOTS` per program run, handing each answer to `visit`. A socket closed
    /// meanwhile answers with a closed state or other ports; the caller checks.
    pub fn read_counters(
        &mut self,
        sks: &[u64],
        mut visit: impl FnMut(&CounterSlot),
    ) -> Result<(), aya::programs::ProgramError> {
        for chunk in sks.chunks(COUNTER_SLOTS as usize) {
            let slots = self.slots.slots();
            for (slot, sk) in slots.iter_mut().zip(chunk) {
                slot.sk = *sk;
            }
            let reader: &RawTracePoint = self
                .ebpf
                .program(COUNTER_READER)
                .ok_or(aya::programs::ProgramError::NotLoaded)?
                .try_into()?;
            let mut options = RawTracePointRunOptions::new();
            options.args[0] = chunk.len() as u64;
            reader.test_run(options)?;
            for slot in &self.slots.slots()[..chunk.len()] {
                visit(slot);
            }
        }
        Ok(())
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
            submitted: sum(counter::EVENTS_SUBMITTED),
        }
    }
}
