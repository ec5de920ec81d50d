//! Offers: allocation into offers, expiry and rescinds, DECLINE, and ACCEPT with its launch
//! validation (one agent and role per ACCEPT, resources within the offers, all-or-nothing
//! groups).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use orca_auth::Action;

use super::{AgentHealth, FrameworkEntry, OfferEntry, State, TaskEntry, new_uuid, now_seconds};
use crate::cluster::{
    AgentCommand, ApiError, Event, Offer, Operation, StatusSource, TaskInfo, TaskState, TaskStatus,
};
use crate::resources::Resources;

/// Why the offers of an ACCEPT cannot be used (its tasks are dropped with this message).
#[derive(Debug, thiserror::Error)]
enum InvalidOffers {
    #[error("offer {0} belongs to another framework")]
    OtherFramework(String),
    #[error("offer {0} is not outstanding (unknown, already used, declined or rescinded)")]
    NotOutstanding(String),
    #[error("the same offer is listed twice")]
    Duplicate,
    #[error(
        "offers in one ACCEPT must be for one agent and one role; {offer} is for agent \
         {agent} role {role}"
    )]
    Mixed {
        offer: String,
        agent: String,
        role: String,
    },
}

/// Why a task of an ACCEPT is refused (TASK_ERROR with this message).
#[derive(Debug, thiserror::Error)]
enum InvalidTask {
    #[error("task_id is empty")]
    NoId,
    #[error("task is for agent {task_agent} but the offers are for agent {offers_agent}")]
    OtherAgent {
        task_agent: String,
        offers_agent: String,
    },
    #[error("task id {0} is already in use")]
    IdInUse(String),
    #[error("a task needs resources (e.g. cpus and mem)")]
    NoResources,
    #[error("a task needs a command with a non-empty value")]
    NoCommand,
    #[error("task asks for {asked} but the offers hold only {left} after earlier tasks")]
    TooBig { asked: Resources, left: Resources },
    #[error("task is not authorized to launch as user '{0}' (the master's --acls, `run_tasks`)")]
    Unauthorized(String),
}

impl InvalidTask {
    /// The reason its TASK_ERROR carries (Mesos's).
    fn reason(&self) -> &'static str {
        match self {
            InvalidTask::Unauthorized(_) => "REASON_TASK_UNAUTHORIZED",
            _ => "REASON_TASK_INVALID",
        }
    }
}

impl State {
    pub(in crate::cluster) fn allocate(&mut self, now: Instant) {
        let started = Instant::now();
        let allocations = self.allocator.allocate(now);
        let took = started.elapsed();
        let _ = self.allocation_us.record(took.as_micros().max(1) as u64);
        self.allocation_seconds.observe(took.as_secs_f64());
        let mut by_framework: HashMap<String, Vec<Offer>> = HashMap::new();
        for allocation in allocations {
            let id = self.next("O");
            let (hostname, attributes) = self
                .agents
                .get(&*allocation.agent)
                .map(|a| (a.info.hostname.clone(), a.info.attributes.clone()))
                .unwrap_or_default();
            let unavailability = self.unavailability(&hostname);
            let offer = Offer {
                id: id.clone(),
                framework_id: allocation.framework.to_string(),
                agent_id: allocation.agent.to_string(),
                hostname,
                role: allocation.role.clone(),
                resources: allocation.resources,
                attributes,
                unavailability,
            };
            if let Some(fw) = self.frameworks.get_mut(&*allocation.framework) {
                fw.offers.insert(id.clone());
            }
            self.offers.insert(
                id,
                OfferEntry {
                    offer: offer.clone(),
                    expires: self.config.offer_timeout.map(|t| now + t),
                },
            );
            self.counters.offers_made += 1;
            by_framework
                .entry(allocation.framework.to_string())
                .or_default()
                .push(offer);
        }
        for (framework_id, offers) in by_framework {
            if let Some(fw) = self.frameworks.get(&framework_id) {
                fw.send(Event::Offers(offers));
            }
        }
    }

