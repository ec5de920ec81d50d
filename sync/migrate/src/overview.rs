//! What an operator watches while a migration runs, in one reply (the TUI's Migration view
//! polls it): per ensemble its servers with their mode and client sessions and the masters
//! that live there; the agents on each side; tasks, frameworks and interruptions; the sync's
//! figures and the conflicts it holds.
use std::net::SocketAddr;

use orca_sync::engine::{Conflict, Status as SyncStatus};
use serde::{Deserialize, Serialize};

use crate::{
    cluster::ClusterView,
    ensemble::{self, EnsembleHealth},
    orchestrator::Orchestrator,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overview {
    pub migration: String,
    /// A, then B.
    pub ensembles: Vec<EnsembleView>,
    /// The leading master's HTTP address and how long it has led, as the orchestrator saw.
    pub leader: Option<LeaderView>,
    pub agents: AgentCounts,
    pub frameworks: usize,
    /// Frameworks not connected to the leader now (name and id).
    pub frameworks_disconnected: Vec<String>,
    pub tasks_running: u64,
    /// Running tasks that ended failed, lost, gone, unreachable or dropped.
    pub interruptions: Vec<String>,
    /// The leader's cluster stream is followed (`false`: no view of the cluster now).
    pub watching: bool,
    /// `None` outside phases 1-5 (the sync runs only then).
    pub sync: Option<SyncStatus>,
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleView {
    /// `A` or `B`.
    pub name: String,
    pub connect: String,
    pub servers: Vec<ServerView>,
    pub quorum: bool,
    /// The masters whose home is this ensemble (B's are the configured target masters),
    /// leader first; a master's contender is mirrored onto the other ensemble.
    pub masters: Vec<MasterView>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerView {
    pub server: String,
    /// `leader`, `follower`, `standalone`, … or `None` when it does not answer.
    pub mode: Option<String>,
    /// Client sessions it holds (its `cons`), `None` when it does not answer.
    pub sessions: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterView {
    pub id: String,
    pub http: Option<SocketAddr>,
    pub sequence: u64,
    pub leader: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaderView {
    pub contender: String,
    pub http: Option<SocketAddr>,
    pub on_b: bool,
    pub for_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentCounts {
    pub total: usize,
    pub active: usize,
    /// Agents the migration switched to B (all of them once phase 6 is done).
    pub on_b: usize,
    pub on_a: usize,
    pub drained: usize,
}

impl Overview {
    pub async fn gather(o: &Orchestrator) -> Self {
        let state = o.snapshot();
        let cfg = &state.config;
        let on_b_addr = |http: Option<SocketAddr>| {
            cfg.cluster
                .target_masters
                .iter()
                .any(|m| Some(m.http) == http)
        };
        // The group as the side that leads sees it (both hold the same names while synced).
        let group = match o.contenders(o.leader_on_b() || !o.has_a()).await {
            Ok(g) => g,
            Err(_) => o.contenders(true).await.unwrap_or_default(),
        };
        let (a_health, b_health, a_sessions, b_sessions) = tokio::join!(
            EnsembleHealth::probe(&cfg.sync.source_zk),
            EnsembleHealth::probe(&cfg.sync.target_zk),
            ensemble::sessions(&cfg.sync.source_zk),
            ensemble::sessions(&cfg.sync.target_zk),
        );
        let ensembles = [
            ("A", &cfg.sync.source_zk, a_health, a_sessions, false),
            ("B", &cfg.sync.target_zk, b_health, b_sessions, true),
        ]
        .into_iter()
        .map(|(name, connect, health, sessions, b)| EnsembleView {
            name: name.into(),
            connect: connect.clone(),
            quorum: health.has_quorum(),
            servers: health
                .servers
                .into_iter()
                .map(|s| ServerView {
                    sessions: sessions
                        .iter()
                        .find(|(server, _)| *server == s.server)
                        .and_then(|(_, list)| list.as_ref().map(Vec::len)),
                    server: s.server,
                    mode: s.mode,
                })
                .collect(),
            masters: group
                .iter()
                .enumerate()
                .filter(|(_, c)| on_b_addr(c.http) == b)
                .map(|(i, c)| MasterView {
                    id: c.id.clone(),
                    http: c.http,
                    sequence: c.sequence,
                    leader: i == 0,
                })
                .collect(),
        })
        .collect();
        let leader = o.leader_since().map(|(contender, for_)| {
            let http = group
                .iter()
                .find(|c| c.name == contender)
                .and_then(|c| c.http);
            LeaderView {
                on_b: on_b_addr(http),
                contender,
                http,
                for_ms: for_.as_millis() as u64,
            }
        });
        let (view, watching, interruptions) = {
            let seen = o.monitor.lock();
            (
                seen.view.clone(),
                seen.connected,
                seen.interruptions.clone(),
            )
        };
        let engine = o.engine_for_checks().await;
        Self {
            migration: state.id.clone(),
            ensembles,
            leader,
            agents: agent_counts(&view, &state.switched_agents, state.completed >= 6),
            frameworks: view.frameworks.len(),
            frameworks_disconnected: view.disconnected_frameworks(),
            tasks_running: view.running_tasks(),
            interruptions,
            watching,
            sync: o.sync_status(),
            conflicts: engine.map(|e| e.held_conflicts()).unwrap_or_default(),
        }
    }
}

/// Agents by side: the switched ones are on B (every one once A is retired).
fn agent_counts(view: &ClusterView, switched: &[String], all_on_b: bool) -> AgentCounts {
    let total = view.agents.len();
    let on_b = if all_on_b {
        total
    } else {
        view.agents
            .keys()
            .filter(|id| switched.contains(id))
            .count()
    };
    AgentCounts {
        total,
        active: view.active_agents(),
        on_b,
        on_a: total - on_b,
        drained: view
            .agents
            .values()
            .filter(|a| ClusterView::drained(a))
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orca_proto::operator::v1::{self as op, AgentDrainState, AgentState};

    fn agent(id: &str, drained: bool) -> op::Agent {
        op::Agent {
            id: id.into(),
            state: AgentState::Active as i32,
            drain_state: if drained {
                AgentDrainState::Drained as i32
            } else {
                AgentDrainState::None as i32
            },
            ..Default::default()
        }
    }

    #[test]
    fn agents_count_on_b_once_switched_and_all_once_a_is_retired() {
        let mut view = ClusterView::default();
        for (id, drained) in [("s1", false), ("s2", false), ("s3", true)] {
            view.agents.insert(id.into(), agent(id, drained));
        }
        let counts = agent_counts(&view, &["s1".into(), "gone".into()], false);
        assert_eq!((counts.total, counts.on_b, counts.on_a), (3, 1, 2));
        assert_eq!(counts.drained, 1);
        let counts = agent_counts(&view, &[], true);
        assert_eq!((counts.on_b, counts.on_a), (3, 0));
    }
}
