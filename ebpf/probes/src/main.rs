//! Orca's kernel programs. Built for `bpfel-unknown-none` with nightly by the agent's build
//! script (aya-build) and embedded in `orca-agent`.
//!
//! Design:
//! - No per-packet programs and no per-connection map: the kernel already counts bytes and
//!   retransmits per socket (`struct tcp_sock`, what `ss -ti` shows). They are read from the
//!   socket when it closes, and for open connections by `read_counters`, which user space runs
//!   on demand (`BPF_PROG_TEST_RUN`) over the sockets it asks about. Only lifecycle changes
//!   (connect started, handshake done, close, failed connect, listen, exec, fork, exit) are
//!   sent through the `EVENTS` ring buffer; user space joins a connection's owner (from
//!   CONNECTING, in the connecting process) to its 4-tuple (from CONNECT) by socket address.
//! - Every tracepoint field offset comes from `CONFIG`, which the loader fills from the tracepoint
//!   format files and from BTF; nothing is hard-coded to one kernel.
//! - An event that does not fit in the ring buffer is counted in `COUNTERS`, never dropped
//!   silently.
//! - Diagnostics go through aya-log; the loader sets its level to off unless the operator asks
//!   (`orca-agent run --ebpf-log debug`).
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_MMAPABLE, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_task,
            bpf_ktime_get_ns, bpf_probe_read_kernel as probe_read_raw,
        },
    },
    macros::{fexit, map, raw_tracepoint, tracepoint},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{FExitContext, RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::debug;
use core::mem::MaybeUninit;
use orca_ebpf_common::{
    AF_INET, AF_INET6, COUNTER_SLOTS, CounterSlot, Event, IPPROTO_TCP, ProbeConfig, config_flag,
    counter, direction, event_kind, tcp_state,
};

/// Filled by the loader (`EbpfLoader::set_global`) before the programs are loaded.
#[unsafe(no_mangle)]
static CONFIG: ProbeConfig = ProbeConfig {
    sss_skaddr: 0,
    sss_oldstate: 0,
    sss_newstate: 0,
    sss_sport: 0,
    sss_dport: 0,
    sss_family: 0,
    sss_protocol: 0,
    sss_saddr: 0,
    sss_daddr: 0,
    sss_saddr_v6: 0,
    sss_daddr_v6: 0,
    exec_pid: 0,
    exit_pid: 0,
    exit_group_dead: 0,
    newtask_pid: 0,
    newtask_clone_flags: 0,
    task_exit_code: 0,
    task_real_parent: 0,
    task_tgid: 0,
    tcp_bytes_sent: 0,
    tcp_bytes_retrans: 0,
    tcp_bytes_received: 0,
    tcp_total_retrans: 0,
    sock_flags: 0,
    sock_done_bit: 0,
    sock_state: 0,
    sock_num: 0,
    sock_dport: 0,
    sock_family: 0,
    sock_daddr: 0,
    sock_rcv_saddr: 0,
    sock_v6_daddr: 0,
    sock_v6_rcv_saddr: 0,
    sock_net: 0,
    net_inum: 0,
    netns_inum: 0,
    flags: 0,
};

const RING_BYTES: u32 = 1 << 20;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

/// Shared with user space (mmap): sockets whose live counters it wants, and the answers.
#[map]
static COUNTER_SLOTS_MAP: Array<CounterSlot> =
    Array::with_max_entries(COUNTER_SLOTS, BPF_F_MMAPABLE);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const CLONE_THREAD: u64 = 0x0001_0000;

#[inline(always)]
fn config() -> ProbeConfig {
    // SAFETY: CONFIG is a read-only global the loader wrote before load; volatile keeps the
    // compiler from folding the zero initialiser.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Adds one to a per-CPU counter (an inlined array access, no helper call); returns the new
/// value.
#[inline(always)]
fn count(index: u32) -> u64 {
    match COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        Some(slot) => unsafe {
            *slot += 1;
            *slot
        },
        None => 0,
    }
}

/// Wake the reader once every this many events per CPU; otherwise it drains on its timer.
const WAKE_EVERY: u64 = 1024;

/// A tracepoint record copied to the stack with one helper call, so each field read after
/// that is a plain load (the offsets are only known at load time, and the verifier does not
/// allow variable offsets into the context itself).
///
/// Nothing here may zero a byte array: on BPF the compiler turns that into a call to a
/// byte-at-a-time `memset` loop, which once cost more than the programs' own work. Buffers
/// start uninitialised and the helper fills them.
struct Record<const N: usize> {
    buf: [u8; N],
}

impl<const N: usize> Record<N> {
    #[inline(always)]
    fn load(ctx: &TracePointContext) -> Option<Self> {
        // The per-CPU trace buffer behind a record is larger than N.
        Self::load_from(ctx.as_ptr() as u64)
    }

    /// Copies N bytes of kernel memory at `base`.
    #[inline(always)]
    fn load_from(base: u64) -> Option<Self> {
        let mut buf = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: reads N bytes at `base` into `buf`; bpf_probe_read_kernel fails cleanly on
        // a bad address.
        let ret = unsafe {
            probe_read_raw(
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
                base as *const c_void,
            )
        };
        if ret != 0 {
            return None;
        }
        // SAFETY: the helper wrote all N bytes.
        Some(Self {
            buf: unsafe { buf.assume_init() },
        })
    }

    #[inline(always)]
    fn get<T: Copy>(&self, offset: u32) -> Option<T> {
        let offset = offset as usize;
        if offset + core::mem::size_of::<T>() > N {
            return None;
        }
        // SAFETY: bounds checked above; unaligned read of plain data.
        Some(unsafe { core::ptr::read_unaligned(self.buf.as_ptr().add(offset) as *const T) })
    }
}

/// The sock:inet_sock_set_state record is 72 bytes on current kernels.
const STATE_RECORD: usize = 96;

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: offsets come from the tracepoint's own format description.
    unsafe { ctx.read_at::<T>(offset as usize) }.ok()
}

