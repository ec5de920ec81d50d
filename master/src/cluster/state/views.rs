//! Read-only views of the state: the snapshot behind `/master/state` and the operator watch,
//! and the Mesos-named metrics.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use super::{AgentHealth, State, TaskEntry};
use crate::cluster::registry::DrainState;
use crate::cluster::{FrameworkInfo, Labels, Offer, TaskState, TaskStatus, TaskUsage};
use crate::resources::Resources;

/// A task as views and events show it.
pub(super) fn task_view(t: &TaskEntry) -> TaskView {
    TaskView {
        id: t.info.task_id.clone(),
        name: t.info.name.clone(),
        framework_id: t.framework_id.clone(),
        agent_id: t.info.agent_id.clone(),
        role: t.role.to_string(),
        state: t.state,
        resources: t.info.resources.clone(),
        labels: t.info.labels.clone(),
        statuses: t.latest.iter().cloned().collect(),
        usage: t.usage.clone(),
        started: t.started,
    }
}

impl State {
    pub(in crate::cluster) fn snapshot(&self) -> StateSnapshot {
        let mut frameworks: Vec<FrameworkView> = self
            .frameworks
            .values()
            .map(|fw| {
                let mut used = Resources::new();
                for t in fw.tasks.values().filter(|t| !t.state.is_terminal()) {
                    used.add(&t.info.resources);
                }
                let mut offered = Resources::new();
                for id in &fw.offers {
                    if let Some(o) = self.offers.get(id) {
                        offered.add(&o.offer.resources);
                    }
                }
                FrameworkView {
                    id: fw.id.clone(),
                    info: fw.info.clone(),
                    active: fw.events.is_some(),
                    connected: fw.events.is_some(),
                    recovered: fw.recovered,
                    registered: fw.registered,
                    dominant_share: self.allocator.framework_share(&fw.id).unwrap_or(0.0),
                    suppressed_roles: self.allocator.suppressed_roles(&fw.id),
                    used,
                    offered,
                    tasks: fw.tasks.values().map(task_view).collect(),
                    completed_tasks: fw.completed.iter().map(task_view).collect(),
                    offers: fw
                        .offers
                        .iter()
                        .filter_map(|id| self.offers.get(id).map(|o| o.offer.clone()))
                        .collect(),
                }
            })
            .collect();
        frameworks.sort_by(|a, b| a.id.cmp(&b.id));
        // One pass over tasks and offers, not one per agent.
        let mut used_by: HashMap<&str, Resources> = HashMap::new();
        let mut tasks_on: HashMap<&str, usize> = HashMap::new();
        for t in self.frameworks.values().flat_map(|fw| fw.tasks.values()) {
            *tasks_on.entry(t.info.agent_id.as_str()).or_default() += 1;
            if !t.state.is_terminal() {
                used_by
                    .entry(t.info.agent_id.as_str())
                    .or_default()
                    .add(&t.info.resources);
            }
        }
        let mut offered_by: HashMap<&str, Resources> = HashMap::new();
        for o in self.offers.values() {
            offered_by
                .entry(o.offer.agent_id.as_str())
                .or_default()
                .add(&o.offer.resources);
        }
        let mut agents: Vec<AgentView> = self
            .agents
            .values()
            .map(|a| {
                let total = a.info.resources.clone();
                let available = self
                    .allocator
                    .agent_available(&a.id)
                    .cloned()
                    .unwrap_or_default();
                let used = used_by.remove(a.id.as_str()).unwrap_or_default();
                let offered = offered_by.remove(a.id.as_str()).unwrap_or_default();
                AgentView {
                    id: a.id.clone(),
                    hostname: a.info.hostname.clone(),
                    attributes: a.info.attributes.clone(),
                    // As Mesos: a deactivated agent is not active either.
                    active: a.health == AgentHealth::Active && !a.deactivated,
                    connected: a.health == AgentHealth::Active,
                    deactivated: a.deactivated,
                    drain: a.drain.as_ref().map(|d| DrainView {
                        state: d.record.state,
                        max_grace_period_secs: d.record.max_grace_period_secs,
                        mark_gone: d.record.mark_gone,
                        started: d.started,
                        tasks_left: tasks_on.get(a.id.as_str()).copied().unwrap_or(0),
                    }),
                    registered: a.registered,
                    reregistered: a.reregistered,
                    total,
                    used,
                    offered,
                    available,
                }
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        StateSnapshot {
            master_id: self.master_id.clone(),
            uptime: self.started.elapsed(),
            frameworks,
            completed_frameworks: self
                .completed_frameworks
                .iter()
                .map(|(id, info)| (id.clone(), info.clone()))
                .collect(),
            agents,
            recovered_agents: self
                .recovered_agents
                .iter()
                .map(|(id, r)| (id.clone(), r.hostname.clone()))
                .collect(),
            roles: self
                .allocator
                .role_shares()
                .into_iter()
                .map(|(role, weight, share)| (role.to_string(), weight, share))
                .collect(),
        }
    }

    /// Allocation run times as a Prometheus histogram (a handle on the live one).
    pub(in crate::cluster) fn allocation_seconds(
        &self,
    ) -> prometheus_client::metrics::histogram::Histogram {
        self.allocation_seconds.clone()
    }

    pub(in crate::cluster) fn metrics(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        let mut put = |name: &str, value: f64| out.push((name.to_owned(), value));
        put("master/elected", 1.0);
        put("master/uptime_secs", self.started.elapsed().as_secs_f64());
        let connected_agents = self
            .agents
            .values()
            .filter(|a| a.health == AgentHealth::Active)
            .count();
        let deactivated_agents = self.agents.values().filter(|a| a.deactivated).count();
        let active_agents = self
            .agents
            .values()
            .filter(|a| a.health == AgentHealth::Active && !a.deactivated)
            .count();
        put("master/slaves_active", active_agents as f64);
        put(
            "master/slaves_inactive",
            (self.agents.len() - active_agents) as f64,
        );
        put("master/slaves_connected", connected_agents as f64);
        put("master/slaves_deactivated", deactivated_agents as f64);
        // Drains, beyond Mesos's metrics: how many agents drain, are drained or gone, and how
        // many tasks the draining agents still hold.
        let in_drain = |state: DrainState| {
            self.agents
                .values()
                .filter(move |a| a.drain.as_ref().is_some_and(|d| d.record.state == state))
        };
        put(
            "master/slaves_draining",
            in_drain(DrainState::Draining).count() as f64,
        );
        put(
            "master/slaves_drained",
            in_drain(DrainState::Drained).count() as f64,
        );
        put("master/slaves_gone", self.gone.len() as f64);
        let draining: std::collections::HashSet<&str> = in_drain(DrainState::Draining)
            .map(|a| a.id.as_str())
            .collect();
        let draining_tasks = if draining.is_empty() {
            0
        } else {
            self.frameworks
                .values()
                .flat_map(|fw| fw.tasks.values())
                .filter(|t| draining.contains(t.info.agent_id.as_str()))
                .count()
        };
        put("master/draining_tasks", draining_tasks as f64);
        put(
            "master/slaves_unreachable",
            (self.agents.len() - connected_agents) as f64,
        );
        let connected = self
            .frameworks
            .values()
            .filter(|f| f.events.is_some())
            .count();
        put("master/frameworks_active", connected as f64);
        put("master/frameworks_connected", connected as f64);
        put(
            "master/frameworks_disconnected",
            (self.frameworks.len() - connected) as f64,
        );
        put(
            "master/frameworks_inactive",
            (self.frameworks.len() - connected) as f64,
        );
        put("master/outstanding_offers", self.offers.len() as f64);
        let mut live: BTreeMap<TaskState, u64> = BTreeMap::new();
        for fw in self.frameworks.values() {
            for t in fw.tasks.values() {
                *live.entry(t.state).or_default() += 1;
            }
        }
        for state in [
            TaskState::Staging,
            TaskState::Starting,
            TaskState::Running,
            TaskState::Killing,
            TaskState::Unreachable,
        ] {
            let name = format!("master/tasks_{}", &state.name()[5..].to_lowercase());
            put(&name, live.get(&state).copied().unwrap_or(0) as f64);
        }
        for state in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            let name = format!("master/tasks_{}", &state.name()[5..].to_lowercase());
            put(
                &name,
                self.counters
                    .terminal
                    .get(state.name())
                    .copied()
                    .unwrap_or(0) as f64,
            );
        }
        put("master/offers_made", self.counters.offers_made as f64);
        put(
            "master/offers_declined",
            self.counters.offers_declined as f64,
        );
        put(
            "master/offers_accepted",
            self.counters.offers_accepted as f64,
        );
        put(
            "master/offers_rescinded",
            self.counters.offers_rescinded as f64,
        );
        put("master/invalid_calls", self.counters.invalid_calls as f64);
        let h = &self.allocation_us;
        put("allocator/allocation_runs", h.len() as f64);
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            put(
                &format!("allocator/allocation_run_ms/{name}"),
                h.value_at_quantile(q) as f64 / 1000.0,
            );
        }
        put("allocator/allocation_run_ms/max", h.max() as f64 / 1000.0);
        out
    }
}

