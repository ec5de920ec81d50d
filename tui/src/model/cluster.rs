//! The TUI's copy of the cluster (agents, frameworks, tasks), kept current by the master's
//! operator watch: a snapshot, then deltas.
use std::collections::HashMap;

use orca_proto::operator::v1 as pb;

use super::domain::{Agent, Framework, Task};

#[derive(Debug, Default)]
pub struct Cluster {
    pub agents: HashMap<String, Agent>,
    pub frameworks: HashMap<String, Framework>,
    /// Keyed `<framework_id>/<task_id>`.
    pub tasks: HashMap<String, Task>,
    pub master_id: String,
    pub uptime_seconds: u64,
    pub version: u64,
    pub loaded: bool,
}

impl Cluster {
    pub fn apply(&mut self, delta: pb::ClusterDelta) {
        if delta.full {
            self.agents.clear();
            self.frameworks.clear();
            self.tasks.clear();
            self.loaded = true;
        }
        for a in delta.upserted_agents {
            self.agents.insert(a.id.clone(), a.into());
        }
        for id in &delta.removed_agents {
            self.agents.remove(id);
        }
        for f in delta.upserted_frameworks {
            self.frameworks.insert(f.id.clone(), f.into());
        }
        for id in &delta.removed_frameworks {
            self.frameworks.remove(id);
        }
        for t in delta.upserted_tasks {
            self.tasks.insert(t.key.clone(), t.into());
        }
        for key in &delta.removed_tasks {
            self.tasks.remove(key);
        }
        self.master_id = delta.master_id;
        self.uptime_seconds = delta.uptime_seconds;
        self.version += 1;
    }

    pub fn framework_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.frameworks.get(id).map_or(id, |f| f.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use orca_proto::cluster::v1::TaskState;

    use super::*;

    #[test]
    fn snapshot_then_deltas() {
        let mut c = Cluster::default();
        c.apply(pb::ClusterDelta {
            full: true,
            upserted_agents: vec![pb::Agent {
                id: "a1".into(),
                ..Default::default()
            }],
            upserted_tasks: vec![pb::Task {
                key: "f/t".into(),
                state: TaskState::Running as i32,
                ..Default::default()
            }],
            ..Default::default()
        });
        c.apply(pb::ClusterDelta {
            upserted_tasks: vec![pb::Task {
                key: "f/t".into(),
                state: TaskState::Killed as i32,
                ..Default::default()
            }],
            removed_agents: vec!["a1".into()],
            ..Default::default()
        });
        assert!(c.agents.is_empty());
        assert_eq!(c.tasks["f/t"].state, TaskState::Killed);
        assert!(c.tasks["f/t"].state.is_terminal());
        c.apply(pb::ClusterDelta {
            full: true,
            ..Default::default()
        });
        assert!(c.tasks.is_empty());
        assert_eq!(c.version, 3);
    }
}