/// CLOCK_MONOTONIC. (The coarse clock would be cheaper but is refused in tracepoint
/// programs; read it once per event.)
#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn cgroup_id() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
fn tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The current task's command name (zeroed by the helper on failure).
#[inline(always)]
fn comm() -> [u8; 16] {
    let mut name = MaybeUninit::<[u8; 16]>::uninit();
    // SAFETY: the helper writes all 16 bytes, zeroes on failure.
    unsafe {
        bpf_get_current_comm(name.as_mut_ptr() as *mut c_void, 16);
        name.assume_init()
    }
}

/// Zeroes a value with word stores (see `Record` for why not `write_bytes` or a literal with
/// runs of zero fields). `T` must be 8-byte aligned with a size that is a multiple of 8.
#[inline(always)]
fn zero_words<T>(value: *mut T) {
    const { assert!(core::mem::size_of::<T>() % 8 == 0 && core::mem::align_of::<T>() == 8) };
    let words = value as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: `value` points to a T, which is a whole number of aligned words.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// Reads `*(base + offset)` from kernel memory.
#[inline(always)]
fn kread<T>(base: u64, offset: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel validates the address and fails cleanly.
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

/// Reads `*(base + offset)` from kernel memory, zero when unreadable. No branch on the result
/// (the helper zeroes the destination on failure), which keeps `read_counters`' loop simple
/// enough for the verifier.
#[inline(always)]
fn kread_or_zero<T: Copy>(base: u64, offset: u32) -> T {
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: the helper validates the address and writes all of `value`, zeroes on failure.
    unsafe {
        probe_read_raw(
            value.as_mut_ptr() as *mut c_void,
            core::mem::size_of::<T>() as u32,
            (base + offset as u64) as *const c_void,
        );
        value.assume_init()
    }
}

/// Tgid of the current task's parent (task->real_parent->tgid), 0 when BTF offsets are missing.
#[inline(always)]
fn parent_tgid(cfg: &ProbeConfig) -> u32 {
    if cfg.task_real_parent == 0 {
        return 0;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let parent: u64 = kread(task, cfg.task_real_parent).unwrap_or(0);
    kread::<i32>(parent, cfg.task_tgid).unwrap_or(0) as u32
}

/// Whether a socket belongs to the network namespace this agent watches.
#[inline(always)]
fn in_watched_netns(cfg: &ProbeConfig, sk: u64) -> bool {
    if cfg.flags & config_flag::NETNS_FILTER == 0 {
        return true;
    }
    let net: u64 = match kread(sk, cfg.sock_net) {
        Some(net) => net,
        None => return false,
    };
    match kread::<u32>(net, cfg.net_inum) {
        Some(inum) => inum == cfg.netns_inum,
        None => false,
    }
}

/// Reserves and submits one event. The reader is woken once every `WAKE_EVERY` events per CPU
/// (it also drains every 100 ms), so a busy host costs no wakeup per event.
#[inline(always)]
fn submit(fill: impl FnOnce(&mut Event)) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            let ev = entry.as_mut_ptr();
            zero_words(ev);
            // SAFETY: the reservation is sizeof(Event) bytes, zeroed above.
            unsafe { fill(&mut *ev) };
            let flags = if count(counter::EVENTS_SUBMITTED) % WAKE_EVERY == 0 {
                BPF_RB_FORCE_WAKEUP
            } else {
                BPF_RB_NO_WAKEUP
            };
            entry.submit(flags as u64);
        }
        None => {
            count(counter::RINGBUF_FULL);
        }
    }
}

