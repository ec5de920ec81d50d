//! The host's TCP connections and listening sockets, fed by kernel events (eBPF mode) or by
//! sock_diag dumps (/proc mode, and the seed at start). Closed and failed connections stay in
//! the table until one report has carried them.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use orca_ebpf_common::{AF_INET, CounterSlot, Event, direction, event_kind, tcp_state};
use rustc_hash::FxHashMap;

use crate::sockdiag::{self, TcpSocket};

mod dense;
use dense::DenseConnections;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Unknown,
    Outbound,
    Inbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    Established,
    Closed,
    Failed,
}

/// Where a connection's counters come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Kernel programs: the socket at `sk`, whose live counters the kernel reads on demand.
    Ebpf { sk: u64 },
    /// A sock_diag dump (the seed at start, or /proc mode).
    SockDiag,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub key: ConnKey,
    pub direction: Direction,
    pub state: ConnState,
    pub pid: u32,
    pub comm: Comm,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    pub started_unix_ms: i64,
    pub closed_unix_ms: i64,
    pub source: Source,
    /// Consecutive kernel counter reads that found its socket gone (eBPF mode).
    pub gone_reads: u8,
    /// Changed since the last report.
    pub dirty: bool,
}

impl Connection {
    /// An established connection with no traffic counted yet, not yet marked changed.
    fn new(
        key: ConnKey,
        direction: Direction,
        (pid, comm): (u32, Comm),
        started_unix_ms: i64,
        source: Source,
    ) -> Self {
        Self {
            key,
            direction,
            state: ConnState::Established,
            pid,
            comm,
            bytes_sent: 0,
            bytes_received: 0,
            retransmits: 0,
            started_unix_ms,
            closed_unix_ms: 0,
            source,
            gone_reads: 0,
            dirty: false,
        }
    }

    /// A connection seen by a sock_diag dump or conntrack (not by the kernel programs).
    fn observed(key: ConnKey, inbound: bool, pid: u32, comm: Comm, now_ms: i64) -> Self {
        let direction = if inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        Self::new(key, direction, (pid, comm), now_ms, Source::SockDiag)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub local: SocketAddr,
    pub pid: u32,
    pub comm: Comm,
    /// Changed since the last report.
    pub dirty: bool,
}

/// Converts kernel monotonic nanoseconds to Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    pub fn new() -> Self {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() * 1000 + t.tv_nsec() / 1_000_000)
            .unwrap_or(0);
        Self {
            offset_ms: crate::process::now_unix_ms() - mono,
        }
    }

    pub fn unix_ms(&self, ktime_ns: u64) -> i64 {
        self.offset_ms + (ktime_ns / 1_000_000) as i64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// How many sweeps (`expire_pending_owners`, every 5 s) the owner of a connect() is kept
/// waiting for the handshake's outcome: 5 minutes, longer than the kernel tries
/// (`tcp_syn_retries` 6 is about 127 s), so only an owner whose outcome event was lost is
/// dropped.
const PENDING_OWNER_SWEEPS: u32 = 60;

/// Kernel counter reads (5 s apart) that must find a connection's socket gone before the
/// connection is closed without its close event.
const GONE_READS_TO_CLOSE: u8 = 2;

/// Who called connect() on a socket, until its CONNECT or CONNECT_FAILED names the 4-tuple.
#[derive(Debug, Clone, Copy)]
struct PendingOwner {
    pid: u32,
    comm: Comm,
    /// `ConnectionTable::owner_sweeps` when it arrived.
    sweep: u32,
}

#[derive(Debug, Default)]
pub struct ConnectionTable {
    conns: DenseConnections,
    /// Owners of connects in progress, by socket address (eBPF mode).
    connecting: FxHashMap<u64, PendingOwner>,
    /// Sweeps of `connecting` so far (a clock without a clock read per event).
    owner_sweeps: u32,
    /// Connections changed since the last report (each once; see `Connection::dirty`).
    dirty: Vec<ConnKey>,
    listeners: HashMap<SocketAddr, Listener>,
    /// Listening sockets closed since the last report.
    removed_listeners: Vec<SocketAddr>,
    /// Ended connections not reported yet whose 4-tuple a new connection took meanwhile (on
    /// loopback the kernel reuses a 4-tuple in TIME_WAIT once the second has turned,
    /// `tcp_tw_reuse`): the next report carries them.
    displaced: Vec<Connection>,
}

pub fn comm_string(comm: &[u8; 16]) -> String {
    Comm(*comm).to_string()
}

/// A task's command name as the kernel keeps it (16 bytes, NUL-padded): stored inline, so
/// thousands of connections a second cost no allocation for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm(pub [u8; 16]);

impl std::fmt::Display for Comm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(16);
        f.write_str(&String::from_utf8_lossy(&self.0[..end]))
    }
}

