//! Orca's kernel programs. Built for `bpfel-unknown-none` with nightly by the agent's build
//! script (aya-build) and embedded in `orca-agent`.
//!
//! Design:
//! - Per-packet work (bytes, retransmits) only updates the `CONNS` map in place; user space reads
//!   it once per report. Only lifecycle changes (handshake done, close, failed connect, listen,
//!   exec, fork, exit) are sent through the `EVENTS` ring buffer.
//! - Every tracepoint field offset comes from `CONFIG`, which the loader fills from the tracepoint
//!   format files and from BTF; nothing is hard-coded to one kernel.
//! - An event that does not fit in the ring buffer, or a connection that does not fit in the map,
//!   is counted in `COUNTERS`, never dropped silently.
//! - Diagnostics go through aya-log; the loader sets its level to off unless the operator asks
//!   (`orca-agent run --ebpf-log debug`).
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_ANY, BPF_NOEXIST, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_task,
            bpf_ktime_get_ns, bpf_probe_read_kernel as probe_read_raw,
        },
    },
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use aya_log_ebpf::{debug, warn};
use core::mem::MaybeUninit;
use orca_ebpf_common::{
    AF_INET, AF_INET6, ConnStats, Event, IPPROTO_TCP, ProbeConfig, config_flag, counter, direction,
    event_kind, tcp_state,
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
    msg_sk: 0,
    msg_family: 0,
    msg_protocol: 0,
    msg_ret: 0,
    msg_flags: 0,
    rtx_skaddr: 0,
    exec_pid: 0,
    exit_pid: 0,
    exit_group_dead: 0,
    newtask_pid: 0,
    newtask_clone_flags: 0,
    task_exit_code: 0,
    task_real_parent: 0,
    task_tgid: 0,
    sock_net: 0,
    net_inum: 0,
    netns_inum: 0,
    flags: 0,
};

const RING_BYTES: u32 = 2 << 20;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BYTES, 0);