/// Where a record keeps the local and remote address: (IPv4 local, IPv4 remote, IPv6 local,
/// IPv6 remote) offsets.
type AddrOffsets = (u32, u32, u32, u32);

/// Copies the local and remote address of `family` from a record into the event.
#[inline(always)]
fn read_addrs<const N: usize>(
    rec: &Record<N>,
    (local4, remote4, local6, remote6): AddrOffsets,
    family: u16,
    ev: &mut Event,
) {
    // The event is zeroed: only write what the record has.
    if family == AF_INET {
        if let Some(s) = rec.get::<[u8; 4]>(local4) {
            ev.saddr[..4].copy_from_slice(&s);
        }
        if let Some(d) = rec.get::<[u8; 4]>(remote4) {
            ev.daddr[..4].copy_from_slice(&d);
        }
    } else {
        if let Some(s) = rec.get(local6) {
            ev.saddr = s;
        }
        if let Some(d) = rec.get(remote6) {
            ev.daddr = d;
        }
    }
}

/// The address offsets of the sock:inet_sock_set_state record.
#[inline(always)]
fn state_record_addrs(cfg: &ProbeConfig) -> AddrOffsets {
    (
        cfg.sss_saddr,
        cfg.sss_daddr,
        cfg.sss_saddr_v6,
        cfg.sss_daddr_v6,
    )
}

