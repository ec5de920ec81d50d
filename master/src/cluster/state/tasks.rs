//! Tasks: status updates (deduplicated by uuid, pending until acknowledged, resources freed
//! once at a terminal state), acknowledgements, kills, reconciliation and usage.

use std::time::{Duration, Instant};

use super::{State, TaskEntry, now_seconds};
use crate::cluster::{
    AgentCommand, ApiError, ClusterEvent, Event, StatusSource, TaskInfo, TaskState, TaskStatus,
    TaskUsage,
};

impl State {
    /// An update the master itself generates for a task it never launched.
    pub(super) fn send_master_update(
        &mut self,
        framework_id: &str,
        task: &TaskInfo,
        state: TaskState,
        reason: &str,
        message: &str,
    ) {
        *self.counters.terminal.entry(state.name()).or_default() += 1;
        if let Some(fw) = self.frameworks.get(framework_id) {
            fw.send(Event::Update(TaskStatus {
                task_id: task.task_id.clone(),
                agent_id: task.agent_id.clone(),
                state,
                source: StatusSource::Master,
                reason: Some(reason.to_owned()),
                message: Some(message.to_owned()),
                timestamp: now_seconds(),
                uuid: None,
            }));
        }
    }

    /// Mesos's SHUTDOWN of an executor. A command task's executor id is its task id (as
    /// for Mesos's command executor), so shutting it down kills the task if it runs on
    /// `agent_id`; anything else names no executor of the framework, and is dropped with a
    /// log, as Mesos drops a shutdown for an executor it does not know.
    pub(in crate::cluster) fn shutdown_executor(
        &mut self,
        framework_id: &str,
        executor_id: &str,
        agent_id: &str,
    ) -> Result<(), ApiError> {
        let fw = self.framework(framework_id)?;
        let runs_there = fw
            .tasks
            .get(executor_id)
            .is_some_and(|t| t.info.agent_id == agent_id && !t.state.is_terminal());
        if !runs_there {
            tracing::info!(
                framework = framework_id,
                executor = executor_id,
                agent = agent_id,
                "SHUTDOWN of an executor that is not running on that agent; ignored"
            );
            return Ok(());
        }
        // Mesos's default executor shutdown grace period.
        self.kill(
            framework_id,
            executor_id,
            None,
            Some(Duration::from_secs(5)),
        )
    }

    /// Kills a task; `agent_id` is where the framework says it runs (Mesos `Call.Kill`).
    pub(in crate::cluster) fn kill(
        &mut self,
        framework_id: &str,
        task_id: &str,
        agent_id: Option<&str>,
        grace: Option<Duration>,
    ) -> Result<(), ApiError> {
        let fw = self.framework_mut(framework_id)?;
        match fw.tasks.get(task_id) {
            Some(task) if !task.state.is_terminal() => {
                let grace = grace.or(task.info.kill_grace);
                let agent_id = task.info.agent_id.clone();
                match self.agents.get(&agent_id) {
                    Some(agent) => {
                        let _ = agent.commands.send(AgentCommand::Kill {
                            framework_id: framework_id.to_owned(),
                            task_id: task_id.to_owned(),
                            grace,
                        });
                    }
                    None => {
                        return Err(ApiError::BadRequest(format!(
                            "task {task_id}'s agent {agent_id} is gone"
                        )));
                    }
                }
            }
            Some(_) => {}
            // Unknown: as Mesos does, the kill becomes an explicit reconciliation of the task.
            None => {
                let task = (task_id.to_owned(), agent_id.map(str::to_owned));
                return self.reconcile(framework_id, &[task]);
            }
        }
        Ok(())
    }

    pub(in crate::cluster) fn acknowledge(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        task_id: &str,
        uuid: [u8; 16],
    ) -> Result<(), ApiError> {
        let keep = self.config.completed_tasks_kept;
        let fw = self.framework_mut(framework_id)?;
        let Some(task) = fw.tasks.get_mut(task_id) else {
            if let Some(done) = fw.completed.iter_mut().find(|t| t.info.task_id == task_id) {
                done.pending.retain(|s| s.uuid != Some(uuid));
            }
            return Ok(());
        };
        let before = task.pending.len();
        task.pending.retain(|s| s.uuid != Some(uuid));
        if task.pending.len() == before {
            return Err(ApiError::BadRequest(format!(
                "no unacknowledged update of task {task_id} has that uuid"
            )));
        }
        if task.state.is_terminal() && task.pending.is_empty() {
            let done = fw.tasks.remove(task_id).expect("present");
            fw.completed.push_back(done);
            while fw.completed.len() > keep {
                fw.completed.pop_front();
            }
        }
        if let Some(agent) = self.agents.get(agent_id) {
            let _ = agent.commands.send(AgentCommand::Acknowledge {
                task_id: task_id.to_owned(),
                uuid,
            });
        }
        Ok(())
    }