/// A read-only copy of the master's state for `/master/state` and the TUI.
#[derive(Clone, Debug)]
pub struct StateSnapshot {
    pub master_id: String,
    pub uptime: Duration,
    pub frameworks: Vec<FrameworkView>,
    pub completed_frameworks: Vec<(String, FrameworkInfo)>,
    pub agents: Vec<AgentView>,
    /// Agents the registry knows that have not re-registered since the master started:
    /// (id, hostname).
    pub recovered_agents: Vec<(String, String)>,
    /// (role, weight, weighted dominant share)
    pub roles: Vec<(String, f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct FrameworkView {
    pub id: String,
    pub info: FrameworkInfo,
    pub active: bool,
    pub connected: bool,
    /// Known from its agents' tasks, not subscribed to this master since.
    pub recovered: bool,
    pub registered: SystemTime,
    pub dominant_share: f64,
    /// Its roles it suppressed offers in (SUPPRESS).
    pub suppressed_roles: Vec<String>,
    pub used: Resources,
    pub offered: Resources,
    pub tasks: Vec<TaskView>,
    pub completed_tasks: Vec<TaskView>,
    pub offers: Vec<Offer>,
}

#[derive(Clone, Debug)]
pub struct TaskView {
    pub id: String,
    pub name: String,
    pub framework_id: String,
    pub agent_id: String,
    pub role: String,
    pub state: TaskState,
    pub resources: Resources,
    pub labels: Labels,
    pub statuses: Vec<TaskStatus>,
    pub usage: Option<TaskUsage>,
    pub started: SystemTime,
}

#[derive(Clone, Debug)]
pub struct AgentView {
    pub id: String,
    pub hostname: String,
    pub attributes: Labels,
    pub active: bool,
    /// It answers its heartbeats (an active agent, or a deactivated one still connected).
    pub connected: bool,
    /// An operator deactivated it (`DEACTIVATE_AGENT`, or a drain).
    pub deactivated: bool,
    /// Its drain (`DRAIN_AGENT`), until it is reactivated.
    pub drain: Option<DrainView>,
    pub registered: SystemTime,
    pub reregistered: Option<SystemTime>,
    pub total: Resources,
    pub used: Resources,
    pub offered: Resources,
    pub available: Resources,
}

/// Mesos's `DrainInfo` with the drain's progress.
#[derive(Clone, Debug)]
pub struct DrainView {
    pub state: DrainState,
    pub max_grace_period_secs: Option<f64>,
    pub mark_gone: bool,
    /// When this master started following it (Mesos's `estimated_drain_start_time`).
    pub started: SystemTime,
    /// Tasks still on the agent (live, or ended with an unacknowledged last update).
    pub tasks_left: usize,
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testing::*;
    use crate::cluster::TaskState;

    fn metric(s: &super::State, name: &str) -> f64 {
        s.metrics()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no metric {name}"))
            .1
    }

    #[test]
    fn the_snapshot_and_metrics_count_what_the_state_holds() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![
                task("a", &agent.id, "cpus:0.5;mem:128"),
                task("b", &agent.id, "cpus:0.5;mem:128"),
            ],
        );
        agent.drain();
        s.status_update(&fw.id, agent_update(&agent.id, "a", TaskState::Running))
            .unwrap();
        s.status_update(&fw.id, agent_update(&agent.id, "b", TaskState::Finished))
            .unwrap();
        let snapshot = s.snapshot();
        assert_eq!(snapshot.agents.len(), 1);
        assert_eq!(snapshot.agents[0].used, resources("cpus:0.5;mem:128"));
        assert_eq!(snapshot.frameworks.len(), 1);
        assert_eq!(snapshot.frameworks[0].tasks.len(), 2, "b waits for its ack");
        assert_eq!(metric(&s, "master/tasks_running"), 1.0);
        assert_eq!(metric(&s, "master/tasks_finished"), 1.0);
        assert_eq!(metric(&s, "master/slaves_active"), 1.0);
        assert_eq!(metric(&s, "master/frameworks_connected"), 1.0);
        assert_eq!(metric(&s, "master/offers_made"), 1.0);
        assert_eq!(metric(&s, "master/offers_accepted"), 1.0);
        s.disconnected(&fw.id, &fw.stream_id, Instant::now());
        assert_eq!(metric(&s, "master/frameworks_disconnected"), 1.0);
        assert!(!s.snapshot().frameworks[0].connected);
    }
}