#[map]
static CONNS: HashMap<u64, ConnStats> = HashMap::with_max_entries(262_144, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

const CLONE_THREAD: u64 = 0x0001_0000;
const MSG_PEEK: i32 = 2;

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
        let mut buf = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: reads N bytes of the trace record into `buf`; bpf_probe_read_kernel fails
        // cleanly on a bad address, and the per-CPU trace buffer behind a record is larger
        // than N.
        let ret = unsafe {
            probe_read_raw(
                buf.as_mut_ptr() as *mut c_void,
                N as u32,
                ctx.as_ptr() as *const c_void,
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
/// The sock:sock_{send,recv}_length record is 28 bytes on current kernels.
const MSG_RECORD: usize = 40;

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

/// Inserts new connection stats for `sk`: all zero but what `fill` sets. Built in place (a
/// returned literal would be zeroed with `memset`, see `Record`). Returns a copy of what was
/// stored, or None when the map is full.
#[inline(always)]
fn track(sk: u64, flags: u32, fill: impl FnOnce(&mut ConnStats)) -> Option<ConnStats> {
    let mut slot = MaybeUninit::<ConnStats>::uninit();
    zero_words(slot.as_mut_ptr());
    // SAFETY: every byte is zero, a valid ConnStats.
    let stats = unsafe { slot.assume_init_mut() };
    fill(stats);
    CONNS.insert(&sk, &*stats, flags as u64).ok()?;
    Some(*stats)
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

#[inline(always)]
fn read_addrs(rec: &Record<STATE_RECORD>, cfg: &ProbeConfig, family: u16, ev: &mut Event) {
    // The event is zeroed: only write what the record has.
    if family == AF_INET {
        if let Some(s) = rec.get::<[u8; 4]>(cfg.sss_saddr) {
            ev.saddr[..4].copy_from_slice(&s);
        }
        if let Some(d) = rec.get::<[u8; 4]>(cfg.sss_daddr) {
            ev.daddr[..4].copy_from_slice(&d);
        }
    } else {
        if let Some(s) = rec.get(cfg.sss_saddr_v6) {
            ev.saddr = s;
        }
        if let Some(d) = rec.get(cfg.sss_daddr_v6) {
            ev.daddr = d;
        }
    }
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
    let ts = now();

    match (old, new) {
        // connect() in the caller's context: remember who is connecting.
        (tcp_state::CLOSE, tcp_state::SYN_SENT) => {
            let tracked = track(sk, BPF_ANY, |stats| {
                stats.start_ns = ts;
                stats.cgroup_id = cgroup_id();
                stats.pid = tgid();
                stats.direction = direction::OUTBOUND;
                stats.comm = comm();
            });
            match tracked {
                Some(stats) => debug!(&ctx, "connect: pid {} sk {:x}", stats.pid, sk),
                None => {
                    let _ = count(counter::CONN_MAP_FULL);
                    warn!(
                        &ctx,
                        "connection map full: connect by pid {} not tracked",
                        tgid()
                    );
                }
            }
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
                ev.ts_ns = ts;
                ev.sk = sk;
                ev.pid = pid;
                ev.cgroup_id = cg;
                ev.comm = name;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                read_addrs(&rec, &cfg, family, ev);
            });
        }
        (_, tcp_state::ESTABLISHED) => {
            let (kind, stats) = match old {
                tcp_state::SYN_SENT => {
                    let Some(stats) = CONNS.get_ptr_mut(&sk) else {
                        return 0;
                    };
                    // SAFETY: pointer into the map value, valid for this program's run.
                    unsafe { (*stats).established = 1 };
                    // SAFETY: as above.
                    (event_kind::CONNECT, unsafe { *stats })
                }
                tcp_state::SYN_RECV => {
                    // Softirq context: the owner is learned at the first send/recv.
                    let tracked = track(sk, BPF_NOEXIST, |stats| {
                        stats.start_ns = ts;
                        stats.direction = direction::INBOUND;
                        stats.established = 1;
                    });
                    let Some(stats) = tracked else {
                        let _ = count(counter::CONN_MAP_FULL);
                        warn!(
                            &ctx,
                            "connection map full: accepted sk {:x} not tracked", sk
                        );
                        return 0;
                    };
                    (event_kind::ACCEPT, stats)
                }
                _ => return 0,
            };
            submit(|ev| {
                ev.kind = kind;
                ev.ts_ns = ts;
                ev.sk = sk;
                ev.pid = stats.pid;
                ev.cgroup_id = stats.cgroup_id;
                ev.comm = stats.comm;
                ev.direction = stats.direction;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                ev.dport = rec.get(cfg.sss_dport).unwrap_or(0);
                read_addrs(&rec, &cfg, family, ev);
            });
        }
        (_, tcp_state::CLOSE) => {
            // SAFETY: read-only copy of the map value.
            let Some(stats) = (unsafe { CONNS.get(&sk) }).copied() else {
                return 0;
            };
            let _ = CONNS.remove(&sk);
            debug!(
                &ctx,
                "close: pid {} sent {} received {}",
                stats.pid,
                stats.bytes_sent,
                stats.bytes_received
            );
            let kind = if stats.established == 0 {
                event_kind::CONNECT_FAILED
            } else {
                event_kind::CLOSE
            };
            submit(|ev| {
                ev.kind = kind;
                ev.ts_ns = ts;
                ev.sk = sk;
                ev.pid = stats.pid;
                ev.cgroup_id = stats.cgroup_id;
                ev.comm = stats.comm;
                ev.direction = stats.direction;
                ev.bytes_sent = stats.bytes_sent;
                ev.bytes_received = stats.bytes_received;
                ev.retransmits = stats.retransmits;
                ev.family = family;
                ev.sport = rec.get(cfg.sss_sport).unwrap_or(0);
                ev.dport = rec.get(cfg.sss_dport).unwrap_or(0);
                read_addrs(&rec, &cfg, family, ev);
            });
        }
        _ => {}
    }
    0
}

#[inline(always)]
fn account_bytes(ctx: &TracePointContext, sent: bool) -> u32 {
    let cfg = config();
    let Some(rec) = Record::<MSG_RECORD>::load(ctx) else {
        return 0;
    };
    let ret: i32 = rec.get(cfg.msg_ret).unwrap_or(0);
    if ret <= 0 {
        return 0;
    }
    let protocol: u16 = rec.get(cfg.msg_protocol).unwrap_or(0);
    if protocol != IPPROTO_TCP {
        return 0;
    }
    if !sent && rec.get::<i32>(cfg.msg_flags).unwrap_or(0) & MSG_PEEK != 0 {
        return 0;
    }
    let sk: u64 = rec.get(cfg.msg_sk).unwrap_or(0);
    let Some(stats) = CONNS.get_ptr_mut(&sk) else {
        return 0;
    };
    // SAFETY: pointer into a live map value. The BPF target has no atomics in `core`; a send
    // (or receive) on one TCP socket from two CPUs at the same instant could lose one update,
    // which the socket lock in the TCP stack makes rare.
    unsafe {
        if sent {
            (*stats).bytes_sent += ret as u64;
        } else {
            (*stats).bytes_received += ret as u64;
        }
        // First time in process context for an accepted connection: learn its owner.
        if (*stats).pid == 0 {
            (*stats).pid = tgid();
            (*stats).cgroup_id = cgroup_id();
            (*stats).comm = comm();
        }
    }
    0
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    account_bytes(&ctx, true)
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    account_bytes(&ctx, false)
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let sk: u64 = read(&ctx, cfg.rtx_skaddr).unwrap_or(0);
    if let Some(stats) = CONNS.get_ptr_mut(&sk) {
        // SAFETY: pointer into a live map value; retransmits run under the socket lock.
        unsafe { (*stats).retransmits += 1 };
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