impl From<&str> for Comm {
    fn from(s: &str) -> Self {
        let mut out = [0u8; 16];
        let n = s.len().min(15);
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
        Self(out)
    }
}

fn event_addr(family: u16, raw: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == AF_INET {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    } else {
        sockdiag::unmap(IpAddr::V6(Ipv6Addr::from(*raw)))
    };
    SocketAddr::new(ip, port)
}

fn event_key(ev: &Event) -> ConnKey {
    ConnKey {
        local: event_addr(ev.family, &ev.saddr, ev.sport),
        remote: event_addr(ev.family, &ev.daddr, ev.dport),
    }
}

/// Marks a connection changed since the last report.
fn mark(dirty: &mut Vec<ConnKey>, conn: &mut Connection) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(conn.key);
    }
}

/// Takes a socket's counters from a sock_diag dump.
fn update_counters(dirty: &mut Vec<ConnKey>, conn: &mut Connection, s: &TcpSocket) {
    let counters = (s.bytes_sent, s.bytes_received, s.retransmits);
    if (conn.bytes_sent, conn.bytes_received, conn.retransmits) != counters {
        (conn.bytes_sent, conn.bytes_received, conn.retransmits) = counters;
        mark(dirty, conn);
    }
}

fn direction_of(raw: u32) -> Direction {
    match raw {
        direction::OUTBOUND => Direction::Outbound,
        direction::INBOUND => Direction::Inbound,
        _ => Direction::Unknown,
    }
}