    /// Takes the offer back: its resources return to the allocator (with a filter when the
    /// framework declined) and, when `tell`, the framework gets RESCIND.
    pub(super) fn rescind(&mut self, offer_id: &str, now: Instant, tell: bool) {
        let Some(entry) = self.offers.remove(offer_id) else {
            return;
        };
        let offer = entry.offer;
        if let Some(fw) = self.frameworks.get_mut(&offer.framework_id) {
            fw.offers.remove(offer_id);
            if tell {
                fw.send(Event::Rescind {
                    offer_id: offer_id.to_owned(),
                });
            }
        }
        self.counters.offers_rescinded += 1;
        let _ = self.allocator.recover(
            &offer.framework_id,
            &offer.agent_id,
            &offer.role,
            &offer.resources,
            None,
            now,
        );
    }

    pub(in crate::cluster) fn expire_offers(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.expires.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.rescind(&id, now, true);
        }
    }

    /// Removes the framework's offers named; fails (taking nothing) if any is not a live
    /// offer of this framework.
    fn take_offers(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
    ) -> Result<Vec<Offer>, InvalidOffers> {
        for id in offer_ids {
            match self.offers.get(id) {
                Some(entry) if entry.offer.framework_id == framework_id => {}
                Some(_) => return Err(InvalidOffers::OtherFramework(id.clone())),
                None => return Err(InvalidOffers::NotOutstanding(id.clone())),
            }
        }
        let mut unique = HashSet::new();
        if !offer_ids.iter().all(|id| unique.insert(id)) {
            return Err(InvalidOffers::Duplicate);
        }
        let mut offers = Vec::new();
        for id in offer_ids {
            let entry = self.offers.remove(id).expect("checked above");
            if let Some(fw) = self.frameworks.get_mut(framework_id) {
                fw.offers.remove(id);
            }
            offers.push(entry.offer);
        }
        Ok(offers)
    }

    pub(in crate::cluster) fn decline(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        let refuse = refuse.unwrap_or(self.config.default_refuse);
        for id in offer_ids {
            let Ok(mut offers) = self.take_offers(framework_id, std::slice::from_ref(id)) else {
                // Declining an offer already gone is harmless (Mesos ignores it too).
                continue;
            };
            let offer = offers.remove(0);
            self.counters.offers_declined += 1;
            self.allocator.recover(
                framework_id,
                &offer.agent_id,
                &offer.role,
                &offer.resources,
                Some(refuse),
                now,
            )?;
        }
        Ok(())
    }

    pub(in crate::cluster) fn accept(
        &mut self,
        framework_id: &str,
        offer_ids: &[String],
        operations: Vec<Operation>,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        if offer_ids.is_empty() {
            return Err(ApiError::BadRequest(
                "ACCEPT needs at least one offer id".into(),
            ));
        }
        let refuse = refuse.unwrap_or(self.config.default_refuse);
        let offers = match self.take_offers(framework_id, offer_ids) {
            Ok(offers) => offers,
            Err(why) => {
                self.counters.invalid_calls += 1;
                let why = why.to_string();
                self.drop_launches(framework_id, &operations, &why, "REASON_INVALID_OFFERS");
                return Ok(());
            }
        };
        let agent_id = offers[0].agent_id.clone();
        let role = offers[0].role.clone();
        if let Some(bad) = offers
            .iter()
            .find(|o| o.agent_id != agent_id || o.role != role)
        {
            let why = InvalidOffers::Mixed {
                offer: bad.id.clone(),
                agent: bad.agent_id.clone(),
                role: bad.role.to_string(),
            }
            .to_string();
            for offer in &offers {
                let _ = self.allocator.recover(
                    framework_id,
                    &offer.agent_id,
                    &offer.role,
                    &offer.resources,
                    None,
                    now,
                );
            }
            self.drop_launches(framework_id, &operations, &why, "REASON_INVALID_OFFERS");
            return Ok(());
        }
        self.counters.offers_accepted += offers.len() as u64;
        let mut left = Resources::new();
        for offer in &offers {
            left.add(&offer.resources);
        }
        for operation in operations {
            let (tasks, gang) = match operation {
                Operation::Launch(tasks) => (tasks, false),
                Operation::LaunchGroup(tasks) => (tasks, true),
            };
            let mut accepted = Vec::new();
            let mut taken = Resources::new();
            let mut errors = Vec::new();
            for task in tasks {
                match self.validate_task(framework_id, &agent_id, &task, &left.minus(&taken)) {
                    Ok(()) => {
                        taken.add(&task.resources);
                        accepted.push(task);
                    }
                    Err(why) => errors.push((task, why)),
                }
            }
            if gang && !errors.is_empty() {
                // All or nothing: one invalid task fails the whole group.
                let why = errors
                    .iter()
                    .map(|(t, w)| format!("{}: {w}", t.task_id))
                    .collect::<Vec<_>>()
                    .join("; ");
                for task in accepted.drain(..).chain(errors.drain(..).map(|(t, _)| t)) {
                    self.send_master_update(
                        framework_id,
                        &task,
                        TaskState::Error,
                        "REASON_TASK_GROUP_INVALID",
                        &format!("task group refused: {why}"),
                    );
                }
                continue;
            }
            for (task, why) in errors {
                self.send_master_update(
                    framework_id,
                    &task,
                    TaskState::Error,
                    why.reason(),
                    &why.to_string(),
                );
            }
            if accepted.is_empty() {
                continue;
            }
            left.subtract(&taken);
            self.launch(framework_id, &agent_id, &role, accepted);
        }
        if !left.is_empty() {
            self.allocator
                .recover(framework_id, &agent_id, &role, &left, Some(refuse), now)?;
        }
        Ok(())
    }

    fn validate_task(
        &self,
        framework_id: &str,
        agent_id: &str,
        task: &TaskInfo,
        left: &Resources,
    ) -> Result<(), InvalidTask> {
        if task.task_id.is_empty() {
            return Err(InvalidTask::NoId);
        }
        if task.agent_id != agent_id {
            return Err(InvalidTask::OtherAgent {
                task_agent: task.agent_id.clone(),
                offers_agent: agent_id.to_owned(),
            });
        }
        let fw = self
            .frameworks
            .get(framework_id)
            .expect("checked by caller");
        if fw.tasks.contains_key(&task.task_id) {
            return Err(InvalidTask::IdInUse(task.task_id.clone()));
        }
        if task.resources.is_empty() {
            return Err(InvalidTask::NoResources);
        }
        if task.command.as_ref().is_none_or(|c| c.value.is_empty()) {
            return Err(InvalidTask::NoCommand);
        }
        // Mesos's task user: the command's, else the framework's.
        let user = task
            .command
            .as_ref()
            .and_then(|c| c.user.as_deref())
            .unwrap_or(&fw.info.user);
        if !self.allowed(Action::RunTasks, fw.authenticated.as_deref(), Some(user)) {
            return Err(InvalidTask::Unauthorized(user.to_owned()));
        }
        if !left.contains(&task.resources) {
            return Err(InvalidTask::TooBig {
                asked: task.resources.clone(),
                left: left.clone(),
            });
        }
        Ok(())
    }

    fn launch(
        &mut self,
        framework_id: &str,
        agent_id: &str,
        role: &Arc<str>,
        tasks: Vec<TaskInfo>,
    ) {
        let user = self
            .frameworks
            .get(framework_id)
            .map(|f| f.info.user.clone())
            .unwrap_or_default();
        let fw = self.frameworks.get_mut(framework_id).expect("checked");
        for task in &tasks {
            fw.tasks.insert(
                task.task_id.clone(),
                TaskEntry {
                    info: task.clone(),
                    framework_id: framework_id.to_owned(),
                    role: role.clone(),
                    state: TaskState::Staging,
                    latest: None,
                    pending: VecDeque::new(),
                    recovered: false,
                    usage: None,
                    started: SystemTime::now(),
                },
            );
        }
        for task in &tasks {
            if let Some(entry) = self.frameworks[framework_id].tasks.get(&task.task_id) {
                self.publish_task_added(entry);
            }
        }
        match self.agents.get(agent_id) {
            Some(agent) if agent.health == AgentHealth::Active => {
                let _ = agent.commands.send(AgentCommand::Launch {
                    framework_id: framework_id.to_owned(),
                    framework_user: user,
                    role: role.to_string(),
                    tasks,
                });
            }
            _ => {
                for task in tasks {
                    self.apply_status(
                        framework_id,
                        TaskStatus {
                            task_id: task.task_id,
                            agent_id: agent_id.to_owned(),
                            state: TaskState::Lost,
                            source: StatusSource::Master,
                            reason: Some("REASON_AGENT_REMOVED".into()),
                            message: Some("the agent is not reachable".into()),
                            timestamp: now_seconds(),
                            uuid: Some(new_uuid()),
                        },
                    );
                }
            }
        }
    }

    /// Tasks of an ACCEPT that cannot be launched because its offers are invalid.
    fn drop_launches(
        &mut self,
        framework_id: &str,
        operations: &[Operation],
        why: &str,
        reason: &str,
    ) {
        let partition_aware = self
            .frameworks
            .get(framework_id)
            .is_some_and(FrameworkEntry::partition_aware);
        let state = if partition_aware {
            TaskState::Dropped
        } else {
            TaskState::Lost
        };
        for op in operations {
            let (Operation::Launch(tasks) | Operation::LaunchGroup(tasks)) = op;
            for task in tasks {
                self.send_master_update(framework_id, task, state, reason, why);
            }
        }
        if operations.is_empty()
            && let Some(fw) = self.frameworks.get(framework_id)
        {
            fw.send(Event::Error {
                message: format!("ACCEPT refused: {why}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testing::*;
    use crate::cluster::{AgentCommand, ApiError, Event, Operation, TaskState};

    #[test]
    fn an_agent_is_offered_whole_to_one_framework_and_a_decline_filters_it() {
        let mut s = state();
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("a"));
        s.allocate(Instant::now());
        let offers = fw.offers();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].agent_id, agent.id);
        assert_eq!(offers[0].resources, resources("cpus:2;mem:1024"));
        assert_eq!(s.counters.offers_made, 1);
        // Offered resources are not offered twice.
        s.allocate(Instant::now());
        assert!(fw.offers().is_empty());
        // Declined for 5 s: not offered again within that, offered after.
        let now = Instant::now();
        s.decline(
            &fw.id,
            &[offers[0].id.clone()],
            Some(Duration::from_secs(5)),
            now,
        )
        .unwrap();
        s.allocate(now + Duration::from_secs(1));
        assert!(fw.offers().is_empty());
        s.allocate(now + Duration::from_secs(6));
        assert_eq!(fw.offers().len(), 1);
        // Declining an offer that is gone is harmless.
        s.decline(&fw.id, &["no-such-offer".into()], None, now)
            .unwrap();
    }

    #[test]
    fn an_offer_not_answered_in_time_is_rescinded() {
        let mut s = state();
        register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("slow"));
        let now = Instant::now();
        s.allocate(now);
        let offer = fw.offers().pop().unwrap();
        s.expire_offers(now + Duration::from_secs(29));
        assert!(fw.drain().is_empty());
        s.expire_offers(now + Duration::from_secs(31));
        assert_eq!(fw.drain(), vec![Event::Rescind { offer_id: offer.id }]);
        assert_eq!(s.counters.offers_rescinded, 1);
    }

    #[test]
    fn an_accept_launches_what_fits_and_refuses_the_rest_with_task_error() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![
                task("fits", &agent.id, "cpus:1.5;mem:512"),
                task("too-big", &agent.id, "cpus:1;mem:128"),
            ],
        );
        let commands = agent.drain();
        let [AgentCommand::Launch { tasks, .. }] = commands.as_slice() else {
            panic!("one launch: {commands:?}");
        };
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].task_id, "fits");
        let updates = fw.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].task_id, "too-big");
        assert_eq!(updates[0].state, TaskState::Error);
        assert_eq!(updates[0].reason.as_deref(), Some("REASON_TASK_INVALID"));
        // What the launch left of the offer went back to the agent.
        assert_eq!(
            s.agent_available(&agent.id).unwrap(),
            resources("cpus:0.5;mem:512")
        );
    }

    #[test]
    fn a_group_launches_all_or_nothing() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("gang"));
        s.allocate(Instant::now());
        let offer = fw.offers().pop().unwrap();
        let mut no_command = task("broken", &agent.id, "cpus:0.5;mem:64");
        no_command.command = None;
        s.accept(
            &fw.id,
            &[offer.id],
            vec![Operation::LaunchGroup(vec![
                task("ok", &agent.id, "cpus:0.5;mem:64"),
                no_command,
            ])],
            None,
            Instant::now(),
        )
        .unwrap();
        assert!(agent.drain().is_empty(), "nothing of the group launches");
        let updates = fw.updates();
        assert_eq!(updates.len(), 2);
        assert!(updates.iter().all(|u| u.state == TaskState::Error
            && u.reason.as_deref() == Some("REASON_TASK_GROUP_INVALID")));
    }

    #[test]
    fn an_accept_of_an_unknown_offer_drops_its_tasks_and_counts_an_invalid_call() {
        let mut s = state();
        let agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("late"));
        s.accept(
            &fw.id,
            &["gone".into()],
            vec![Operation::Launch(vec![task(
                "t",
                &agent.id,
                "cpus:1;mem:64",
            )])],
            None,
            Instant::now(),
        )
        .unwrap();
        let updates = fw.updates();
        assert_eq!(updates[0].state, TaskState::Lost, "not PARTITION_AWARE");
        assert_eq!(updates[0].reason.as_deref(), Some("REASON_INVALID_OFFERS"));
        assert_eq!(s.counters.invalid_calls, 1);
        // A PARTITION_AWARE framework hears TASK_DROPPED instead.
        let mut info = framework_info("aware");
        info.capabilities.push("PARTITION_AWARE".into());
        let mut aware = subscribe(&mut s, info);
        s.accept(
            &aware.id,
            &["gone".into()],
            vec![Operation::Launch(vec![task(
                "t",
                &agent.id,
                "cpus:1;mem:64",
            )])],
            None,
            Instant::now(),
        )
        .unwrap();
        assert_eq!(aware.updates()[0].state, TaskState::Dropped);
        assert!(matches!(
            s.accept(&aware.id, &[], Vec::new(), None, Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn offers_of_two_agents_cannot_be_accepted_together() {
        let mut s = state();
        let a = register(&mut s, "node-1", "cpus:1;mem:512");
        let b = register(&mut s, "node-2", "cpus:1;mem:512");
        let mut fw = subscribe(&mut s, framework_info("both"));
        s.allocate(Instant::now());
        let offers: Vec<String> = fw.offers().into_iter().map(|o| o.id).collect();
        assert_eq!(offers.len(), 2);
        s.accept(
            &fw.id,
            &offers,
            vec![Operation::Launch(vec![task("t", &a.id, "cpus:1;mem:64")])],
            None,
            Instant::now(),
        )
        .unwrap();
        let updates = fw.updates();
        assert!(
            updates[0]
                .message
                .as_deref()
                .unwrap()
                .contains("one agent and one role")
        );
        // Both offers' resources are back.
        assert_eq!(
            s.agent_available(&a.id).unwrap(),
            resources("cpus:1;mem:512")
        );
        assert_eq!(
            s.agent_available(&b.id).unwrap(),
            resources("cpus:1;mem:512")
        );
    }
}