    /// Whether a task unknown to this master may still be on an agent it knows from its
    /// registry and expects to register again (Mesos's "recovered" agents): `agent_id`'s,
    /// or, when the framework names none, any such agent.
    fn may_come_back(&self, agent_id: Option<&str>) -> bool {
        let expected = |id: &String| !self.agents.contains_key(id);
        match agent_id {
            Some(id) => self
                .recovered_agents
                .get_key_value(id)
                .is_some_and(|(k, _)| expected(k)),
            None => self.recovered_agents.keys().any(expected),
        }
    }

    pub(in crate::cluster) fn reconcile(
        &mut self,
        framework_id: &str,
        tasks: &[(String, Option<String>)],
    ) -> Result<(), ApiError> {
        let fw = self.framework(framework_id)?;
        let answer = |task: &TaskEntry| {
            let mut status = task.latest.clone().unwrap_or_else(|| TaskStatus {
                task_id: task.info.task_id.clone(),
                agent_id: task.info.agent_id.clone(),
                state: task.state,
                source: StatusSource::Master,
                reason: None,
                message: None,
                timestamp: now_seconds(),
                uuid: None,
            });
            status.uuid = None;
            status.source = StatusSource::Master;
            status.reason = Some("REASON_RECONCILIATION".into());
            status
        };
        if tasks.is_empty() {
            for task in fw.tasks.values() {
                fw.send(Event::Update(answer(task)));
            }
            return Ok(());
        }
        for (task_id, agent_id) in tasks {
            let known = fw
                .tasks
                .get(task_id)
                .or_else(|| fw.completed.iter().find(|t| &t.info.task_id == task_id));
            // Mesos's explicit reconciliation: the latest state of a known task; none for an
            // unknown one that may be on an agent expected back (its own report answers when
            // it is; a LOST would have the framework launch a second copy); GONE for one its
            // registered agent does not run; UNKNOWN otherwise (LOST for frameworks that are
            // not partition-aware).
            let status = match known {
                Some(task) => answer(task),
                None if self.may_come_back(agent_id.as_deref()) => continue,
                None => {
                    let on_registered = agent_id
                        .as_deref()
                        .is_some_and(|id| self.agents.contains_key(id));
                    let (state, message) = match (fw.partition_aware(), on_registered) {
                        (false, _) => (TaskState::Lost, "Reconciliation: Task is unknown"),
                        (true, true) => (
                            TaskState::Gone,
                            "Reconciliation: Task is unknown to the agent",
                        ),
                        (true, false) => (TaskState::Unknown, "Reconciliation: Task is unknown"),
                    };
                    TaskStatus {
                        task_id: task_id.clone(),
                        agent_id: agent_id.clone().unwrap_or_default(),
                        state,
                        source: StatusSource::Master,
                        reason: Some("REASON_RECONCILIATION".into()),
                        message: Some(message.into()),
                        timestamp: now_seconds(),
                        uuid: None,
                    }
                }
            };
            fw.send(Event::Update(status));
        }
        Ok(())
    }

    pub(in crate::cluster) fn status_update(
        &mut self,
        framework_id: &str,
        mut status: TaskStatus,
    ) -> Result<(), ApiError> {
        if status.uuid.is_none() {
            return Err(ApiError::BadRequest(
                "agent status updates must carry a uuid".into(),
            ));
        }
        let fw = self.frameworks.get(framework_id).ok_or_else(|| {
            ApiError::NotFound(format!(
                "framework {framework_id} is gone; the agent should kill task {}",
                status.task_id
            ))
        })?;
        let runs_on = fw
            .tasks
            .get(&status.task_id)
            .or_else(|| {
                fw.completed
                    .iter()
                    .find(|t| t.info.task_id == status.task_id)
            })
            .map(|t| t.info.agent_id.as_str());
        match runs_on {
            None => {
                return Err(ApiError::NotFound(format!(
                    "task {} of framework {framework_id} is not known",
                    status.task_id
                )));
            }
            // An agent speaks only for its own tasks.
            Some(agent) if agent != status.agent_id => {
                return Err(ApiError::Forbidden(format!(
                    "agent {} does not run task {} (agent {agent} does); update refused",
                    status.agent_id, status.task_id
                )));
            }
            Some(_) => {}
        }
        self.mark_drain_update(framework_id, &mut status);
        self.apply_status(framework_id, status);
        Ok(())
    }

