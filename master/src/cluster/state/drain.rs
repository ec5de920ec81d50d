//! Draining agents and agents marked gone, as Mesos 1.9's `DRAIN_AGENT` and `MARK_AGENT_GONE`.
//!
//! A drain deactivates the agent (its offers are rescinded, nothing of it is offered) and
//! kills every task on it with its kill grace period, capped by the drain's
//! `max_grace_period`. Kills and the updates they cause say `REASON_AGENT_DRAINING` (and,
//! when the drain marks the agent gone, `TASK_GONE_BY_OPERATOR` to partition-aware
//! frameworks), so frameworks know to relaunch elsewhere. Once no task is left on the agent
//! and every terminal update was acknowledged, the agent is DRAINED, or gone when the drain
//! said so. The drain is in the registry: a new leader, or the agent after a restart, goes on
//! with it (the kills are sent again when the agent re-registers).
//!
//! A gone agent's tasks end `TASK_GONE_BY_OPERATOR` (`TASK_LOST` to frameworks that are not
//! partition-aware), the agent is told to shut down, and it may never register again.
use std::time::{Duration, Instant, SystemTime};

use super::{State, now_seconds};
use crate::cluster::registry::{AgentRecord, Change, DrainRecord, DrainState};
use crate::cluster::{AgentCommand, ApiError, TaskState, TaskStatus};

/// An agent's drain as this master follows it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct AgentDrain {
    pub(super) record: DrainRecord,
    /// When this master started it (Mesos's `estimated_drain_start_time`).
    pub(super) started: SystemTime,
}

impl AgentDrain {
    fn max_grace(&self) -> Option<Duration> {
        self.record
            .max_grace_period_secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }
}

/// Mesos's reason on the updates of tasks a drain kills.
pub(super) const DRAINING_REASON: &str = "REASON_AGENT_DRAINING";

