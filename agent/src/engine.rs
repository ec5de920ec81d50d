//! The agent's engine: owns the probe (eBPF or /proc), the connection table and the scanners,
//! and turns them into snapshots of the host.
use std::{collections::HashMap, net::SocketAddr, time::Instant};

use orca_ebpf_common::{Event, event_kind};
use orca_proto::topology::v1 as pb;
use rustc_hash::FxHashMap;

use crate::{
    connections::{Clock, ConnState, Connection, ConnectionTable, Direction, comm_string},
    conntrack::{ConntrackEvents, FlowEvent},
    containers::{Directory, SharedDirectory},
    host::{self, HostCollector},
    probe::{ProbeChoice, ebpf::EbpfProbe},
    process::{ProcessInfo, ProcessScanner, now_unix_ms},
    report::{ReportConnections, Snapshot},
    selfstat::SelfStat,
    sockdiag,
};

/// Closed connections of one process to one endpoint within one report, from which they are
/// folded into one entry (see `Connection.aggregated` in the contract).
const FOLD_CLOSED_AT: usize = 32;
/// How often the seeded (pre-existing) connections are reconciled in eBPF mode.
const SEED_RECONCILE_EVERY: u32 = 10;
/// How often (in snapshots) the byte counters of open connections are read from the kernel
/// by default (one run of the `read_counters` program per 1,024 connections, in the agent's
/// context). Closed connections always carry exact final counters from their close event;
/// the collector keeps 15-second series, so every 5 s is plenty for the open ones; Prometheus
/// rates over short windows want them more often (`--counter-interval`).
pub const COUNTERS_EVERY: u32 = 5;

#[derive(Debug, Clone)]
struct ProcessEvent {
    ppid: u32,
    comm: String,
    started_unix_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct ExitStatus {
    code: i32,
    signal: i32,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineCounters {
    pub events_processed: u64,
    pub events_lost: u64,
}

/// How the engine observes the host.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub probe: ProbeChoice,
    /// Track only sockets of the agent's own network namespace (one agent per namespace on a
    /// shared kernel); by default a host agent sees every namespace, containers included.
    pub own_netns_only: bool,
    /// The name this host reports under (default: the system hostname).
    pub hostname: Option<String>,
    /// Containers known to the runtimes, kept current by `containers::watch`.
    pub containers: SharedDirectory,
    /// Kernel-side diagnostics level (aya-log); `None`: off.
    pub ebpf_log: Option<log::Level>,
    /// Read open connections' byte counters every this many snapshots (eBPF mode).
    pub counters_every: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            probe: ProbeChoice::Auto,
            own_netns_only: false,
            hostname: None,
            containers: SharedDirectory::default(),
            ebpf_log: None,
            counters_every: COUNTERS_EVERY,
        }
    }
}

