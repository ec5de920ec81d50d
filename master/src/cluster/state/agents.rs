//! Agents: registration and re-registration (tasks re-adopted, unreported ones lost or,
//! still staging, launched again),
//! heartbeats, unreachable and removed agents, and the command channels to them.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc;

use super::{
    AgentEntry, AgentHealth, FrameworkEntry, State, TaskEntry, drain, new_uuid, now_seconds,
};
use crate::cluster::registry::{AgentRecord, Change};
use crate::cluster::{
    AgentCommand, AgentInfo, AgentLink, ApiError, ClusterEvent, Event, RunningTask, StatusSource,
    TaskInfo, TaskState, TaskStatus,
};
use crate::resources::Resources;

impl State {
    /// An agent id admitted under a certificate's name may only register with that name.
    fn check_agent_principal(&self, id: &str, principal: Option<&str>) -> Result<(), ApiError> {
        let bound = match (self.agents.get(id), self.recovered_agents.get(id)) {
            (Some(agent), _) => agent.info.principal.as_deref(),
            (None, Some(recovered)) => recovered.principal.as_deref(),
            (None, None) => None,
        };
        match bound {
            Some(bound) if Some(bound) != principal => Err(ApiError::Forbidden(format!(
                "agent {id} was admitted with the certificate of '{bound}'; this link {}: \
                 an agent registers again with its own certificate",
                match principal {
                    Some(p) => format!("presents '{p}'"),
                    None => "presents none".to_owned(),
                }
            ))),
            _ => Ok(()),
        }
    }