impl State {
    /// `DRAIN_AGENT`. Draining an agent again replaces its drain's configuration and sends
    /// the kills again (as Mesos); an agent not known (or gone) is a bad request.
    pub(in crate::cluster) fn drain_agent(
        &mut self,
        agent_id: &str,
        max_grace_period: Option<Duration>,
        mark_gone: bool,
        now: Instant,
    ) -> Result<(), ApiError> {
        if self.gone.contains_key(agent_id) {
            return Err(ApiError::BadRequest(format!(
                "unknown agent {agent_id}: it was marked gone and cannot be drained"
            )));
        }
        let record = DrainRecord {
            state: DrainState::Draining,
            max_grace_period_secs: max_grace_period.map(|d| d.as_secs_f64()),
            mark_gone,
        };
        if let Some(recovered) = self.recovered_agents.get(agent_id) {
            // Known from the registry but not re-registered yet: the kills go out when it is.
            let recovered = AgentRecord {
                deactivated: true,
                drain: Some(record),
                ..recovered.clone()
            };
            self.record(Change::AgentAdmitted {
                id: agent_id.to_owned(),
                record: recovered.clone(),
            })?;
            self.recovered_agents.insert(agent_id.to_owned(), recovered);
            return Ok(());
        }
        let agent = self.agents.get(agent_id).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown agent {agent_id}: it is not registered with this master"
            ))
        })?;
        let drain = AgentDrain {
            record,
            started: SystemTime::now(),
        };
        self.record(Change::AgentAdmitted {
            id: agent_id.to_owned(),
            record: AgentRecord {
                deactivated: true,
                drain: Some(drain.record.clone()),
                ..agent.record()
            },
        })?;
        tracing::info!(agent = %agent_id, ?max_grace_period, mark_gone, "draining agent");
        let agent = self.agents.get_mut(agent_id).expect("checked");
        agent.deactivated = true;
        agent.drain = Some(drain);
        let _ = self.allocator.set_agent_active(agent_id, false);
        self.rescind_agent_offers(agent_id, now);
        self.send_drain_kills(agent_id);
        Ok(())
    }

    /// Kills every live task on a draining agent, each with its own grace period capped by
    /// the drain's.
    pub(super) fn send_drain_kills(&self, agent_id: &str) {
        let Some(agent) = self.agents.get(agent_id) else {
            return;
        };
        let Some(drain) = agent.drain.as_ref() else {
            return;
        };
        if drain.record.state != DrainState::Draining {
            return;
        }
        let cap = drain.max_grace();
        for fw in self.frameworks.values() {
            for task in fw.tasks.values() {
                if task.info.agent_id != agent_id || task.state.is_terminal() {
                    continue;
                }
                let grace = match (task.info.kill_grace, cap) {
                    (Some(own), Some(cap)) => Some(own.min(cap)),
                    (own, None) => own,
                    (None, cap) => cap,
                };
                let _ = agent.commands.send(AgentCommand::Kill {
                    framework_id: fw.id.clone(),
                    task_id: task.info.task_id.clone(),
                    grace,
                });
            }
        }
    }

    /// An update from a draining agent's kill says why, as Mesos's agent rewrites it.
    pub(super) fn mark_drain_update(&self, framework_id: &str, status: &mut TaskStatus) {
        if !matches!(status.state, TaskState::Killing | TaskState::Killed) {
            return;
        }
        let Some(drain) = self
            .agents
            .get(&status.agent_id)
            .and_then(|a| a.drain.as_ref())
        else {
            return;
        };
        status.reason = Some(DRAINING_REASON.to_owned());
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(|fw| fw.partition_aware());
        if status.state == TaskState::Killed && drain.record.mark_gone && partition_aware {
            status.state = TaskState::GoneByOperator;
        }
    }

    /// Tasks still on the agent: live ones and ended ones whose last update is not
    /// acknowledged yet.
    pub(super) fn tasks_left_on(&self, agent_id: &str) -> usize {
        self.frameworks
            .values()
            .flat_map(|fw| fw.tasks.values())
            .filter(|t| t.info.agent_id == agent_id)
            .count()
    }

    /// Moves every draining agent with no task left to DRAINED, or marks it gone when its
    /// drain said so (Mesos's `checkAndTransitionDrainingAgent`).
    pub(in crate::cluster) fn check_drains(&mut self, now: Instant) {
        let draining: Vec<(String, bool)> = self
            .agents
            .values()
            .filter_map(|a| {
                let drain = a.drain.as_ref()?;
                (drain.record.state == DrainState::Draining)
                    .then(|| (a.id.clone(), drain.record.mark_gone))
            })
            .collect();
        for (agent_id, mark_gone) in draining {
            if self.tasks_left_on(&agent_id) > 0 {
                continue;
            }
            if mark_gone {
                tracing::info!(agent = %agent_id, "agent drained; marking it gone as its drain asked");
                if let Err(e) = self.mark_agent_gone(&agent_id, now) {
                    tracing::error!(agent = %agent_id, %e, "drained agent not marked gone");
                }
                continue;
            }
            let agent = self.agents.get(&agent_id).expect("listed");
            let mut drain = agent.drain.clone().expect("listed");
            drain.record.state = DrainState::Drained;
            let record = AgentRecord {
                drain: Some(drain.record.clone()),
                ..agent.record()
            };
            if let Err(e) = self.record(Change::AgentAdmitted {
                id: agent_id.clone(),
                record,
            }) {
                tracing::error!(agent = %agent_id, %e, "agent drained but not recorded so");
                continue;
            }
            tracing::info!(agent = %agent_id, "agent drained");
            self.agents.get_mut(&agent_id).expect("listed").drain = Some(drain);
        }
    }

    /// `MARK_AGENT_GONE`: the agent leaves the cluster for good. Marking a gone agent again
    /// does nothing; an agent never known is `NotFound`.
    pub(in crate::cluster) fn mark_agent_gone(
        &mut self,
        agent_id: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        if self.gone.contains_key(agent_id) {
            return Ok(());
        }
        let gone_at = now_seconds();
        let record = if let Some(recovered) = self.recovered_agents.get(agent_id) {
            recovered.clone()
        } else if let Some(agent) = self.agents.get(agent_id) {
            AgentRecord {
                drain: agent.drain.as_ref().map(|d| d.record.clone()),
                ..agent.record()
            }
        } else {
            return Err(ApiError::NotFound(format!(
                "Agent '{agent_id}' not found: it is not registered with this master"
            )));
        };
        self.record(Change::AgentAdmitted {
            id: agent_id.to_owned(),
            record: AgentRecord {
                gone_at: Some(gone_at),
                ..record
            },
        })?;
        tracing::warn!(agent = %agent_id, "agent marked gone");
        self.gone.insert(agent_id.to_owned(), gone_at);
        if self.recovered_agents.remove(agent_id).is_some() {
            // Its tasks were never reported to this master: nothing to update.
            return Ok(());
        }
        self.rescind_agent_offers(agent_id, now);
        let message = "Agent has been marked gone";
        self.agent_tasks_to(agent_id, message, |fw| {
            if fw.partition_aware() {
                (
                    TaskState::GoneByOperator,
                    "REASON_AGENT_REMOVED_BY_OPERATOR",
                )
            } else {
                (TaskState::Lost, "REASON_AGENT_REMOVED")
            }
        });
        if let Some(agent) = self.forget_agent(agent_id) {
            let _ = agent.commands.send(AgentCommand::Shutdown {
                message: message.to_owned(),
                rejoin: false,
            });
        }
        Ok(())
    }

    /// Whether `agent_id` was marked gone (it may not register again).
    pub(super) fn is_gone(&self, agent_id: &str) -> bool {
        self.gone.contains_key(agent_id)
    }

    /// Whether the agent's drain is under way (it may not be reactivated yet).
    pub(super) fn draining(&self, agent_id: &str) -> bool {
        self.agents
            .get(agent_id)
            .and_then(|a| a.drain.as_ref())
            .is_some_and(|d| d.record.state == DrainState::Draining)
            || self
                .recovered_agents
                .get(agent_id)
                .and_then(|r| r.drain.as_ref())
                .is_some_and(|d| d.state == DrainState::Draining)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testing::*;
    use crate::cluster::registry::{DrainState, Registry};
    use crate::cluster::{AgentCommand, ApiError, Event, RunningTask, TaskState};

    fn kills(agent: &mut Agent) -> Vec<(String, Option<Duration>)> {
        agent
            .drain()
            .into_iter()
            .filter_map(|c| match c {
                AgentCommand::Kill { task_id, grace, .. } => Some((task_id, grace)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_drain_kills_with_capped_grace_says_why_and_ends_drained_once_acknowledged() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        let mut long = task("long", &agent.id, "cpus:0.5;mem:128");
        long.kill_grace = Some(Duration::from_secs(60));
        let mut short = task("short", &agent.id, "cpus:0.5;mem:128");
        short.kill_grace = Some(Duration::from_secs(1));
        launch_on_offer(&mut s, &mut fw, vec![long, short]);
        let now = Instant::now();
        agent.drain();
        // An offer outstanding from the agent is rescinded by the drain.
        let mut other = subscribe(&mut s, framework_info("batch"));
        s.allocate(now);
        assert_eq!(other.offers().len(), 1);
        s.drain_agent(&agent.id, Some(Duration::from_secs(5)), false, now)
            .unwrap();
        assert!(
            other
                .drain()
                .iter()
                .any(|e| matches!(e, Event::Rescind { .. }))
        );
        let mut sent = kills(&mut agent);
        sent.sort();
        assert_eq!(
            sent,
            vec![
                ("long".to_owned(), Some(Duration::from_secs(5))),
                ("short".to_owned(), Some(Duration::from_secs(1))),
            ],
            "each task's grace, capped by the drain's"
        );
        s.allocate(now);
        assert!(
            fw.offers().is_empty() && other.offers().is_empty(),
            "a draining agent offers nothing"
        );
        assert!(matches!(
            s.set_agent_deactivated(&agent.id, false, now),
            Err(ApiError::BadRequest(m)) if m.contains("DRAINING")
        ));

        let mut acks = Vec::new();
        for id in ["long", "short"] {
            let update = agent_update(&agent.id, id, TaskState::Killed);
            acks.push((id, update.uuid.unwrap()));
            s.status_update(&fw.id, update).unwrap();
        }
        let updates = fw.updates();
        assert!(updates.iter().all(|u| u.state == TaskState::Killed
            && u.reason.as_deref() == Some("REASON_AGENT_DRAINING")));
        let view = |s: &super::State| s.snapshot().agents[0].drain.clone().unwrap();
        assert_eq!(
            view(&s).tasks_left,
            2,
            "until their updates are acknowledged"
        );
        s.check_drains(now);
        assert_eq!(view(&s).state, DrainState::Draining);
        for (id, uuid) in acks {
            s.acknowledge(&fw.id, &agent.id, id, uuid).unwrap();
        }
        s.check_drains(now);
        assert_eq!(view(&s).state, DrainState::Drained);
        assert_eq!(view(&s).tasks_left, 0);
        let record = s.store.load().unwrap().agents[&agent.id].clone();
        assert_eq!(record.drain.unwrap().state, DrainState::Drained);
        assert!(record.deactivated);

        // Reactivating a drained agent ends the drain; it is offered again.
        s.set_agent_deactivated(&agent.id, false, now).unwrap();
        assert!(s.snapshot().agents[0].drain.is_none());
        s.allocate(now);
        assert_eq!(fw.offers().len() + other.offers().len(), 1);
        assert!(matches!(
            s.set_agent_deactivated(&agent.id, false, now),
            Err(ApiError::BadRequest(m)) if m.contains("not deactivated")
        ));
    }

    #[test]
    fn a_drain_that_marks_gone_ends_with_the_agent_gone_for_good() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut info = framework_info("web");
        info.capabilities.push("PARTITION_AWARE".into());
        let mut fw = subscribe(&mut s, info);
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:0.5;mem:128")],
        );
        let now = Instant::now();
        s.drain_agent(&agent.id, None, true, now).unwrap();
        assert_eq!(kills(&mut agent), vec![("t1".to_owned(), None)]);
        let update = agent_update(&agent.id, "t1", TaskState::Killed);
        let uuid = update.uuid.unwrap();
        s.status_update(&fw.id, update).unwrap();
        let updates = fw.updates();
        assert_eq!(updates[0].state, TaskState::GoneByOperator);
        s.acknowledge(&fw.id, &agent.id, "t1", uuid).unwrap();
        s.check_drains(now);
        assert!(s.snapshot().agents.is_empty(), "removed once drained");
        assert!(
            agent
                .drain()
                .iter()
                .any(|c| matches!(c, AgentCommand::Shutdown { .. })),
            "the agent is told to shut down"
        );
        assert!(fw.drain().contains(&Event::Failure {
            agent_id: agent.id.clone()
        }));
        let mut again = agent_info("node-1", "cpus:2;mem:1024");
        again.id = Some(agent.id.clone());
        assert!(matches!(
            s.register_agent(again.clone(), Vec::new(), now),
            Err(ApiError::Forbidden(m)) if m.contains("gone")
        ));
        assert!(matches!(
            s.drain_agent(&agent.id, None, false, now),
            Err(ApiError::BadRequest(_))
        ));
        s.mark_agent_gone(&agent.id, now)
            .expect("marking a gone agent again is no error");

        // A new leader refuses it too.
        let mut next = super::super::State::new(
            config(),
            "m2".into(),
            Box::<crate::cluster::registry::MemoryStore>::default(),
            s.store.load().unwrap(),
        )
        .unwrap();
        assert!(matches!(
            next.register_agent(again, Vec::new(), now),
            Err(ApiError::Forbidden(_))
        ));
        let metric = |s: &super::super::State, name: &str| {
            s.metrics().into_iter().find(|(n, _)| n == name).unwrap().1
        };
        assert_eq!(metric(&next, "master/slaves_gone"), 1.0);
    }

    #[test]
    fn marking_an_agent_gone_ends_its_tasks_as_mesos_does() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:0.5;mem:128")],
        );
        fw.drain();
        agent.drain();
        let now = Instant::now();
        assert!(matches!(
            s.mark_agent_gone("no-such-agent", now),
            Err(ApiError::NotFound(_))
        ));
        s.mark_agent_gone(&agent.id, now).unwrap();
        let updates = fw.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, TaskState::Lost, "not PARTITION_AWARE");
        assert_eq!(updates[0].reason.as_deref(), Some("REASON_AGENT_REMOVED"));
        assert!(matches!(
            agent.drain().as_slice(),
            [AgentCommand::Shutdown { .. }]
        ));
        assert!(s.store.load().unwrap().agents[&agent.id].gone_at.is_some());
    }

    #[test]
    fn a_new_leader_goes_on_with_a_drain_when_the_agent_re_registers() {
        let mut s = state();
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        let t1 = task("t1", &agent.id, "cpus:0.5;mem:128");
        launch_on_offer(&mut s, &mut fw, vec![t1.clone()]);
        let now = Instant::now();
        s.drain_agent(&agent.id, Some(Duration::from_secs(3)), false, now)
            .unwrap();
        let registry: Registry = s.store.load().unwrap();

        let mut next = super::super::State::new(
            config(),
            "m2".into(),
            Box::<crate::cluster::registry::MemoryStore>::default(),
            registry,
        )
        .unwrap();
        let mut fw = subscribe(&mut next, {
            let mut info = framework_info("web");
            info.id = Some(fw.id.clone());
            info
        });
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some(agent.id.clone());
        let running = vec![RunningTask {
            framework_id: fw.id.clone(),
            info: t1,
            role: "*".into(),
            state: TaskState::Running,
        }];
        let link = next.register_agent(info, running, now).unwrap();
        let mut agent = Agent {
            id: link.agent_id,
            commands: link.commands,
        };
        assert_eq!(
            kills(&mut agent),
            vec![("t1".to_owned(), Some(Duration::from_secs(3)))],
            "the kill goes again"
        );
        next.allocate(now);
        assert!(fw.offers().is_empty(), "still deactivated");
        let drain = next.snapshot().agents[0].drain.clone().unwrap();
        assert_eq!(drain.state, DrainState::Draining);
        assert_eq!(drain.tasks_left, 1);
    }
}