/// What the agent observes, and how.
pub struct Engine {
    hostname: String,
    mode: pb::ProbeMode,
    reason: String,
    probe: Option<EbpfProbe>,
    clock: Clock,
    host: HostCollector,
    scanner: ProcessScanner,
    table: ConnectionTable,
    last_processes: HashMap<u32, ProcessInfo>,
    /// Container of each process, from the last scan.
    container_of: HashMap<u32, String>,
    directory: SharedDirectory,
    /// Reads containers' CPU and memory from their cgroups (`None`: no cgroup hierarchy to
    /// read; usage is then summed over their processes).
    cgroups: Option<crate::tasks::cgroups::Driver>,
    /// /proc mode: conntrack's events, to see connections shorter than a scan interval.
    conntrack: Option<ConntrackEvents>,
    /// This host's addresses (to tell this host's flows from forwarded ones).
    local_ips: std::collections::HashSet<std::net::IpAddr>,
    execs: HashMap<u32, ProcessEvent>,
    exits: HashMap<u32, ExitStatus>,
    events_processed: u64,
    snapshots: u32,
    self_stat: SelfStat,
    last_own: crate::selfstat::OwnUsage,
    pub buffered_reports: u64,
    /// Encode report connections as they are made (the runner) instead of keeping them.
    encode_connections: bool,
    pub dropped_reports: u64,
    counters_every: u32,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .field("connections", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts observing: loads eBPF unless told not to (falling back to /proc with the reason
    /// logged and reported), then seeds the connection table from sock_diag.
    pub fn start(options: EngineOptions) -> Result<Self, crate::probe::ProbeError> {
        let (probe, mode, reason) =
            crate::probe::select(options.probe, options.own_netns_only, options.ebpf_log)?;
        let mut engine = Self {
            hostname: options.hostname.unwrap_or_else(host::hostname),
            mode,
            reason,
            probe,
            clock: Clock::new(),
            host: HostCollector::default(),
            scanner: ProcessScanner::new(),
            table: ConnectionTable::default(),
            last_processes: HashMap::new(),
            container_of: HashMap::new(),
            directory: options.containers,
            cgroups: crate::tasks::cgroups::Driver::detect()
                .inspect_err(
                    |err| tracing::warn!(%err, "containers' usage is summed over their processes"),
                )
                .ok(),
            conntrack: None,
            local_ips: host::ip_addresses().into_iter().collect(),
            execs: HashMap::new(),
            exits: HashMap::new(),
            events_processed: 0,
            snapshots: 0,
            self_stat: SelfStat::default(),
            last_own: Default::default(),
            buffered_reports: 0,
            encode_connections: false,
            dropped_reports: 0,
            counters_every: options.counters_every.max(1),
        };
        if engine.probe.is_none() {
            engine.conntrack = match ConntrackEvents::subscribe() {
                Ok(events) => Some(events),
                Err(err) => {
                    tracing::warn!(
                        %err,
                        "no conntrack events (needs CAP_NET_ADMIN): connections shorter than a \
                         scan interval will not be seen in /proc mode"
                    );
                    None
                }
            };
        }
        engine.sync_with_sockdiag(true);
        Ok(engine)
    }

    /// The agent's own CPU time at the last snapshot.
    pub fn own_cpu_seconds(&self) -> f64 {
        self.last_own.cpu_seconds_total
    }

    pub fn mode(&self) -> pb::ProbeMode {
        self.mode
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The ring buffer's fd in eBPF mode (to wait for kernel wakeups).
    pub fn ring_fd(&self) -> Option<std::os::fd::RawFd> {
        self.probe.as_ref().map(|p| p.ring_fd())
    }

    /// Reads all pending kernel events. Returns how many connection events there were.
    pub fn drain_events(&mut self) -> usize {
        let Self {
            probe,
            table,
            clock,
            execs,
            exits,
            events_processed,
            ..
        } = self;
        let Some(probe) = probe.as_mut() else {
            return 0;
        };
        let mut conn_events = 0;
        *events_processed += probe.drain(|ev| {
            if table.apply_event(ev, clock) {
                conn_events += 1;
            } else {
                apply_process_event(execs, exits, clock, ev);
            }
        }) as u64;
        conn_events
    }

    /// Connections tracked now (listening sockets not counted).
    pub fn connection_count(&self) -> usize {
        self.table.len()
    }

    pub fn counters(&self) -> EngineCounters {
        let kernel = self
            .probe
            .as_ref()
            .map(|p| p.counters())
            .unwrap_or_default();
        EngineCounters {
            events_processed: self.events_processed,
            events_lost: kernel.ringbuf_full,
        }
    }

    /// Merges a sock_diag dump: at start (seed), on every snapshot in /proc mode, and now and
    /// then in eBPF mode while seeded connections remain.
    fn sync_with_sockdiag(&mut self, scan_processes: bool) -> Option<Vec<ProcessInfo>> {
        // Flows conntrack saw begin since the last scan: those the scan below does not find
        // opened and closed in between.
        let mut began = Vec::new();
        if let Some(events) = &mut self.conntrack
            && !events.drain(|flow| {
                if flow.event == FlowEvent::New {
                    began.push(flow);
                }
            })
        {
            tracing::warn!("conntrack events were dropped by the kernel (socket buffer full)");
        }
        let mut inodes = HashMap::new();
        let processes = scan_processes.then(|| self.scanner.scan(Some(&mut inodes)));
        let sockets = match sockdiag::dump_tcp(sockdiag::established_and_listen()) {
            Ok(sockets) => sockets,
            Err(err) => {
                tracing::warn!(%err, "cannot list TCP sockets");
                return processes;
            }
        };
        let names: HashMap<u32, String> = processes
            .iter()
            .flatten()
            .map(|p| (p.pid, p.comm.clone()))
            .collect();
        let owners: HashMap<u64, (u32, String)> = inodes
            .into_iter()
            .map(|(inode, pid)| (inode, (pid, names.get(&pid).cloned().unwrap_or_default())))
            .collect();
        let authoritative = self.probe.is_none() || self.snapshots > 0;
        let now = now_unix_ms();
        self.table.merge_dump(&sockets, &owners, now, authoritative);
        for flow in began {
            // Both ends may be on this host (loopback, or two local addresses).
            if self.local_ips.contains(&flow.src.ip()) {
                self.table.record_short_lived(flow.src, flow.dst, now);
            }
            if self.local_ips.contains(&flow.dst.ip()) {
                self.table.record_short_lived(flow.dst, flow.src, now);
            }
        }
        processes
    }

    /// Connections (and listeners) for a report: all of them, or those changed since the last
    /// report, and the ids of listeners closed since.
    fn connection_changes(&mut self, full: bool) -> (ReportConnections, Vec<String>) {
        let hostname = &self.hostname;
        let container_of = &self.container_of;
        // A connection is named after its process, not the thread that opened it (the kernel
        // reports the thread's name: `tokio-rt-worker` rather than `orca-agent`).
        let processes = &self.last_processes;
        let name = |pid: u32, thread: &str| -> String {
            processes
                .get(&pid)
                .map_or_else(|| thread.to_owned(), |p| p.comm.clone())
        };
        let changes = self.table.take_changes(full);
        let mut connections = ReportConnections::new(self.encode_connections);
        // Closed connections of one process to (or from) one endpoint, to fold when many.
        let mut ended: FxHashMap<(u32, Direction, SocketAddr), Vec<&Connection>> =
            FxHashMap::default();
        for c in changes.connections() {
            if c.state == ConnState::Established {
                let mut wire = connection(hostname, c, container_of.get(&c.pid));
                wire.comm = name(c.pid, &wire.comm);
                connections.push(wire);
            } else {
                let far = match c.direction {
                    Direction::Inbound => c.key.local,
                    _ => c.key.remote,
                };
                ended.entry((c.pid, c.direction, far)).or_default().push(c);
            }
        }
        for group in ended.into_values() {
            let container = container_of.get(&group[0].pid);
            if group.len() >= FOLD_CLOSED_AT {
                let mut wire = folded(hostname, &group, container);
                wire.comm = name(wire.pid, &wire.comm);
                connections.push(wire);
            } else {
                for c in group {
                    let mut wire = connection(hostname, c, container);
                    wire.comm = name(wire.pid, &wire.comm);
                    connections.push(wire);
                }
            }
        }
        for l in changes.listeners() {
            connections.push(pb::Connection {
                id: listener_id(hostname, l.local),
                local: Some(pb::Endpoint::new(l.local)),
                remote: None,
                direction: pb::Direction::Unspecified as i32,
                state: pb::ConnectionState::Listen as i32,
                pid: l.pid,
                process_id: process_id(hostname, l.pid),
                comm: name(l.pid, &l.comm.to_string()),
                container_id: container_of.get(&l.pid).cloned().unwrap_or_default(),
                ..Default::default()
            });
        }
        let removed = changes
            .removed_listeners
            .iter()
            .map(|local| listener_id(hostname, *local))
            .collect();
        (connections, removed)
    }

    /// Snapshots carry their connections encoded (`Snapshot::encoded_connections`) rather
    /// than as messages: what a process that only sends them does.
    pub fn encode_connections(&mut self, encode: bool) {
        self.encode_connections = encode;
    }

    /// A connections-only delta: what changed since the last report, without rescanning
    /// processes. Lets new connections reach the collector well within a report interval.
    pub fn connection_snapshot(&mut self) -> Option<Snapshot> {
        self.drain_events();
        if !self.table.has_changes() {
            return None;
        }
        let (connections, removed_connections) = self.connection_changes(false);
        Some(Snapshot {
            full: false,
            timestamp_unix_ms: now_unix_ms(),
            nodes: None,
            connections: connections.messages,
            encoded_connections: connections.encoded,
            removed_connections,
            stats: self.stats(self.last_own.cpu_percent, self.last_own.rss_bytes),
        })
    }

    fn stats(&self, cpu_percent: f64, rss_bytes: u64) -> pb::AgentStats {
        let counters = self.counters();
        pb::AgentStats {
            probe_mode: self.mode as i32,
            probe_reason: self.reason.clone(),
            events_processed: counters.events_processed,
            events_lost: counters.events_lost,
            cpu_percent,
            rss_bytes,
            reports_buffered: self.buffered_reports,
            reports_dropped: self.dropped_reports,
        }
    }

    /// Takes a snapshot of the host: host facts, processes, containers, and all connections
    /// (`full`) or those changed since the previous snapshot.
    pub fn snapshot(&mut self, full: bool) -> Snapshot {
        self.drain_events();
        let started = Instant::now();
        let processes = if self.probe.is_none() {
            self.sync_with_sockdiag(true).unwrap_or_default()
        } else {
            if self.table.has_sockdiag_entries()
                && self.snapshots.is_multiple_of(SEED_RECONCILE_EVERY)
            {
                self.table.reconcile_seeded(
                    |visit| match sockdiag::for_each_tcp(sockdiag::established(), |s| visit(&s)) {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::warn!(%err, "cannot list TCP sockets");
                            false
                        }
                    },
                    now_unix_ms(),
                );
            }
            self.scanner.scan(None)
        };
        if let Some(probe) = self
            .probe
            .as_mut()
            .filter(|_| full || self.snapshots.is_multiple_of(self.counters_every))
        {
            let sockets = self.table.kernel_sockets();
            let mut answers = FxHashMap::default();
            answers.reserve(sockets.len());
            match probe.read_counters(&sockets, |answer| {
                answers.insert(answer.sk, *answer);
            }) {
                Ok(()) => self.table.apply_kernel_counters(&answers, now_unix_ms()),
                Err(err) => tracing::warn!(%err, "cannot read connection counters from the kernel"),
            }
        }
        if self.snapshots.is_multiple_of(COUNTERS_EVERY) {
            self.table.expire_pending_owners();
        }
        self.snapshots += 1;
        let now = now_unix_ms();
        let mut host = self.host.collect();
        host.hostname = self.hostname.clone();
        let host_id = format!("host:{}", self.hostname);
        let mut nodes = Vec::with_capacity(processes.len() + 1);
        nodes.push(pb::Node {
            id: host_id.clone(),
            kind: pb::NodeKind::Host as i32,
            parents: vec![],
            labels: HashMap::new(),
            detail: Some(pb::node::Detail::Host(host)),
        });

        // Per-process connection counts and bytes.
        let mut per_pid: FxHashMap<u32, (u32, u64, u64)> = FxHashMap::default();
        for c in self.table.connections() {
            let e = per_pid.entry(c.pid).or_default();
            e.0 += 1;
            e.1 += c.bytes_sent;
            e.2 += c.bytes_received;
        }

        let mut containers: HashMap<String, pb::Container> = HashMap::new();
        let mut live: HashMap<u32, ProcessInfo> = HashMap::with_capacity(processes.len());
        let mut container_of: HashMap<u32, String> = HashMap::new();
        let directory = self.directory.clone();
        let directory = directory.read().unwrap_or_else(|e| e.into_inner());
        for p in processes {
            let container = directory.container_of(&p.cgroup).map(|(id, _)| id);
            if let Some(id) = &container {
                container_of.insert(p.pid, id.clone());
                let c = containers
                    .entry(id.clone())
                    .or_insert_with(|| container_detail(&directory, id, &p.cgroup));
                // Usage: the sum over the container's processes (memory and CPU time are
                // read from its cgroup below where it can be).
                c.cpu_percent += p.cpu_percent;
                c.memory_usage_bytes += p.rss_bytes;
                c.cpu_seconds_total += p.cpu_seconds_total;
            }
            let exit = self.exits.remove(&p.pid);
            nodes.push(self.process_node(&host_id, &p, container, &per_pid, exit));
            live.insert(p.pid, p);
        }
        // Processes that exited since the last snapshot: shown once, with their exit status.
        let exits: Vec<(u32, ExitStatus)> = self.exits.drain().collect();
        for (pid, status) in exits {
            let info = self.last_processes.get(&pid).cloned().or_else(|| {
                self.execs.get(&pid).map(|e| ProcessInfo {
                    pid,
                    ppid: e.ppid,
                    comm: e.comm.clone(),
                    cmdline: vec![],
                    uid: 0,
                    user: String::new(),
                    cpu_percent: 0.0,
                    cpu_seconds_total: 0.0,
                    rss_bytes: 0,
                    vsz_bytes: 0,
                    open_fds: 0,
                    cgroup: String::new(),
                    started_unix_ms: e.started_unix_ms,
                })
            });
            if let Some(info) = info {
                let container = container_of.get(&pid).cloned();
                nodes.push(self.process_node(&host_id, &info, container, &per_pid, Some(status)));
            }
        }
        self.execs.clear();
        // Containers the runtimes know that run no process (created, stopped, paused).
        for id in directory.by_id.keys() {
            if !containers.contains_key(id) {
                containers.insert(id.clone(), container_detail(&directory, id, ""));
            }
        }
        drop(directory);
        for mut c in containers.into_values() {
            c.cpu_percent = (c.cpu_percent * 10.0).round() / 10.0;
            if let Some(driver) = &self.cgroups
                && !c.cgroup_path.is_empty()
            {
                let cgroup = driver.cgroup_at(&c.cgroup_path);
                if cgroup.exists() {
                    let usage = cgroup.usage();
                    c.cpu_seconds_total = usage.cpu_seconds;
                    c.memory_usage_bytes = usage.memory_bytes;
                }
            }
            nodes.push(pb::Node {
                id: format!("container:{}", c.id),
                kind: pb::NodeKind::Container as i32,
                parents: vec![host_id.clone()],
                labels: c.labels.clone(),
                detail: Some(pb::node::Detail::Container(c)),
            });
        }

        self.container_of = container_of;
        self.last_processes = live;
        let (connections, removed_connections) = self.connection_changes(full);

        let own = self.self_stat.sample();
        self.last_own = own;
        tracing::trace!(elapsed = ?started.elapsed(), "snapshot");
        Snapshot {
            full,
            timestamp_unix_ms: now,
            nodes: Some(nodes),
            connections: connections.messages,
            encoded_connections: connections.encoded,
            removed_connections,
            stats: self.stats(own.cpu_percent, own.rss_bytes),
        }
    }

    fn process_node(
        &self,
        host_id: &str,
        p: &ProcessInfo,
        container_id: Option<String>,
        per_pid: &FxHashMap<u32, (u32, u64, u64)>,
        exit: Option<ExitStatus>,
    ) -> pb::Node {
        let (conns, tx, rx) = per_pid.get(&p.pid).copied().unwrap_or_default();
        let mut parents = Vec::with_capacity(2);
        if let Some(id) = &container_id {
            parents.push(format!("container:{id}"));
        }
        parents.push(host_id.to_string());
        pb::Node {
            id: process_id(&self.hostname, p.pid),
            kind: pb::NodeKind::Process as i32,
            parents,
            labels: HashMap::new(),
            detail: Some(pb::node::Detail::Process(pb::Process {
                pid: p.pid,
                ppid: p.ppid,
                comm: p.comm.clone(),
                cmdline: p.cmdline.clone(),
                user: p.user.clone(),
                uid: p.uid,
                cpu_percent: (p.cpu_percent * 10.0).round() / 10.0,
                cpu_seconds_total: p.cpu_seconds_total,
                rss_bytes: p.rss_bytes,
                vsz_bytes: p.vsz_bytes,
                open_fds: p.open_fds,
                connections: conns,
                cgroup: p.cgroup.clone(),
                container_id: container_id.unwrap_or_default(),
                started_unix_ms: p.started_unix_ms,
                exited: exit.is_some(),
                exit_code: exit.map(|e| e.code).unwrap_or(0),
                exit_signal: exit.map(|e| e.signal).unwrap_or(0),
                net_tx_bytes: tx,
                net_rx_bytes: rx,
            })),
        }
    }
}

fn apply_process_event(
    execs: &mut HashMap<u32, ProcessEvent>,
    exits: &mut HashMap<u32, ExitStatus>,
    clock: &Clock,
    ev: &Event,
) {
    match ev.kind {
        event_kind::EXEC | event_kind::FORK => {
            execs.insert(
                ev.pid,
                ProcessEvent {
                    ppid: ev.ppid,
                    comm: comm_string(&ev.comm),
                    started_unix_ms: clock.unix_ms(ev.ts_ns),
                },
            );
        }
        event_kind::EXIT => {
            let status = ev.aux as i32;
            exits.insert(
                ev.pid,
                ExitStatus {
                    code: (status >> 8) & 0xff,
                    signal: status & 0x7f,
                },
            );
        }
        _ => {}
    }
}

/// A container node's detail: the runtime's record when there is one, else what the
/// cgroup name tells.
fn container_detail(directory: &Directory, id: &str, cgroup_path: &str) -> pb::Container {
    match directory.by_id.get(id) {
        Some(meta) => pb::Container {
            id: id.to_string(),
            name: meta.name.clone(),
            image: meta.image.clone(),
            runtime: meta.runtime.to_string(),
            state: meta.state as i32,
            labels: meta.labels.clone(),
            ports: meta.ports.clone(),
            cgroup_path: cgroup_path.to_string(),
            memory_limit_bytes: meta.memory_limit_bytes,
            cpu_limit_cores: meta.cpu_limit_cores,
            namespace: meta.namespace.clone(),
            restart_count: meta.restart_count,
            ..Default::default()
        },
        None => pb::Container {
            id: id.to_string(),
            name: id.chars().take(12).collect(),
            runtime: directory
                .container_of(cgroup_path)
                .map(|(_, runtime)| runtime.to_string())
                .unwrap_or_default(),
            // A container found only by its cgroup runs: one of its processes does.
            state: pb::ContainerState::Running as i32,
            cgroup_path: cgroup_path.to_string(),
            ..Default::default()
        },
    }
}

/// One entry for many closed connections of one process to (or from) one endpoint.
fn folded(hostname: &str, group: &[&Connection], container: Option<&String>) -> pb::Connection {
    let first = group[0];
    let (local, remote) = match first.direction {
        Direction::Inbound => (first.key.local, SocketAddr::new(first.key.remote.ip(), 0)),
        _ => (SocketAddr::new(first.key.local.ip(), 0), first.key.remote),
    };
    let mut out = connection(
        hostname,
        &Connection {
            key: crate::connections::ConnKey { local, remote },
            ..first.clone()
        },
        container,
    );
    out.id = format!("{}:{}:folded", out.id, first.pid);
    out.state = pb::ConnectionState::Closed as i32;
    out.aggregated = group.len() as u32;
    out.bytes_sent = group.iter().map(|c| c.bytes_sent).sum();
    out.bytes_received = group.iter().map(|c| c.bytes_received).sum();
    out.retransmits = group.iter().map(|c| c.retransmits).sum();
    out.started_unix_ms = group.iter().map(|c| c.started_unix_ms).min().unwrap_or(0);
    out.closed_unix_ms = group.iter().map(|c| c.closed_unix_ms).max().unwrap_or(0);
    out
}

fn connection(hostname: &str, c: &Connection, container: Option<&String>) -> pb::Connection {
    // "<host>:<local ip>:<port>-<remote ip>:<port>" (IPv6 in brackets), built without the
    // formatting machinery: thousands of connections a second pass through here.
    let mut id = String::with_capacity(hostname.len() + 64);
    id.push_str(hostname);
    id.push(':');
    push_addr(&mut id, c.key.local);
    id.push('-');
    push_addr(&mut id, c.key.remote);
    pb::Connection {
        id,
        local: Some(pb::Endpoint::new(c.key.local)),
        remote: Some(pb::Endpoint::new(c.key.remote)),
        direction: match c.direction {
            Direction::Outbound => pb::Direction::Outbound,
            Direction::Inbound => pb::Direction::Inbound,
            Direction::Unknown => pb::Direction::Unspecified,
        } as i32,
        state: match c.state {
            ConnState::Established => pb::ConnectionState::Established,
            ConnState::Closed => pb::ConnectionState::Closed,
            ConnState::Failed => pb::ConnectionState::Failed,
        } as i32,
        pid: c.pid,
        process_id: process_id(hostname, c.pid),
        comm: c.comm.to_string(),
        container_id: container.cloned().unwrap_or_default(),
        bytes_sent: c.bytes_sent,
        bytes_received: c.bytes_received,
        retransmits: c.retransmits,
        started_unix_ms: c.started_unix_ms,
        closed_unix_ms: c.closed_unix_ms,
        aggregated: 0,
    }
}

fn listener_id(hostname: &str, local: std::net::SocketAddr) -> String {
    format!("{hostname}:listen:{local}")
}

fn push_addr(out: &mut String, addr: std::net::SocketAddr) {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u32(out, *octet as u32);
            }
        }
        v6 => {
            use std::fmt::Write as _;
            let _ = write!(out, "[{v6}]");
        }
    }
    out.push(':');
    push_u32(out, addr.port() as u32);
}

fn push_u32(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(*d as char);
    }
}

pub fn process_id(hostname: &str, pid: u32) -> String {
    if pid == 0 {
        return String::new();
    }
    format!("process:{hostname}:{pid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_endpoints_match_the_standard_formatting() {
        for addr in [
            "127.0.0.1:80",
            "10.203.0.255:65535",
            "0.0.0.0:0",
            "[::1]:8080",
            "[fe80::1]:1",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            assert_eq!(pb::Endpoint::new(addr).socket_addr(), Some(addr));
            let mut s = String::new();
            push_addr(&mut s, addr);
            assert_eq!(s, addr.to_string());
        }
    }
}