impl ConnectionTable {
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.conns.values()
    }

    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.values()
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The process listening on `local` (exactly, or on the wildcard address of its port).
    pub fn listener_for(&self, local: SocketAddr) -> Option<&Listener> {
        self.listeners.get(&local).or_else(|| {
            let any = match local.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            self.listeners
                .get(&SocketAddr::new(any, local.port()))
                .or_else(|| {
                    self.listeners.get(&SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                        local.port(),
                    ))
                })
        })
    }

    /// The owner of a connection: the process the kernel named (an accept() seen returning
    /// it), else who called connect() on that socket (its handshake and close happen outside
    /// the owner's context), else the process listening on the local address.
    fn owner_of(&mut self, ev: &Event, key: ConnKey) -> (u32, Comm) {
        if ev.pid != 0 {
            return (ev.pid, Comm(ev.comm));
        }
        if let Some(owner) = self.connecting.remove(&ev.sk) {
            return (owner.pid, owner.comm);
        }
        self.listener_for(key.local)
            .map(|l| (l.pid, l.comm))
            .unwrap_or_default()
    }

    /// Applies one kernel event. Returns true when it was a connection event.
    pub fn apply_event(&mut self, ev: &Event, clock: &Clock) -> bool {
        match ev.kind {
            event_kind::CONNECTING => {
                self.connecting.insert(
                    ev.sk,
                    PendingOwner {
                        pid: ev.pid,
                        comm: Comm(ev.comm),
                        sweep: self.owner_sweeps,
                    },
                );
                true
            }
            event_kind::CONNECT | event_kind::ACCEPT => {
                let key = event_key(ev);
                let owner = self.owner_of(ev, key);
                let conn = Connection::new(
                    key,
                    direction_of(ev.direction),
                    owner,
                    clock.unix_ms(ev.ts_ns),
                    Source::Ebpf { sk: ev.sk },
                );
                self.insert_dirty(conn);
                true
            }
            event_kind::CLOSE | event_kind::CONNECT_FAILED => {
                let key = event_key(ev);
                let closed_at = clock.unix_ms(ev.ts_ns);
                let state = if ev.kind == event_kind::CLOSE {
                    ConnState::Closed
                } else {
                    ConnState::Failed
                };
                let close = |conn: &mut Connection| {
                    conn.state = state;
                    conn.closed_unix_ms = closed_at;
                    conn.bytes_sent = ev.bytes_sent;
                    conn.bytes_received = ev.bytes_received;
                    conn.retransmits = ev.retransmits;
                };
                if let Some(conn) = self.conns.get_mut(&key) {
                    mark(&mut self.dirty, conn);
                    close(conn);
                    return true;
                }
                // A failed connect, or a connection opened before the agent watched.
                let direction = match direction_of(ev.direction) {
                    Direction::Unknown if self.listener_for(key.local).is_some() => {
                        Direction::Inbound
                    }
                    Direction::Unknown => Direction::Outbound,
                    known => known,
                };
                let owner = self.owner_of(ev, key);
                let mut conn =
                    Connection::new(key, direction, owner, closed_at, Source::Ebpf { sk: ev.sk });
                close(&mut conn);
                self.insert_dirty(conn);
                true
            }
            event_kind::LISTEN => {
                let local = event_addr(ev.family, &ev.saddr, ev.sport);
                self.listeners.insert(
                    local,
                    Listener {
                        local,
                        pid: ev.pid,
                        comm: Comm(ev.comm),
                        dirty: true,
                    },
                );
                true
            }
            event_kind::UNLISTEN => {
                let local = event_addr(ev.family, &ev.saddr, ev.sport);
                if self.listeners.remove(&local).is_some() {
                    self.removed_listeners.push(local);
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets owners of connects whose outcome never arrived (its event lost), so the
    /// table cannot grow without bound. Called every 5 s.
    pub fn expire_pending_owners(&mut self) {
        self.owner_sweeps = self.owner_sweeps.wrapping_add(1);
        let now = self.owner_sweeps;
        self.connecting
            .retain(|_, owner| now.wrapping_sub(owner.sweep) < PENDING_OWNER_SWEEPS);
    }

    /// The sockets of the open connections the kernel programs reported, whose live counters
    /// the kernel can be asked for.
    pub fn kernel_sockets(&self) -> Vec<u64> {
        self.conns
            .values()
            .filter(|c| c.state == ConnState::Established)
            .filter_map(|c| match c.source {
                Source::Ebpf { sk } => Some(sk),
                Source::SockDiag => None,
            })
            .collect()
    }

    /// Applies live counters the kernel read from the sockets, by socket address. An answer
    /// from a socket that closed meanwhile, or whose memory now holds another socket, is told
    /// by its state or ports: its close event normally follows; a connection whose socket is
    /// found gone by two reads in a row is closed here (its close event was lost, or raced
    /// ahead of its accept).
    pub fn apply_kernel_counters(&mut self, answers: &FxHashMap<u64, CounterSlot>, now_ms: i64) {
        for conn in self.conns.values_mut() {
            let Source::Ebpf { sk } = conn.source else {
                continue;
            };
            if conn.state != ConnState::Established {
                continue;
            }
            let Some(answer) = answers.get(&sk) else {
                continue;
            };
            let live = answer.state != 0 && answer.state != tcp_state::CLOSE as u32;
            if !live
                || answer.sport != conn.key.local.port()
                || answer.dport != conn.key.remote.port()
            {
                conn.gone_reads = conn.gone_reads.saturating_add(1);
                if conn.gone_reads >= GONE_READS_TO_CLOSE {
                    conn.state = ConnState::Closed;
                    conn.closed_unix_ms = now_ms;
                    mark(&mut self.dirty, conn);
                }
                continue;
            }
            conn.gone_reads = 0;
            if (conn.bytes_sent, conn.bytes_received, conn.retransmits)
                != (answer.bytes_sent, answer.bytes_received, answer.retransmits)
            {
                conn.bytes_sent = answer.bytes_sent;
                conn.bytes_received = answer.bytes_received;
                conn.retransmits = answer.retransmits;
                mark(&mut self.dirty, conn);
            }
        }
    }

    /// Merges a sock_diag dump. Connections from the dump that the table does not know are
    /// added; with `authoritative`, sock_diag-sourced connections missing from the dump are
    /// marked closed (in eBPF mode only the seeded entries are reconciled this way).
    pub fn merge_dump(
        &mut self,
        sockets: &[TcpSocket],
        inode_pid: &HashMap<u64, (u32, String)>,
        now_ms: i64,
        authoritative: bool,
    ) {
        let mut present = std::collections::HashSet::new();
        for s in sockets.iter().filter(|s| s.state == sockdiag::TCP_LISTEN) {
            let (pid, comm) = inode_pid
                .get(&s.inode)
                .map(|(pid, comm)| (*pid, Comm::from(comm.as_str())))
                .unwrap_or_default();
            self.listeners
                .entry(s.local)
                .and_modify(|l| {
                    if l.pid == 0 && pid != 0 {
                        l.pid = pid;
                        l.comm = comm;
                        l.dirty = true;
                    }
                })
                .or_insert(Listener {
                    local: s.local,
                    pid,
                    comm,
                    dirty: true,
                });
        }
        for s in sockets
            .iter()
            .filter(|s| s.state == sockdiag::TCP_ESTABLISHED)
        {
            let key = ConnKey {
                local: s.local,
                remote: s.remote,
            };
            present.insert(key);
            let (pid, comm) = inode_pid
                .get(&s.inode)
                .map(|(pid, comm)| (*pid, Comm::from(comm.as_str())))
                .unwrap_or_default();
            let inbound = self.listener_for(s.local).is_some();
            match self.conns.get_mut(&key) {
                Some(conn) if conn.source == Source::SockDiag => {
                    update_counters(&mut self.dirty, conn, s);
                    if pid != 0 && pid != conn.pid {
                        conn.pid = pid;
                        conn.comm = comm;
                        mark(&mut self.dirty, conn);
                    }
                }
                Some(_) => {}
                None => {
                    let mut conn = Connection::observed(key, inbound, pid, comm, now_ms);
                    (conn.bytes_sent, conn.bytes_received, conn.retransmits) =
                        (s.bytes_sent, s.bytes_received, s.retransmits);
                    self.insert_dirty(conn);
                }
            }
        }
        if authoritative {
            for conn in self.conns.values_mut() {
                if conn.source == Source::SockDiag
                    && conn.state == ConnState::Established
                    && !present.contains(&conn.key)
                {
                    conn.state = ConnState::Closed;
                    conn.closed_unix_ms = now_ms;
                    mark(&mut self.dirty, conn);
                }
            }
            let listening: std::collections::HashSet<SocketAddr> = sockets
                .iter()
                .filter(|s| s.state == sockdiag::TCP_LISTEN)
                .map(|s| s.local)
                .collect();
            let removed = &mut self.removed_listeners;
            self.listeners.retain(|local, _| {
                let keep = listening.contains(local);
                if !keep {
                    removed.push(*local);
                }
                keep
            });
        }
    }

    /// Whether anything changed since the last report.
    pub fn has_changes(&self) -> bool {
        !self.removed_listeners.is_empty()
            || !self.dirty.is_empty()
            || !self.displaced.is_empty()
            || self.listeners.values().any(|l| l.dirty)
    }

    /// eBPF mode: connections that existed before the agent started (seeded from sock_diag)
    /// get their counters and their end from a sock_diag dump, as no kernel event covers
    /// them. Only those are looked at; nothing is added.
    pub fn reconcile_seeded(
        &mut self,
        for_each: impl FnOnce(&mut dyn FnMut(&TcpSocket)) -> bool,
        now_ms: i64,
    ) {
        let mut seen = std::collections::HashSet::new();
        let conns = &mut self.conns;
        let dirty = &mut self.dirty;
        let complete = for_each(&mut |s: &TcpSocket| {
            if s.state != sockdiag::TCP_ESTABLISHED {
                return;
            }
            let key = ConnKey {
                local: s.local,
                remote: s.remote,
            };
            let Some(conn) = conns.get_mut(&key).filter(|c| c.source == Source::SockDiag) else {
                return;
            };
            seen.insert(key);
            update_counters(dirty, conn, s);
        });
        if !complete {
            return;
        }
        for conn in conns.values_mut() {
            if conn.source == Source::SockDiag
                && conn.state == ConnState::Established
                && !seen.contains(&conn.key)
            {
                conn.state = ConnState::Closed;
                conn.closed_unix_ms = now_ms;
                mark(dirty, conn);
            }
        }
    }

    /// /proc mode: a connection that conntrack saw end but no scan ever saw (it opened and
    /// closed between two scans) is reported once, closed; its owner is known only when it
    /// is the accepting side of a listening socket.
    pub fn record_short_lived(&mut self, local: SocketAddr, remote: SocketAddr, now_ms: i64) {
        let key = ConnKey { local, remote };
        if self.conns.contains_key(&key) {
            return;
        }
        let listener = self.listener_for(local).map(|l| (l.pid, l.comm));
        let inbound = listener.is_some();
        let (pid, comm) = listener.unwrap_or_default();
        let mut conn = Connection::observed(key, inbound, pid, comm, now_ms);
        conn.state = ConnState::Closed;
        conn.closed_unix_ms = now_ms;
        self.insert_dirty(conn);
    }

    /// Inserts (or replaces) a connection, marked changed since the last report.
    fn insert_dirty(&mut self, mut conn: Connection) {
        let key = conn.key;
        conn.dirty = true;
        // One hash operation: a replaced entry that was already listed is not listed twice.
        match self.conns.insert(conn) {
            Some(old) if old.dirty => {
                if old.state != ConnState::Established {
                    self.displaced.push(old);
                }
            }
            _ => self.dirty.push(key),
        }
    }

    /// Whether any connection still comes from a sock_diag dump (and so needs reconciling).
    pub fn has_sockdiag_entries(&self) -> bool {
        self.conns.values().any(|c| c.source == Source::SockDiag)
    }

    /// What a report carries: every connection and listener (`full`), or only those changed
    /// since the last report, plus the listeners closed since. Everything is then marked
    /// reported, and closed or failed connections are forgotten: they are in exactly one
    /// report, and receivers drop them when the next report arrives.
    pub fn take_changes(&mut self, full: bool) -> Changes<'_> {
        let removed_listeners = std::mem::take(&mut self.removed_listeners);
        // A burst (thousands of connections opened at once) is spread over several deltas,
        // which bounds the size and memory of each report.
        let count = if full {
            self.dirty.len()
        } else {
            self.dirty.len().min(MAX_CHANGES_PER_REPORT)
        };
        Changes {
            table: self,
            full,
            count,
            removed_listeners,
        }
    }
}

/// The connections and listeners one report carries; see [`ConnectionTable::take_changes`].
pub struct Changes<'a> {
    table: &'a mut ConnectionTable,
    full: bool,
    /// Dirty connections carried (from the head of the dirty list).
    count: usize,
    pub removed_listeners: Vec<SocketAddr>,
}

/// Changed connections one delta carries at most; the rest follow in the next ones.
pub const MAX_CHANGES_PER_REPORT: usize = 4096;

impl Changes<'_> {
    pub fn connections(&self) -> Box<dyn Iterator<Item = &Connection> + '_> {
        let displaced = self.table.displaced.iter();
        if self.full {
            Box::new(displaced.chain(self.table.conns.values()))
        } else {
            Box::new(
                displaced.chain(
                    self.table.dirty[..self.count]
                        .iter()
                        .filter_map(|k| self.table.conns.get(k)),
                ),
            )
        }
    }

    pub fn listeners(&self) -> impl Iterator<Item = &Listener> {
        let full = self.full;
        self.table
            .listeners
            .values()
            .filter(move |l| full || l.dirty)
    }
}