/// A socket's data bytes sent and received and its retransmits, from the kernel's own
/// counters in `struct tcp_sock`: sent counts first transmissions only (`bytes_sent` counts
/// retransmitted bytes again), and a received FIN, which `bytes_received` counts as one byte,
/// is taken off (`SOCK_DONE` is set exactly when one was).
#[inline(always)]
fn tcp_counters(cfg: &ProbeConfig, sk: u64) -> (u64, u64, u32) {
    let sent: u64 = kread_or_zero(sk, cfg.tcp_bytes_sent);
    let received: u64 = kread_or_zero(sk, cfg.tcp_bytes_received);
    let segments: u32 = kread_or_zero(sk, cfg.tcp_total_retrans);
    // Nothing was sent twice unless a segment was retransmitted (the common case).
    let retrans: u64 = if segments == 0 {
        0
    } else {
        kread_or_zero(sk, cfg.tcp_bytes_retrans)
    };
    let flags: u64 = kread_or_zero(sk, cfg.sock_flags);
    let fin = (flags >> (cfg.sock_done_bit & 63)) & 1;
    (
        sent.saturating_sub(retrans),
        received.saturating_sub(fin),
        segments,
    )
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let cfg = config();
    // Most transitions (FIN_WAIT*, CLOSE_WAIT, LAST_ACK, TIME_WAIT, SYN_RECV) matter to no
    // one here: leave after reading just the new state.
    let new: i32 = read(&ctx, cfg.sss_newstate).unwrap_or(0);
    if !matches!(
        new,
        tcp_state::SYN_SENT | tcp_state::ESTABLISHED | tcp_state::CLOSE | tcp_state::LISTEN
    ) {
        return 0;
    }
    let Some(rec) = Record::<STATE_RECORD>::load(&ctx) else {
        return 0;
    };
    let protocol: u16 = rec.get(cfg.sss_protocol).unwrap_or(0);
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let family: u16 = rec.get(cfg.sss_family).unwrap_or(0);
    if family != AF_INET && family != AF_INET6 {
        return 0;
    }
    let sk: u64 = rec.get(cfg.sss_skaddr).unwrap_or(0);
    let old: i32 = rec.get(cfg.sss_oldstate).unwrap_or(0);
    if sk == 0 || !in_watched_netns(&cfg, sk) {
        return 0;
    }

    match (old, new) {
        // connect() in the caller's context: who is connecting. The source port is not
        // chosen yet; CONNECT (or CONNECT_FAILED) carries the 4-tuple.
        (tcp_state::CLOSE, tcp_state::SYN_SENT) => {
            let pid = tgid();
            let cg = cgroup_id();
            let name = comm();
            debug!(&ctx, "connect: pid {} sk {:x}", pid, sk);
            // No timestamp: user space only ages these, by the time it reads them.
            submit(|ev| {
                ev.kind = event_kind::CONNECTING;
                ev.sk = sk;
                ev.pid = pid;
                ev.cgroup_id = cg;
                ev.comm = name;
                ev.direction = direction::OUTBOUND;
                ev.family = family;
            });
        }
        // listen() in the listener's context.
        (tcp_state::CLOSE, tcp_state::LISTEN) | (tcp_state::LISTEN, tcp_state::CLOSE) => {
            let kind = if new == tcp_state::LISTEN {
                event_kind::LISTEN
            } else {
                event_kind::UNLISTEN
            };
            let pid = tgid();
            let cg = cgroup_id();
            let name = comm();
            submit(|ev| {
                ev.kind = kind;
                ev.ts_ns = now();
                ev.sk = sk;
                ev.pid = pid;
                ev.cgroup_id = cg;
                ev.comm = name;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                read_addrs(&rec, state_record_addrs(&cfg), family, ev);
            });
        }
        // Handshake done (softirq: no owner here), or a connect that failed. An accepted
        // connection is reported when accept() returns it (`inet_csk_accept`), unless that
        // program could not be used on this kernel.
        (tcp_state::SYN_RECV, tcp_state::ESTABLISHED)
            if cfg.flags & config_flag::ACCEPT_AT_HANDSHAKE == 0 => {}
        (tcp_state::SYN_SENT, tcp_state::ESTABLISHED)
        | (tcp_state::SYN_RECV, tcp_state::ESTABLISHED)
        | (tcp_state::SYN_SENT, tcp_state::CLOSE) => {
            let (kind, dir) = match (old, new) {
                (tcp_state::SYN_RECV, _) => (event_kind::ACCEPT, direction::INBOUND),
                (_, tcp_state::CLOSE) => (event_kind::CONNECT_FAILED, direction::OUTBOUND),
                _ => (event_kind::CONNECT, direction::OUTBOUND),
            };
            submit(|ev| {
                ev.kind = kind;
                ev.ts_ns = now();
                ev.sk = sk;
                ev.direction = dir;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                ev.dport = rec.get(cfg.sss_dport).unwrap_or(0);
                read_addrs(&rec, state_record_addrs(&cfg), family, ev);
            });
        }
        // The end of an established connection (from any of the closing states, or a reset).
        // From SYN_RECV or CLOSE it never was one.
        (old, tcp_state::CLOSE) if old != tcp_state::SYN_RECV && old != tcp_state::CLOSE => {
            let (sent, received, retransmits) = tcp_counters(&cfg, sk);
            debug!(
                &ctx,
                "close: sk {:x} sent {} received {}", sk, sent, received
            );
            submit(|ev| {
                ev.kind = event_kind::CLOSE;
                ev.ts_ns = now();
                ev.sk = sk;
                ev.bytes_sent = sent;
                ev.bytes_received = received;
                ev.retransmits = retransmits;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                ev.dport = rec.get(cfg.sss_dport).unwrap_or(0);
                read_addrs(&rec, state_record_addrs(&cfg), family, ev);
            });
        }
        _ => {}
    }
    0
}

/// The head of `struct sock` (its `sock_common`: addresses, ports, family, state) is within
/// this many bytes on current kernels.
const SOCK_HEAD: usize = 128;

