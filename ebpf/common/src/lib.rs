//! `#[repr(C)]` types shared by Orca's kernel programs (`orca-ebpf`) and the agent.
//!
//! Every struct is laid out without implicit padding (fields are ordered by size and
//! padded explicitly) so the kernel and user space agree byte for byte.
#![no_std]

/// Kinds of [`Event`] sent through the ring buffer.
pub mod event_kind {
    /// An outbound connect() completed the handshake (SYN_SENT -> ESTABLISHED).
    pub const CONNECT: u32 = 1;
    /// accept() returned an inbound connection (fexit of `inet_csk_accept`, in the accepting
    /// process's context), or, on kernels where that cannot attach, an inbound connection
    /// completed the handshake (SYN_RECV -> ESTABLISHED, owner unknown).
    pub const ACCEPT: u32 = 2;
    /// An outbound connect() failed (SYN_SENT -> CLOSE).
    pub const CONNECT_FAILED: u32 = 3;
    /// An established connection reached CLOSE; the event carries its final counters, read
    /// from the kernel's own `struct tcp_sock`.
    pub const CLOSE: u32 = 4;
    /// A socket started listening (CLOSE -> LISTEN), in the listening process's context.
    pub const LISTEN: u32 = 5;
    /// A process called exec (sched:sched_process_exec).
    pub const EXEC: u32 = 6;
    /// A new process (not a thread) was forked (task:task_newtask without CLONE_THREAD).
    pub const FORK: u32 = 7;
    /// A process (its whole thread group) exited (sched:sched_process_exit, group_dead).
    pub const EXIT: u32 = 8;
    /// A listening socket was closed (LISTEN -> CLOSE).
    pub const UNLISTEN: u32 = 9;
    /// connect() started (CLOSE -> SYN_SENT), in the connecting process's context: carries
    /// the owner (pid, comm, cgroup) of socket `sk`, whose 4-tuple the CONNECT or
    /// CONNECT_FAILED event that follows carries.
    pub const CONNECTING: u32 = 10;
}

/// Direction of a tracked connection, as seen from this host.
pub mod direction {
    pub const UNKNOWN: u32 = 0;
    pub const OUTBOUND: u32 = 1;
    pub const INBOUND: u32 = 2;
}

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// Events written to the ring buffer.
    pub const EVENTS_SUBMITTED: u32 = 1;
    /// Number of counters.
    pub const COUNT: u32 = 2;
}

/// `AF_INET` and `AF_INET6` as the kernel reports them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;

/// TCP states as in `include/net/tcp_states.h`.
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const SYN_RECV: i32 = 3;
    pub const CLOSE: i32 = 7;
    pub const LISTEN: i32 = 10;
}

/// One event from kernel to user space. 120 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Kernel monotonic time of the event (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
    /// Socket address (`struct sock *`), the connection's identity while it lives; 0 for process events.
    pub sk: u64,
    /// Cgroup v2 id of the task (0 in softirq context where the task is not the owner).
    pub cgroup_id: u64,
    /// Data bytes sent (first transmissions, `tcp_sock.bytes_sent - bytes_retrans`) and
    /// received (`bytes_received`, a received FIN not counted) over the connection's life
    /// (CLOSE events).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// One of [`event_kind`].
    pub kind: u32,
    /// Thread-group id (the user-visible pid) of the task in whose context the event happened:
    /// the owner for CONNECTING, LISTEN and ACCEPT at accept(); 0 for connection events outside
    /// process context (handshakes, closes), whose owner user space knows from CONNECTING or
    /// the listener.
    pub pid: u32,
    /// Parent's tgid (EXEC, FORK) or 0.
    pub ppid: u32,
    /// EXIT: the raw wait status (`exit_code << 8 | signal`); FORK: the child pid; else 0.
    pub aux: u32,
    /// One of [`direction`] (UNKNOWN on CLOSE: user space knows it from the connection).
    pub direction: u32,
    /// TCP retransmits over the connection's life (CLOSE events).
    pub retransmits: u32,
    /// AF_INET or AF_INET6.
    pub family: u16,
    /// Local and remote port, host byte order.
    pub sport: u16,
    pub dport: u16,
    pub _pad: [u8; 2],
    /// Local and remote address; IPv4 uses the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Task command name.
    pub comm: [u8; 16],
}