impl Drop for Changes<'_> {
    fn drop(&mut self) {
        let table = &mut *self.table;
        table.displaced.clear();
        for key in table.dirty.drain(..self.count) {
            // Closed ones go, open ones stay, unmarked.
            let Some(conn) = table.conns.get_mut(&key) else {
                continue;
            };
            if conn.state == ConnState::Established {
                conn.dirty = false;
            } else {
                table.conns.remove(&key);
            }
        }
        for l in self.table.listeners.values_mut() {
            l.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_ebpf_common::AF_INET;

    fn event(kind: u32, sk: u64, sport: u16, dport: u16, pid: u32) -> Event {
        // SAFETY: Event is plain old data; all-zero is a valid value.
        let mut ev: Event = unsafe { std::mem::zeroed() };
        ev.kind = kind;
        ev.sk = sk;
        ev.family = AF_INET;
        ev.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ev.sport = sport;
        ev.dport = dport;
        ev.pid = pid;
        ev.comm[..4].copy_from_slice(b"curl");
        ev
    }

    #[test]
    fn lifecycle_from_events() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        let mut listen = event(event_kind::LISTEN, 1, 8080, 0, 42);
        listen.comm = [0; 16];
        listen.comm[..5].copy_from_slice(b"httpd");
        t.apply_event(&listen, &clock);
        // The kernel names the owner at connect() and the 4-tuple after the handshake.
        t.apply_event(&event(event_kind::CONNECTING, 2, 0, 0, 7), &clock);
        let mut connect = event(event_kind::CONNECT, 2, 5555, 8080, 0);
        connect.direction = direction::OUTBOUND;
        t.apply_event(&connect, &clock);
        let mut accept = event(event_kind::ACCEPT, 3, 8080, 5555, 0);
        accept.direction = direction::INBOUND;
        t.apply_event(&accept, &clock);
        assert_eq!(t.len(), 2);
        let inbound = t
            .connections()
            .find(|c| c.key.local.port() == 8080)
            .unwrap();
        assert_eq!(
            inbound.pid, 42,
            "accepted connection attributed to the listener"
        );
        assert_eq!(inbound.comm.to_string(), "httpd");
        let outbound = t
            .connections()
            .find(|c| c.key.local.port() == 5555)
            .unwrap();
        assert_eq!(outbound.pid, 7, "joined to its connect() by socket");
        assert_eq!(outbound.comm.to_string(), "curl");
        assert_eq!(outbound.direction, Direction::Outbound);
        assert!(t.connecting.is_empty());

        let mut close = event(event_kind::CLOSE, 2, 5555, 8080, 0);
        close.bytes_sent = 1000;
        close.bytes_received = 10;
        t.apply_event(&close, &clock);
        let closed = t
            .connections()
            .find(|c| c.key.local.port() == 5555)
            .unwrap();
        assert_eq!(closed.state, ConnState::Closed);
        assert_eq!(closed.bytes_sent, 1000);
        assert_eq!(
            closed.pid, 7,
            "a close outside the owner's context keeps the owner"
        );
        {
            let changes = t.take_changes(false);
            assert_eq!(changes.connections().count(), 2, "both are new");
            assert_eq!(changes.listeners().count(), 1);
        }
        assert_eq!(t.len(), 1, "the closed one was reported once and forgotten");
        let changes = t.take_changes(false);
        assert_eq!(changes.connections().count(), 0, "nothing changed");
        drop(changes);
        assert_eq!(t.take_changes(true).connections().count(), 1);
    }

    #[test]
    fn a_closed_connection_whose_4_tuple_is_reused_before_its_report_is_still_reported() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        let mut connect = event(event_kind::CONNECT, 2, 5555, 8080, 7);
        connect.direction = direction::OUTBOUND;
        t.apply_event(&connect, &clock);
        t.apply_event(&event(event_kind::CLOSE, 2, 5555, 8080, 7), &clock);
        // The same 4-tuple again (a TIME_WAIT reused on loopback) before the next report.
        let mut again = event(event_kind::CONNECT, 3, 5555, 8080, 7);
        again.direction = direction::OUTBOUND;
        t.apply_event(&again, &clock);
        assert!(t.has_changes());
        {
            let changes = t.take_changes(false);
            let states: Vec<ConnState> = changes.connections().map(|c| c.state).collect();
            assert_eq!(states, [ConnState::Closed, ConnState::Established]);
        }
        assert_eq!(t.len(), 1, "the new one stays");
        assert_eq!(
            t.take_changes(false).connections().count(),
            0,
            "reported once"
        );
        // A full report carries a displaced one too.
        t.apply_event(&event(event_kind::CLOSE, 3, 5555, 8080, 7), &clock);
        t.apply_event(&again, &clock);
        assert_eq!(t.take_changes(true).connections().count(), 2);
        assert_eq!(t.take_changes(true).connections().count(), 1);
    }

    fn socket(local: &str, remote: &str, bytes: u64) -> TcpSocket {
        TcpSocket {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            state: sockdiag::TCP_ESTABLISHED,
            inode: 1,
            uid: 0,
            bytes_sent: bytes,
            bytes_received: 0,
            retransmits: 0,
        }
    }

    #[test]
    fn seeded_connections_are_reconciled_until_gone() {
        let mut t = ConnectionTable::default();
        let owners = HashMap::from([(1u64, (42u32, "db".to_string()))]);
        t.merge_dump(
            &[socket("10.0.0.1:5432", "10.0.0.2:40000", 10)],
            &owners,
            0,
            false,
        );
        drop(t.take_changes(false));
        assert!(t.has_sockdiag_entries());
        let dump = [
            socket("10.0.0.1:5432", "10.0.0.2:40000", 99),
            socket("10.0.0.1:1", "10.0.0.3:2", 5),
        ];
        t.reconcile_seeded(
            |visit| {
                dump.iter().for_each(visit);
                true
            },
            1,
        );
        assert_eq!(t.len(), 1, "reconciling adds nothing");
        assert_eq!(t.connections().next().unwrap().bytes_sent, 99);
        t.reconcile_seeded(|_| true, 2);
        assert_eq!(t.connections().next().unwrap().state, ConnState::Closed);
        drop(t.take_changes(false));
        assert!(!t.has_sockdiag_entries());
    }

    #[test]
    fn bursts_are_spread_over_reports() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        let n = MAX_CHANGES_PER_REPORT + 10;
        for i in 0..n {
            t.apply_event(
                &event(event_kind::CONNECT, i as u64 + 1, 10_000 + i as u16, 80, 1),
                &clock,
            );
        }
        assert_eq!(
            t.take_changes(false).connections().count(),
            MAX_CHANGES_PER_REPORT
        );
        assert!(t.has_changes());
        assert_eq!(t.take_changes(false).connections().count(), 10);
        assert!(!t.has_changes());
        assert_eq!(t.take_changes(true).connections().count(), n);
    }

    #[test]
    fn failed_connect_is_reported_once() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        t.apply_event(&event(event_kind::CONNECTING, 9, 0, 0, 5), &clock);
        t.apply_event(&event(event_kind::CONNECT_FAILED, 9, 4000, 1, 0), &clock);
        let failed = t.connections().next().unwrap();
        assert_eq!(failed.state, ConnState::Failed);
        assert_eq!(failed.pid, 5);
        assert_eq!(failed.direction, Direction::Outbound);
        assert!(t.connecting.is_empty());
        drop(t.take_changes(false));
        assert!(t.is_empty());
    }

    fn answer(sk: u64, sport: u16, dport: u16, state: i32, sent: u64) -> CounterSlot {
        CounterSlot {
            sk,
            bytes_sent: sent,
            bytes_received: 3,
            retransmits: 0,
            state: state as u32,
            sport,
            dport,
            _pad: [0; 4],
        }
    }

    #[test]
    fn live_counters_apply_only_to_the_socket_asked_about() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        for (sk, port) in [(1u64, 1000u16), (2, 2000), (3, 3000)] {
            t.apply_event(&event(event_kind::CONNECT, sk, port, 80, 0), &clock);
        }
        drop(t.take_changes(false));
        let mut sockets = t.kernel_sockets();
        sockets.sort_unstable();
        assert_eq!(sockets, [1, 2, 3]);
        let answers = FxHashMap::from_iter([
            (1, answer(1, 1000, 80, tcp_state::ESTABLISHED, 64)),
            // Closed meanwhile: its close event will carry the final counters.
            (2, answer(2, 2000, 80, tcp_state::CLOSE, 999)),
            // The memory now holds another socket.
            (3, answer(3, 4444, 80, tcp_state::ESTABLISHED, 999)),
        ]);
        t.apply_kernel_counters(&answers, 0);
        let sent = |t: &ConnectionTable, port: u16| {
            t.connections()
                .find(|c| c.key.local.port() == port)
                .unwrap()
                .bytes_sent
        };
        assert_eq!((sent(&t, 1000), sent(&t, 2000), sent(&t, 3000)), (64, 0, 0));
        {
            let changes = t.take_changes(false);
            assert_eq!(
                changes.connections().count(),
                1,
                "only the counted one changed"
            );
        }
        // Found gone again (no close event came): closed, reported once, forgotten.
        t.apply_kernel_counters(&answers, 5_000);
        {
            let changes = t.take_changes(false);
            let mut closed: Vec<u16> = changes
                .connections()
                .filter(|c| c.state == ConnState::Closed)
                .map(|c| c.key.local.port())
                .collect();
            closed.sort_unstable();
            assert_eq!(closed, [2000, 3000]);
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn owners_of_connects_without_an_outcome_expire() {
        let clock = Clock::new();
        let mut t = ConnectionTable::default();
        t.apply_event(&event(event_kind::CONNECTING, 5, 0, 0, 9), &clock);
        for _ in 1..PENDING_OWNER_SWEEPS {
            t.expire_pending_owners();
        }
        assert_eq!(t.connecting.len(), 1, "kept 5 minutes");
        t.expire_pending_owners();
        assert!(t.connecting.is_empty());
    }
}