    /// Records an update (deduplicated by uuid), frees the task's resources when it reaches a
    /// terminal state, and forwards it to the framework until acknowledged.
    pub(super) fn apply_status(&mut self, framework_id: &str, status: TaskStatus) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        let Some(task) = fw.tasks.get_mut(&status.task_id) else {
            // A retry of an update already acknowledged: forward nothing, ack the agent.
            if let (Some(uuid), Some(agent)) = (status.uuid, self.agents.get(&status.agent_id)) {
                let pending = fw
                    .completed
                    .iter()
                    .any(|t| t.pending.iter().any(|p| p.uuid == Some(uuid)));
                if !pending {
                    let _ = agent.commands.send(AgentCommand::Acknowledge {
                        task_id: status.task_id.clone(),
                        uuid,
                    });
                }
            }
            return;
        };
        let duplicate = task.pending.iter().any(|p| p.uuid == status.uuid);
        if !duplicate {
            // A terminal state is final; later non-terminal updates do not reopen it.
            if !task.state.is_terminal() {
                task.state = status.state;
            }
            task.latest = Some(status.clone());
            task.pending.push_back(status.clone());
            if self.events.receiver_count() > 0 {
                let _ = self.events.send(ClusterEvent::TaskUpdated {
                    framework_id: framework_id.to_owned(),
                    status: status.clone(),
                    state: task.state,
                });
            }
        }
        let free = task.state.is_terminal() && !task.recovered;
        if free {
            task.recovered = true;
            *self.counters.terminal.entry(task.state.name()).or_default() += 1;
        }
        let (agent_id, role, resources) = (
            task.info.agent_id.clone(),
            task.role.clone(),
            task.info.resources.clone(),
        );
        fw.send(Event::Update(status));
        if free {
            let _ = self.allocator.recover(
                framework_id,
                &agent_id,
                &role,
                &resources,
                None,
                Instant::now(),
            );
        }
    }

    pub(in crate::cluster) fn task_usage(
        &mut self,
        agent_id: &str,
        task_id: &str,
        usage: TaskUsage,
    ) {
        for fw in self.frameworks.values_mut() {
            if let Some(task) = fw.tasks.get_mut(task_id)
                && task.info.agent_id == agent_id
            {
                task.usage = Some(usage);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testing::*;
    use crate::cluster::{AgentCommand, ApiError, TaskState};

    #[test]
    fn an_update_waits_for_its_acknowledgement_and_a_terminal_one_frees_resources_once() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        let done = agent_update(&agent.id, "t1", TaskState::Finished);
        s.status_update(&fw.id, done.clone()).unwrap();
        // A retry of the same update (same uuid) is forwarded again but applied once.
        s.status_update(&fw.id, done.clone()).unwrap();
        assert_eq!(fw.updates(), vec![done.clone(), done.clone()]);
        assert_eq!(s.counters.terminal.get("TASK_FINISHED"), Some(&1));
        assert_eq!(
            s.agent_available(&agent.id).unwrap(),
            resources("cpus:2;mem:1024"),
            "the accept's remainder and, once, the task's own resources are back"
        );
        let uuid = done.uuid.unwrap();
        assert!(matches!(
            s.acknowledge(&fw.id, &agent.id, "t1", [0; 16]),
            Err(ApiError::BadRequest(_))
        ));
        s.acknowledge(&fw.id, &agent.id, "t1", uuid).unwrap();
        assert_eq!(
            agent.drain(),
            vec![AgentCommand::Acknowledge {
                task_id: "t1".into(),
                uuid
            }]
        );
        // Acknowledged and terminal: the task moved to the completed ones.
        let framework = &s.frameworks[&fw.id];
        assert!(framework.tasks.is_empty());
        assert_eq!(framework.completed.len(), 1);
        // A late retry of the acknowledged update is acknowledged to the agent, not forwarded.
        s.status_update(&fw.id, done).unwrap();
        assert!(fw.updates().is_empty());
        assert!(matches!(
            agent.drain().as_slice(),
            [AgentCommand::Acknowledge { .. }]
        ));
    }

    #[test]
    fn a_terminal_state_is_final() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        s.status_update(&fw.id, agent_update(&agent.id, "t1", TaskState::Failed))
            .unwrap();
        s.status_update(&fw.id, agent_update(&agent.id, "t1", TaskState::Running))
            .unwrap();
        assert_eq!(s.frameworks[&fw.id].tasks["t1"].state, TaskState::Failed);
    }

    #[test]
    fn an_agent_cannot_report_another_agents_task() {
        let mut s = state();
        let mut a = register(&mut s, "node-a", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(&mut s, &mut fw, vec![task("t1", &a.id, "cpus:1;mem:128")]);
        let b = register(&mut s, "node-b", "cpus:2;mem:1024");
        a.drain();
        s.status_update(&fw.id, agent_update(&a.id, "t1", TaskState::Running))
            .unwrap();
        let Err(ApiError::Forbidden(why)) =
            s.status_update(&fw.id, agent_update(&b.id, "t1", TaskState::Finished))
        else {
            panic!("agent b's word on agent a's task was taken");
        };
        assert!(
            why.contains(&format!("agent {} does not run task t1", b.id)),
            "{why}"
        );
        assert_eq!(s.frameworks[&fw.id].tasks["t1"].state, TaskState::Running);
    }

    #[test]
    fn updates_for_unknown_frameworks_or_tasks_and_without_uuid_are_refused() {
        let mut s = state();
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let fw = subscribe(&mut s, framework_info("web"));
        let mut update = agent_update(&agent.id, "nope", TaskState::Running);
        assert!(matches!(
            s.status_update(&fw.id, update.clone()),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            s.status_update("no-framework", update.clone()),
            Err(ApiError::NotFound(_))
        ));
        update.uuid = None;
        assert!(matches!(
            s.status_update(&fw.id, update),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn reconciliation_answers_known_tasks_and_unknown_ones_as_lost() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        s.status_update(&fw.id, agent_update(&agent.id, "t1", TaskState::Running))
            .unwrap();
        fw.drain();
        // Implicit: every task the master knows.
        s.reconcile(&fw.id, &[]).unwrap();
        let implicit = fw.updates();
        assert_eq!(implicit.len(), 1);
        assert_eq!(implicit[0].state, TaskState::Running);
        assert_eq!(implicit[0].reason.as_deref(), Some("REASON_RECONCILIATION"));
        assert_eq!(
            implicit[0].uuid, None,
            "reconciliation answers are not acknowledged"
        );
        // Explicit: the known one as it is, the unknown one lost.
        s.reconcile(&fw.id, &[("t1".into(), None), ("ghost".into(), None)])
            .unwrap();
        let explicit = fw.updates();
        assert_eq!(explicit[0].state, TaskState::Running);
        assert_eq!(explicit[1].task_id, "ghost");
        assert_eq!(explicit[1].state, TaskState::Lost);
    }

    #[test]
    fn a_kill_goes_to_the_agent_and_a_kill_of_an_unknown_task_is_answered() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        let mut t1 = task("t1", &agent.id, "cpus:1;mem:128");
        t1.kill_grace = Some(std::time::Duration::from_secs(7));
        launch_on_offer(&mut s, &mut fw, vec![t1]);
        agent.drain();
        s.kill(&fw.id, "t1", None, None).unwrap();
        assert_eq!(
            agent.drain(),
            vec![AgentCommand::Kill {
                framework_id: fw.id.clone(),
                task_id: "t1".into(),
                grace: Some(std::time::Duration::from_secs(7)),
            }]
        );
        s.kill(&fw.id, "ghost", None, None).unwrap();
        let answer = fw.updates();
        assert_eq!(answer[0].task_id, "ghost");
        assert_eq!(answer[0].state, TaskState::Lost);
        let _ = Instant::now();
    }

    /// After a failover, a task of an agent that has not registered again yet is not known;
    /// a kill or reconciliation naming that agent gets no answer (Mesos's "transitioning"
    /// agent), never a LOST that would have the framework launch a second copy.
    #[test]
    fn an_unknown_task_on_an_agent_expected_back_is_not_declared_lost() {
        let mut registry = crate::cluster::registry::Registry::default();
        registry.agents.insert(
            "S-back".into(),
            crate::cluster::registry::AgentRecord {
                hostname: "node-1".into(),
                resources: "cpus:2;mem:1024".into(),
                ..Default::default()
            },
        );
        let mut s = super::State::new(
            config(),
            "m2".into(),
            Box::<crate::cluster::registry::MemoryStore>::default(),
            registry,
        )
        .unwrap();
        let mut fw = subscribe(&mut s, framework_info("web"));
        s.kill(&fw.id, "t1", Some("S-back"), None).unwrap();
        s.reconcile(&fw.id, &[("t1".into(), Some("S-back".into()))])
            .unwrap();
        assert!(
            fw.updates().is_empty(),
            "no answer while the agent is expected back"
        );
        // Naming no agent while one is expected back: no answer either (Mesos errs on the
        // side of caution the same way). Naming one the master never knew: LOST.
        s.kill(&fw.id, "t1", None, None).unwrap();
        s.kill(&fw.id, "t2", Some("S-never"), None).unwrap();
        let answers = fw.updates();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].task_id, "t2");
        assert_eq!(answers[0].state, TaskState::Lost);
    }
}