/// One slot of the `COUNTER_SLOTS` array through which user space reads the live counters of
/// open connections: it writes `sk`, runs the `read_counters` program, and reads the rest.
/// 40 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CounterSlot {
    /// Socket address (`struct sock *`), as in [`Event::sk`]; written by user space.
    pub sk: u64,
    /// Data bytes sent (first transmissions only) and received, as in a CLOSE event.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// TCP retransmits (segments).
    pub retransmits: u32,
    /// The socket's TCP state (`tcp_state`), so user space can tell a live socket.
    pub state: u32,
    /// Local and remote port, host byte order, so user space can tell the socket at `sk` is
    /// still the connection it asked about.
    pub sport: u16,
    pub dport: u16,
    pub _pad: [u8; 4],
}

/// Entries in `COUNTER_SLOTS`: how many sockets one run of `read_counters` reads.
pub const COUNTER_SLOTS: u32 = 1024;

/// Load-time configuration of the kernel programs: tracepoint field offsets (read from the
/// tracepoint `format` files), kernel struct member offsets (read from BTF) and filters.
/// All fields are `u32`, so there is no padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbeConfig {
    // sock:inet_sock_set_state
    pub sss_skaddr: u32,
    pub sss_oldstate: u32,
    pub sss_newstate: u32,
    pub sss_sport: u32,
    pub sss_dport: u32,
    pub sss_family: u32,
    pub sss_protocol: u32,
    pub sss_saddr: u32,
    pub sss_daddr: u32,
    pub sss_saddr_v6: u32,
    pub sss_daddr_v6: u32,
    // sched:sched_process_exec
    pub exec_pid: u32,
    // sched:sched_process_exit
    pub exit_pid: u32,
    pub exit_group_dead: u32,
    // task:task_newtask
    pub newtask_pid: u32,
    pub newtask_clone_flags: u32,
    // BTF: struct task_struct
    pub task_exit_code: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    // BTF: struct tcp_sock's own counters (what `ss -ti` shows)
    pub tcp_bytes_sent: u32,
    pub tcp_bytes_retrans: u32,
    pub tcp_bytes_received: u32,
    pub tcp_total_retrans: u32,
    // BTF: struct sock -> sk_flags, and the bit of SOCK_DONE (a FIN was received) in it
    pub sock_flags: u32,
    pub sock_done_bit: u32,
    // BTF: struct sock -> __sk_common.skc_state, skc_num (local port), skc_dport (remote, BE),
    // skc_family, and the addresses (remote skc_daddr, local skc_rcv_saddr, and their IPv6 kin)
    pub sock_state: u32,
    pub sock_num: u32,
    pub sock_dport: u32,
    pub sock_family: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    // BTF: struct sock -> __sk_common.skc_net, struct net -> ns.inum
    pub sock_net: u32,
    pub net_inum: u32,
    /// Only sockets in this network namespace (inode number) are tracked; 0 tracks all.
    pub netns_inum: u32,
    /// Bit flags, see [`config_flag`].
    pub flags: u32,
}

/// Bits of [`ProbeConfig::flags`].
pub mod config_flag {
    /// `exit_group_dead` is valid (the exit tracepoint has a `group_dead` field).
    pub const EXIT_HAS_GROUP_DEAD: u32 = 1;
    /// Filter sockets by [`super::ProbeConfig::netns_inum`].
    pub const NETNS_FILTER: u32 = 2;
    /// Report ACCEPT at the handshake (SYN_RECV -> ESTABLISHED): the `inet_csk_accept` fexit
    /// program, which reports it at accept() with the accepting process, is not used.
    pub const ACCEPT_AT_HANDSHAKE: u32 = 4;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, #[repr(C)], no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CounterSlot {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProbeConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<Event>(), 120);
        assert_eq!(size_of::<CounterSlot>(), 40);
        assert_eq!(size_of::<ProbeConfig>() % 4, 0);
    }
}