/// accept() returned a connection: ACCEPT in the accepting process's context, with the
/// 4-tuple from the new socket. A socket that closed while it waited to be accepted was
/// already reported by its CLOSE.
#[fexit(function = "inet_csk_accept")]
pub fn inet_csk_accept(ctx: FExitContext) -> i32 {
    let cfg = config();
    let sk: u64 = match ctx.ret() {
        Ok(sk) => sk,
        Err(_) => return 0,
    };
    if sk == 0 || !in_watched_netns(&cfg, sk) {
        return 0;
    }
    let Some(head) = Record::<SOCK_HEAD>::load_from(sk) else {
        return 0;
    };
    let family: u16 = head.get(cfg.sock_family).unwrap_or(0);
    let state: u8 = head.get(cfg.sock_state).unwrap_or(0);
    if (family != AF_INET && family != AF_INET6) || state as i32 == tcp_state::CLOSE {
        return 0;
    }
    let pid = tgid();
    let cg = cgroup_id();
    let name = comm();
    submit(|ev| {
        ev.kind = event_kind::ACCEPT;
        ev.ts_ns = now();
        ev.sk = sk;
        ev.pid = pid;
        ev.cgroup_id = cg;
        ev.comm = name;
        ev.direction = direction::INBOUND;
        ev.family = family;
        ev.sport = head.get(cfg.sock_num).unwrap_or(0);
        ev.dport = u16::from_be(head.get(cfg.sock_dport).unwrap_or(0));
        let addrs = (
            cfg.sock_rcv_saddr,
            cfg.sock_daddr,
            cfg.sock_v6_rcv_saddr,
            cfg.sock_v6_daddr,
        );
        read_addrs(&head, addrs, family, ev);
    });
    0
}

/// Never attached: user space runs it (`BPF_PROG_TEST_RUN`, in its own context) after writing
/// the sockets whose live counters it wants into the first `count` (argument 0) slots of
/// `COUNTER_SLOTS_MAP`; it fills in their counters, state and ports.
#[raw_tracepoint(tracepoint = "orca_read_counters")]
pub fn read_counters(ctx: RawTracePointContext) -> i32 {
    let cfg = config();
    let count: u64 = ctx.arg(0);
    for index in 0..COUNTER_SLOTS {
        if index as u64 >= count {
            break;
        }
        let Some(slot) = COUNTER_SLOTS_MAP.get_ptr_mut(index) else {
            break;
        };
        // SAFETY: pointer into an array slot, valid for this run; user space does not touch
        // the slots while the program runs (it waits for the syscall).
        let slot = unsafe { &mut *slot };
        let sk = slot.sk;
        let (sent, received, retransmits) = tcp_counters(&cfg, sk);
        slot.bytes_sent = sent;
        slot.bytes_received = received;
        slot.retransmits = retransmits;
        slot.state = kread_or_zero::<u8>(sk, cfg.sock_state) as u32;
        slot.sport = kread_or_zero(sk, cfg.sock_num);
        slot.dport = u16::from_be(kread_or_zero(sk, cfg.sock_dport));
    }
    0
}

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let pid: i32 = read(&ctx, cfg.exec_pid).unwrap_or(0);
    let ppid = parent_tgid(&cfg);
    let cg = cgroup_id();
    let name = comm();
    submit(|ev| {
        ev.kind = event_kind::EXEC;
        ev.ts_ns = now();
        ev.pid = pid as u32;
        ev.ppid = ppid;
        ev.cgroup_id = cg;
        ev.comm = name;
    });
    0
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let flags: u64 = read(&ctx, cfg.newtask_clone_flags).unwrap_or(0);
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    let child: i32 = read(&ctx, cfg.newtask_pid).unwrap_or(0);
    let parent = tgid();
    let cg = cgroup_id();
    let name = comm();
    submit(|ev| {
        ev.kind = event_kind::FORK;
        ev.ts_ns = now();
        ev.pid = child as u32;
        ev.ppid = parent;
        ev.aux = child as u32;
        ev.cgroup_id = cg;
        ev.comm = name;
    });
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if cfg.flags & config_flag::EXIT_HAS_GROUP_DEAD != 0 {
        // The last thread of the group is the process's exit.
        if read::<u8>(&ctx, cfg.exit_group_dead).unwrap_or(0) == 0 {
            return 0;
        }
    } else if pid_tgid as u32 != tgid {
        return 0;
    }
    // SAFETY: helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let status: i32 = if cfg.task_exit_code != 0 {
        kread(task, cfg.task_exit_code).unwrap_or(0)
    } else {
        0
    };
    let cg = cgroup_id();
    let name = comm();
    submit(|ev| {
        ev.kind = event_kind::EXIT;
        ev.ts_ns = now();
        ev.pid = tgid;
        ev.aux = status as u32;
        ev.cgroup_id = cg;
        ev.comm = name;
    });
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