    pub(in crate::cluster) fn register_agent(
        &mut self,
        info: AgentInfo,
        running: Vec<RunningTask>,
        now: Instant,
    ) -> Result<AgentLink, ApiError> {
        if info.hostname.is_empty() {
            return Err(ApiError::BadRequest("agent hostname is empty".into()));
        }
        if info.resources.is_empty() {
            return Err(ApiError::BadRequest(
                "an agent must offer some resources (e.g. cpus:4;mem:8192)".into(),
            ));
        }
        if self.machine_down(&info.hostname) {
            return Err(ApiError::Forbidden(format!(
                "machine {} is down for maintenance; its agents may register once \
                 STOP_MAINTENANCE brings it up",
                info.hostname
            )));
        }
        if let Some(id) = info.id.as_deref().filter(|id| self.is_gone(id)) {
            return Err(ApiError::Forbidden(format!(
                "agent {id} was marked gone by an operator and may not register again; to \
                 join as a new agent, start it with an empty work directory"
            )));
        }
        if let Some(id) = info.id.as_deref() {
            self.check_agent_principal(id, info.principal.as_deref())?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let agent_id = match info.id.clone() {
            Some(id) if self.agents.contains_key(&id) => {
                // Re-registration: a restarted agent or one back from a partition.
                let agent = self.agents.get_mut(&id).expect("checked");
                agent.commands = tx;
                agent.last_seen = now;
                agent.reregistered = Some(SystemTime::now());
                let was_unreachable = matches!(agent.health, AgentHealth::Unreachable { .. });
                agent.health = AgentHealth::Active;
                agent.info.hostname = info.hostname.clone();
                if was_unreachable && !agent.deactivated {
                    let _ = self.allocator.set_agent_active(&id, true);
                }
                self.recover_frameworks(&running, now);
                self.lose_unreported_tasks(&id, &running);
                for task in running {
                    let framework_id = task.framework_id.clone();
                    self.readopt(&id, task, framework_id);
                }
                // A drain goes on: kills the agent missed (or lost in a restart) go again.
                self.send_drain_kills(&id);
                return Ok(AgentLink {
                    agent_id: id,
                    commands: rx,
                    term: 0,
                });
            }
            Some(id) => id,
            None => self.next("S"),
        };
        let recovered = self.recovered_agents.remove(&agent_id);
        let deactivated = recovered.as_ref().is_some_and(|r| r.deactivated);
        let drain = recovered
            .as_ref()
            .and_then(|r| r.drain.clone())
            .map(|record| drain::AgentDrain {
                record,
                started: SystemTime::now(),
            });
        if recovered.is_none() {
            self.record(Change::AgentAdmitted {
                id: agent_id.clone(),
                record: AgentRecord {
                    hostname: info.hostname.clone(),
                    resources: info.resources.to_string(),
                    principal: info.principal.clone(),
                    ..Default::default()
                },
            })?;
        }
        self.recover_frameworks(&running, now);
        let mut used = Vec::new();
        for task in &running {
            // A task that ended (its final update not yet acknowledged) holds nothing.
            if self.frameworks.contains_key(&task.framework_id) && !task.state.is_terminal() {
                used.push((
                    Arc::<str>::from(task.framework_id.as_str()),
                    Arc::<str>::from(task.role.as_str()),
                    task.info.resources.clone(),
                ));
            }
        }
        self.allocator
            .add_agent(&agent_id, info.resources.clone(), &used)?;
        if deactivated {
            let _ = self.allocator.set_agent_active(&agent_id, false);
        }
        self.agents.insert(
            agent_id.clone(),
            AgentEntry {
                id: agent_id.clone(),
                info: AgentInfo {
                    id: Some(agent_id.clone()),
                    ..info
                },
                commands: tx,
                last_seen: now,
                health: AgentHealth::Active,
                registered: SystemTime::now(),
                reregistered: None,
                deactivated,
                drain,
            },
        );
        self.publish(ClusterEvent::AgentAdded {
            agent_id: agent_id.clone(),
        });
        for task in running {
            let framework_id = task.framework_id.clone();
            self.readopt(&agent_id, task, framework_id);
        }
        self.send_drain_kills(&agent_id);
        Ok(AgentLink {
            agent_id,
            commands: rx,
            term: 0,
        })
    }

    /// A task an agent reports running when it (re-)registers.
    fn readopt(&mut self, agent_id: &str, task: RunningTask, framework_id: String) {
        let Some(fw) = self.frameworks.get_mut(&framework_id) else {
            if let Some(agent) = self.agents.get(agent_id) {
                let _ = agent
                    .commands
                    .send(AgentCommand::ShutdownFramework { framework_id });
            }
            return;
        };
        let task_id = task.info.task_id.clone();
        let added = !fw.tasks.contains_key(&task_id);
        let entry = fw
            .tasks
            .entry(task.info.task_id.clone())
            .or_insert_with(|| TaskEntry {
                info: task.info.clone(),
                framework_id: framework_id.clone(),
                role: Arc::from(task.role.as_str()),
                state: task.state,
                latest: None,
                pending: VecDeque::new(),
                // An ended task's resources were never charged on this master.
                recovered: task.state.is_terminal(),
                usage: None,
                started: SystemTime::now(),
            });
        if entry.state == TaskState::Unreachable {
            entry.state = task.state;
        }
        if added {
            self.publish_task_added(&self.frameworks[&framework_id].tasks[&task_id]);
        }
    }

    pub(in crate::cluster) fn agent_commands(
        &self,
        agent_id: &str,
    ) -> Option<mpsc::UnboundedSender<AgentCommand>> {
        self.agents.get(agent_id).map(|a| a.commands.clone())
    }

    /// The command channel of the reachable agent on `hostname`.
    pub(in crate::cluster) fn agent_on_host(
        &self,
        hostname: &str,
    ) -> Result<(String, mpsc::UnboundedSender<AgentCommand>), ApiError> {
        let agent = self
            .agents
            .values()
            .find(|a| a.info.hostname == hostname)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no agent on host {hostname:?} is attached to the master (an agent run \
                     with --no-tasks does not attach)"
                ))
            })?;
        if !matches!(agent.health, AgentHealth::Active) {
            return Err(ApiError::Unavailable(format!(
                "the agent on {hostname} is unreachable; try again when it is back"
            )));
        }
        Ok((agent.id.clone(), agent.commands.clone()))
    }

    /// Tells a connected agent to leave for another master (or ensemble); it re-registers
    /// there with its id and tasks. Here its link then closes, as any agent's that left.
    pub(in crate::cluster) fn switch_agent_master(
        &self,
        agent_id: &str,
        master: &str,
    ) -> Result<(), ApiError> {
        orca_leader::MasterLocator::check(master)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        if self.is_gone(agent_id) {
            return Err(ApiError::BadRequest(format!(
                "agent {agent_id} was marked gone; it runs nothing to move"
            )));
        }
        let agent = self.agents.get(agent_id).ok_or_else(|| {
            ApiError::NotFound(format!("agent {agent_id} is not known to this master"))
        })?;
        let unreachable = || {
            ApiError::Unavailable(format!(
                "agent {agent_id} is not connected to this master, so it cannot be told;                  switch it on its host (`orca-agent switch-master {master}`) or try again                  when it is back"
            ))
        };
        if !matches!(agent.health, AgentHealth::Active) {
            return Err(unreachable());
        }
        agent
            .commands
            .send(AgentCommand::SwitchMaster {
                master: master.trim().to_owned(),
            })
            .map_err(|_| unreachable())?;
        tracing::info!(agent = %agent_id, to = %master, "an operator moves the agent to another master");
        Ok(())
    }

    pub(in crate::cluster) fn agent_heartbeat(
        &mut self,
        agent_id: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let agent = self.agents.get_mut(agent_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "agent {agent_id} is not registered; register again"
            ))
        })?;
        agent.last_seen = now;
        Ok(())
    }

    /// Silent agents become unreachable (their tasks TASK_UNREACHABLE); agents unreachable for
    /// `agent_removal_timeout` are removed (their tasks TASK_LOST).
    pub(in crate::cluster) fn check_agents(&mut self, now: Instant) {
        let ping = self.config.agent_ping_timeout;
        let removal = self.config.agent_removal_timeout;
        let mut newly_unreachable = Vec::new();
        let mut removed = Vec::new();
        for agent in self.agents.values_mut() {
            match agent.health {
                AgentHealth::Active if now.duration_since(agent.last_seen) >= ping => {
                    agent.health = AgentHealth::Unreachable { since: now };
                    newly_unreachable.push(agent.id.clone());
                }
                AgentHealth::Unreachable { since } if now.duration_since(since) >= removal => {
                    removed.push(agent.id.clone());
                }
                _ => {}
            }
        }
        for agent_id in newly_unreachable {
            tracing::warn!(agent = %agent_id, "agent missed its heartbeats; marking it unreachable");
            let _ = self.allocator.set_agent_active(&agent_id, false);
            self.rescind_agent_offers(&agent_id, now);
            let message = format!("agent {agent_id} is not reachable");
            self.agent_tasks_to(&agent_id, &message, |_| {
                (TaskState::Unreachable, "REASON_AGENT_UNREACHABLE")
            });
        }
        for agent_id in removed {
            tracing::warn!(agent = %agent_id, "agent unreachable too long; removing it");
            let message = format!("agent {agent_id} is not reachable");
            self.agent_tasks_to(&agent_id, &message, |_| {
                (TaskState::Lost, "REASON_AGENT_REMOVED")
            });
            self.forget_agent(&agent_id);
            if let Err(e) = self.record(Change::AgentRemoved {
                id: agent_id.clone(),
            }) {
                tracing::error!(agent = %agent_id, %e, "agent removed but not from the registry");
            }
        }
    }

    /// `DEACTIVATE_AGENT` (`deactivated`) and `REACTIVATE_AGENT`, as Mesos: a deactivated
    /// agent stays connected and its tasks keep running, but nothing of it is offered (its
    /// outstanding offers are rescinded) until it is reactivated. Kept in the registry, so a
    /// new leader keeps it deactivated. Reactivating ends a finished drain; an agent that is
    /// not deactivated, or still draining, cannot be reactivated.
    pub(in crate::cluster) fn set_agent_deactivated(
        &mut self,
        agent_id: &str,
        deactivated: bool,
        now: Instant,
    ) -> Result<(), ApiError> {
        let record = match (
            self.agents.get(agent_id),
            self.recovered_agents.get(agent_id),
        ) {
            (Some(agent), _) => agent.record(),
            (None, Some(recovered)) => recovered.clone(),
            (None, None) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown agent {agent_id}: it is not registered with this master"
                )));
            }
        };
        if !deactivated && !record.deactivated {
            return Err(ApiError::BadRequest(format!(
                "agent {agent_id} is not deactivated"
            )));
        }
        if !deactivated && self.draining(agent_id) {
            return Err(ApiError::BadRequest(format!(
                "agent {agent_id} is still in the DRAINING state; reactivate it once it is DRAINED"
            )));
        }
        if deactivated && record.deactivated {
            return Ok(());
        }
        let record = AgentRecord {
            deactivated,
            // As Mesos, reactivation ends the agent's drain.
            drain: if deactivated { record.drain } else { None },
            ..record
        };
        self.record(Change::AgentAdmitted {
            id: agent_id.to_owned(),
            record: record.clone(),
        })?;
        let Some(agent) = self.agents.get_mut(agent_id) else {
            self.recovered_agents.insert(agent_id.to_owned(), record);
            return Ok(());
        };
        agent.deactivated = deactivated;
        if !deactivated {
            agent.drain = None;
        }
        let offerable = agent.health == AgentHealth::Active && !deactivated;
        let _ = self.allocator.set_agent_active(agent_id, offerable);
        if deactivated {
            self.rescind_agent_offers(agent_id, now);
        }
        Ok(())
    }

    pub(super) fn rescind_agent_offers(&mut self, agent_id: &str, now: Instant) {
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.offer.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.rescind(&id, now, true);
        }
    }

    /// A re-registering agent that does not report a task the master has on it has lost it
    /// (its process restarted and cleaned up what it could not recover): TASK_LOST, as Mesos
    /// does with `REASON_AGENT_RESTARTED`, and the task's resources return to the agent.
    /// A task still STAGING (no update from the agent yet) is launched again instead: its
    /// launch may have been lost with the agent's old connection, and an agent that has it
    /// after all does not run it twice.
    fn lose_unreported_tasks(&mut self, agent_id: &str, reported: &[RunningTask]) {
        let reported: HashSet<(&str, &str)> = reported
            .iter()
            .map(|r| (r.framework_id.as_str(), r.info.task_id.as_str()))
            .collect();
        let mut lost = Vec::new();
        let mut relaunch: BTreeMap<(String, Arc<str>), Vec<TaskInfo>> = BTreeMap::new();
        for fw in self.frameworks.values() {
            for task in fw.tasks.values() {
                if task.info.agent_id != agent_id
                    || task.state.is_terminal()
                    || reported.contains(&(fw.id.as_str(), task.info.task_id.as_str()))
                {
                    continue;
                }
                if task.state == TaskState::Staging {
                    relaunch
                        .entry((fw.id.clone(), task.role.clone()))
                        .or_default()
                        .push(task.info.clone());
                } else {
                    lost.push((fw.id.clone(), task.info.task_id.clone()));
                }
            }
        }
        if let Some(agent) = self.agents.get(agent_id) {
            for ((framework_id, role), tasks) in relaunch {
                tracing::info!(agent = %agent_id, framework = %framework_id, tasks = tasks.len(), "agent re-registered without tasks still staging; launching them again");
                let _ = agent.commands.send(AgentCommand::Launch {
                    framework_user: self.frameworks[&framework_id].info.user.clone(),
                    framework_id,
                    role: role.to_string(),
                    tasks,
                });
            }
        }
        for (framework_id, task_id) in lost {
            tracing::warn!(agent = %agent_id, task = %task_id, "agent re-registered without the task; it is lost");
            self.apply_status(
                &framework_id,
                TaskStatus {
                    task_id,
                    agent_id: agent_id.to_owned(),
                    state: TaskState::Lost,
                    source: StatusSource::Master,
                    reason: Some("REASON_AGENT_RESTARTED".to_owned()),
                    message: Some(format!(
                        "agent {agent_id} re-registered without this task (the agent restarted)"
                    )),
                    timestamp: now_seconds(),
                    uuid: Some(new_uuid()),
                },
            );
        }
    }

    /// Ends every live task on the agent from the master's side, with the state and reason
    /// `outcome` picks for each task's framework.
    pub(super) fn agent_tasks_to(
        &mut self,
        agent_id: &str,
        message: &str,
        outcome: impl Fn(&FrameworkEntry) -> (TaskState, &'static str),
    ) {
        let mut updates = Vec::new();
        for fw in self.frameworks.values() {
            let (state, reason) = outcome(fw);
            for task in fw.tasks.values() {
                if task.info.agent_id == agent_id && !task.state.is_terminal() {
                    updates.push((fw.id.clone(), task.info.task_id.clone(), state, reason));
                }
            }
        }
        for (framework_id, task_id, state, reason) in updates {
            self.apply_status(
                &framework_id,
                TaskStatus {
                    task_id,
                    agent_id: agent_id.to_owned(),
                    state,
                    source: StatusSource::Master,
                    reason: Some(reason.to_owned()),
                    message: Some(message.to_owned()),
                    timestamp: now_seconds(),
                    uuid: Some(new_uuid()),
                },
            );
        }
    }

    /// Drops a removed agent: frameworks hear FAILURE, its resources leave the allocator.
    /// Returns its entry, if it was registered.
    pub(super) fn forget_agent(&mut self, agent_id: &str) -> Option<AgentEntry> {
        for fw in self.frameworks.values() {
            fw.send(Event::Failure {
                agent_id: agent_id.to_owned(),
            });
        }
        let _ = self.allocator.remove_agent(agent_id);
        let removed = self.agents.remove(agent_id);
        if removed.is_some() {
            self.publish(ClusterEvent::AgentRemoved {
                agent_id: agent_id.to_owned(),
            });
        }
        removed
    }

    pub(in crate::cluster) fn agent_available(&self, agent_id: &str) -> Option<Resources> {
        self.allocator.agent_available(agent_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testing::*;
    use crate::cluster::registry::AgentRecord;
    use crate::cluster::{AgentCommand, ApiError, Event, RunningTask, TaskState};

    #[test]
    fn an_agent_needs_a_hostname_and_resources_and_is_recorded_once() {
        let mut s = state();
        assert!(matches!(
            s.register_agent(agent_info("", "cpus:1"), Vec::new(), Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            s.register_agent(agent_info("node-1", ""), Vec::new(), Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        assert_eq!(s.store.load().unwrap().agents.len(), 1);
        assert_eq!(s.agent_on_host("node-1").unwrap().0, agent.id);
        assert!(matches!(
            s.agent_on_host("node-9"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            s.agent_heartbeat("no-such-agent", Instant::now()),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn an_agent_admitted_with_a_certificate_registers_again_only_with_it() {
        let mut s = state();
        let info = |id: Option<&str>, principal: Option<&str>| crate::cluster::AgentInfo {
            id: id.map(str::to_owned),
            principal: principal.map(str::to_owned),
            ..agent_info("node-1", "cpus:2;mem:1024")
        };
        let link = s
            .register_agent(info(None, Some("agent-a")), Vec::new(), Instant::now())
            .unwrap();
        let id = link.agent_id.as_str();
        let recorded = &s.store.load().unwrap().agents[id];
        assert_eq!(recorded.principal.as_deref(), Some("agent-a"));
        for intruder in [Some("agent-b"), None] {
            let refused = s.register_agent(info(Some(id), intruder), Vec::new(), Instant::now());
            assert!(
                matches!(&refused, Err(ApiError::Forbidden(m)) if m.contains("'agent-a'")),
                "{intruder:?}: {:?}",
                refused.map(|l| l.agent_id)
            );
        }
        s.register_agent(info(Some(id), Some("agent-a")), Vec::new(), Instant::now())
            .expect("its own certificate registers it again");
    }

    #[test]
    fn a_deactivated_agent_is_not_offered_until_reactivated_and_stays_so_on_a_new_leader() {
        let mut s = state();
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        let now = Instant::now();
        s.allocate(now);
        assert_eq!(fw.offers().len(), 1);
        s.set_agent_deactivated(&agent.id, true, now).unwrap();
        assert!(
            fw.drain()
                .iter()
                .any(|e| matches!(e, Event::Rescind { .. })),
            "its outstanding offer is rescinded"
        );
        s.allocate(now);
        assert!(fw.offers().is_empty(), "nothing offered while deactivated");
        let view = s.snapshot();
        assert!(view.agents[0].deactivated && !view.agents[0].active);
        let metric = |s: &super::State, name: &str| {
            s.metrics().into_iter().find(|(n, _)| n == name).unwrap().1
        };
        assert_eq!(metric(&s, "master/slaves_deactivated"), 1.0);
        assert_eq!(metric(&s, "master/slaves_active"), 0.0);
        assert_eq!(metric(&s, "master/slaves_connected"), 1.0);
        // Deactivating twice changes nothing; an unknown agent is a clear error.
        s.set_agent_deactivated(&agent.id, true, now).unwrap();
        assert!(matches!(
            s.set_agent_deactivated("no-such-agent", true, now),
            Err(ApiError::BadRequest(_))
        ));
        s.set_agent_deactivated(&agent.id, false, now).unwrap();
        s.allocate(now);
        assert_eq!(fw.offers().len(), 1, "offered again once reactivated");

        // A new leader recovers the agent deactivated from the registry.
        let mut registry = crate::cluster::registry::Registry::default();
        registry.agents.insert(
            agent.id.clone(),
            AgentRecord {
                hostname: "node-1".into(),
                resources: "cpus:2;mem:1024".into(),
                deactivated: true,
                ..Default::default()
            },
        );
        let mut next = super::State::new(
            config(),
            "m2".into(),
            Box::<crate::cluster::registry::MemoryStore>::default(),
            registry,
        )
        .unwrap();
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some(agent.id.clone());
        let _link = next.register_agent(info, Vec::new(), now).unwrap();
        let mut fw = subscribe(&mut next, framework_info("web"));
        next.allocate(now);
        assert!(fw.offers().is_empty(), "still deactivated after a failover");
        assert!(next.snapshot().agents[0].deactivated);
    }

    #[test]
    fn a_silent_agent_becomes_unreachable_then_is_removed() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        let seen = Instant::now();
        s.agent_heartbeat(&agent.id, seen).unwrap();
        s.check_agents(seen + Duration::from_secs(9));
        assert!(fw.drain().is_empty(), "within the ping timeout");
        s.check_agents(seen + Duration::from_secs(10));
        let updates = fw.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, TaskState::Unreachable);
        assert_eq!(
            updates[0].reason.as_deref(),
            Some("REASON_AGENT_UNREACHABLE")
        );
        assert!(matches!(
            s.agent_on_host("node-1"),
            Err(ApiError::Unavailable(_))
        ));
        // Unreachable for the removal timeout: removed, its tasks lost, frameworks told.
        s.check_agents(seen + Duration::from_secs(71));
        let events = fw.drain();
        assert!(events.iter().any(|e| matches!(e,
            Event::Update(u) if u.state == TaskState::Lost
                && u.reason.as_deref() == Some("REASON_AGENT_REMOVED"))));
        assert!(events.contains(&Event::Failure {
            agent_id: agent.id.clone()
        }));
        assert!(!s.agents.contains_key(&agent.id));
        assert!(s.store.load().unwrap().agents.is_empty());
    }

    #[test]
    fn a_re_registering_agent_keeps_the_tasks_it_reports_and_loses_the_others() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        let kept = task("kept", &agent.id, "cpus:0.5;mem:128");
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![
                kept.clone(),
                task("gone", &agent.id, "cpus:0.5;mem:128"),
                task("staging", &agent.id, "cpus:0.5;mem:128"),
            ],
        );
        // The agent said two of them run; the third is still on its way to it.
        for id in ["kept", "gone"] {
            s.status_update(&fw.id, agent_update(&agent.id, id, TaskState::Running))
                .unwrap();
        }
        fw.drain();
        agent.drain();
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some(agent.id.clone());
        let running = vec![RunningTask {
            framework_id: fw.id.clone(),
            info: kept,
            role: "*".into(),
            state: TaskState::Running,
        }];
        let mut link = s.register_agent(info, running, Instant::now()).unwrap();
        assert_eq!(link.agent_id, agent.id, "the same agent");
        let updates = fw.updates();
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0].task_id, "gone");
        assert_eq!(updates[0].state, TaskState::Lost);
        assert_eq!(updates[0].reason.as_deref(), Some("REASON_AGENT_RESTARTED"));
        assert!(!s.frameworks[&fw.id].tasks["kept"].state.is_terminal());
        // The task still staging is launched again over the new link.
        let Ok(AgentCommand::Launch { tasks, .. }) = link.commands.try_recv() else {
            panic!("the staging task is launched again");
        };
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].task_id, "staging");
        assert_eq!(
            s.frameworks[&fw.id].tasks["staging"].state,
            TaskState::Staging
        );
    }

    #[test]
    fn an_agent_moved_here_keeps_the_tasks_of_a_framework_this_master_never_saw() {
        let mut s = state();
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some("S-from-elsewhere".into());
        let task_of = |framework_id: &str, task_id: &str| RunningTask {
            framework_id: framework_id.into(),
            info: task(task_id, "S-from-elsewhere", "cpus:0.5;mem:128"),
            role: "*".into(),
            state: TaskState::Running,
        };
        let mut link = s
            .register_agent(info, vec![task_of("fw-moved", "t1")], Instant::now())
            .unwrap();
        assert!(
            link.commands.try_recv().is_err(),
            "no task of the moved framework is shut down"
        );
        let recovered = &s.frameworks["fw-moved"];
        assert!(recovered.recovered && recovered.events.is_none());
        assert_eq!(
            s.agent_available("S-from-elsewhere").unwrap(),
            resources("cpus:1.5;mem:896"),
            "its task is charged"
        );
        // The framework subscribes here with its id and owns its task again.
        let mut fw_info = framework_info("moved");
        fw_info.id = Some("fw-moved".into());
        s.subscribe(fw_info, None, Instant::now()).unwrap();
        let framework = &s.frameworks["fw-moved"];
        assert!(!framework.recovered);
        assert_eq!(framework.tasks["t1"].state, TaskState::Running);
        assert!(
            s.registered_frameworks.contains_key("fw-moved"),
            "the registry learns it"
        );
    }

    #[test]
    fn a_re_registering_agent_still_shuts_down_a_torn_down_frameworks_tasks() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let fw = subscribe(&mut s, framework_info("batch"));
        let t1 = task("t1", &agent.id, "cpus:0.5;mem:128");
        s.teardown(&fw.id, Instant::now()).unwrap();
        agent.drain();
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some(agent.id.clone());
        let running = vec![RunningTask {
            framework_id: fw.id.clone(),
            info: t1,
            role: "*".into(),
            state: TaskState::Running,
        }];
        let mut link = s.register_agent(info, running, Instant::now()).unwrap();
        assert_eq!(
            link.commands.try_recv().unwrap(),
            AgentCommand::ShutdownFramework {
                framework_id: fw.id.clone()
            }
        );
        assert!(!s.frameworks.contains_key(&fw.id));
    }

    #[test]
    fn a_recovered_framework_has_at_least_the_recovery_timeout_to_come_back() {
        use crate::cluster::registry::{FrameworkRecord, MemoryStore, Registry};
        let registry = Registry {
            frameworks: [(
                "fw-quick".to_owned(),
                FrameworkRecord {
                    name: "quick".into(),
                    user: "root".into(),
                    roles: vec!["*".into()],
                    failover_timeout_secs: Some(0.0),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        let mut s = super::super::State::new(
            config(),
            "m".into(),
            Box::<MemoryStore>::default(),
            registry,
        )
        .unwrap();
        let running = vec![RunningTask {
            framework_id: "fw-quick".into(),
            info: task("t1", "S1", "cpus:0.5;mem:128"),
            role: "*".into(),
            state: TaskState::Running,
        }];
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some("S1".into());
        let now = Instant::now();
        s.register_agent(info, running, now).unwrap();
        // Its own failover timeout is 0; the new master waits the recovery timeout.
        s.expire_frameworks(now + Duration::from_secs(1));
        assert!(s.frameworks.contains_key("fw-quick"));
        s.expire_frameworks(now + s.config.framework_recovery_timeout);
        assert!(!s.frameworks.contains_key("fw-quick"));
    }
}
