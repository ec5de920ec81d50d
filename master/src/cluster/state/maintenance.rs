//! Mesos's maintenance primitives: a schedule of windows in which machines (hosts, matched to
//! agents by hostname) will be unavailable, and machines brought down for maintenance
//! (START_MAINTENANCE) and up again (STOP_MAINTENANCE). Kept in the registry, so a new leader
//! knows them.
//!
//! A scheduled machine is "draining" (its agents still run and offer). A machine brought
//! down has its agents removed: their tasks end TASK_GONE (partition-aware frameworks) or
//! TASK_LOST with `REASON_AGENT_REMOVED`, each agent is told to end its tasks, and no agent of
//! the machine may register until it is up again (the agents keep trying, and come back on
//! their own); bringing it up removes it from the schedule. Frameworks with tasks on a
//! draining machine's agents get inverse offers.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::State;
use crate::cluster::{
    AgentCommand, ApiError, Event, InverseOffer, TaskState, Unavailability,
    registry::{Change, MaintenanceRecord, WindowRecord},
};

/// A machine as the schedule names it: its hostname, in lower case (Mesos compares
/// hostnames without case).
pub(in crate::cluster) fn machine(hostname: &str) -> String {
    hostname.trim().to_ascii_lowercase()
}

fn nanos_now(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

impl State {
    pub(in crate::cluster) fn maintenance(&self) -> &MaintenanceRecord {
        &self.maintenance
    }

    /// Whether the machine of an agent on `hostname` is down for maintenance.
    pub(super) fn machine_down(&self, hostname: &str) -> bool {
        let machine = machine(hostname);
        self.maintenance.down.contains(&machine)
    }

    /// UPDATE_MAINTENANCE_SCHEDULE: the new schedule replaces the old one whole, once it is
    /// checked whole.
    pub(in crate::cluster) fn update_maintenance_schedule(
        &mut self,
        windows: Vec<WindowRecord>,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let bad = |why: String| Err(ApiError::BadRequest(why));
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        let mut windows = windows;
        for (i, window) in windows.iter_mut().enumerate() {
            if window.machines.is_empty() {
                return bad(format!("window {i} names no machine"));
            }
            for m in &mut window.machines {
                *m = machine(m);
                if m.is_empty() {
                    return bad(format!(
                        "window {i}: every machine needs a hostname (Orca matches machines to \
                         agents by hostname; an ip alone is not enough)"
                    ));
                }
                if let Some(first) = seen.insert(m.clone(), i) {
                    return bad(if first == i {
                        format!("window {i} names machine {m} twice")
                    } else {
                        format!(
                            "machine {m} is in windows {first} and {i}: a machine has one \
                             maintenance window at a time"
                        )
                    });
                }
            }
            if let Some(duration) = window.duration_nanos {
                if duration < 0 {
                    return bad(format!("window {i}: the duration is negative"));
                }
                let end = window.start_nanos.saturating_add(duration);
                if end <= nanos_now(now) {
                    return bad(format!(
                        "window {i} (machines {}) ended in the past; schedule it to end in the \
                         future or leave it out",
                        window.machines.join(", ")
                    ));
                }
            }
        }
        if let Some(down) = self
            .maintenance
            .down
            .iter()
            .find(|m| !seen.contains_key(*m))
        {
            return bad(format!(
                "machine {down} is down for maintenance and must stay in the schedule; bring \
                 it up with STOP_MAINTENANCE first"
            ));
        }
        let record = MaintenanceRecord {
            windows,
            down: self.maintenance.down.clone(),
        };
        self.record(Change::MaintenanceUpdated {
            record: record.clone(),
        })?;
        self.maintenance = record;
        Ok(())
    }

    /// START_MAINTENANCE: the machines go down; their agents are removed.
    pub(in crate::cluster) fn start_maintenance(
        &mut self,
        machines: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let machines = self.named_machines(machines)?;
        let scheduled = |m: &String| {
            self.maintenance
                .windows
                .iter()
                .any(|w| w.machines.contains(m))
        };
        for m in &machines {
            if !scheduled(m) {
                return Err(ApiError::BadRequest(format!(
                    "machine {m} is not in the maintenance schedule; schedule it with \
                     UPDATE_MAINTENANCE_SCHEDULE first"
                )));
            }
            if self.maintenance.down.contains(m) {
                return Err(ApiError::BadRequest(format!("machine {m} is already down")));
            }
        }
        let mut record = self.maintenance.clone();
        record.down.extend(machines.iter().cloned());
        self.record(Change::MaintenanceUpdated {
            record: record.clone(),
        })?;
        self.maintenance = record;
        let agents: Vec<String> = self
            .agents
            .values()
            .filter(|a| machines.contains(&machine(&a.info.hostname)))
            .map(|a| a.id.clone())
            .collect();
        for agent_id in agents {
            self.remove_for_maintenance(&agent_id, now)?;
        }
        Ok(())
    }

    /// An agent of a machine going down: its tasks end, it is told to shut down and forgotten.
    fn remove_for_maintenance(&mut self, agent_id: &str, now: Instant) -> Result<(), ApiError> {
        let hostname = self.agents[agent_id].info.hostname.clone();
        tracing::info!(agent = %agent_id, %hostname, "machine down for maintenance: removing its agent");
        self.record(Change::AgentRemoved {
            id: agent_id.to_owned(),
        })?;
        self.rescind_agent_offers(agent_id, now);
        self.agent_tasks_to(
            agent_id,
            &format!("machine {hostname} is down for maintenance"),
            |fw| {
                if fw.partition_aware() {
                    (TaskState::Gone, "REASON_AGENT_REMOVED")
                } else {
                    (TaskState::Lost, "REASON_AGENT_REMOVED")
                }
            },
        );
        if let Some(agent) = self.forget_agent(agent_id) {
            let _ = agent.commands.send(AgentCommand::Shutdown {
                message: format!(
                    "machine {hostname} is down for maintenance (START_MAINTENANCE); the agent \
                     registers again once STOP_MAINTENANCE brings the machine up"
                ),
                rejoin: true,
            });
        }
        Ok(())
    }

    /// STOP_MAINTENANCE: the machines are up again and leave the schedule.
    pub(in crate::cluster) fn stop_maintenance(
        &mut self,
        machines: Vec<String>,
    ) -> Result<(), ApiError> {
        let machines = self.named_machines(machines)?;
        if let Some(m) = machines.iter().find(|m| !self.maintenance.down.contains(m)) {
            return Err(ApiError::BadRequest(format!(
                "machine {m} is not down for maintenance"
            )));
        }
        let mut record = self.maintenance.clone();
        record.down.retain(|m| !machines.contains(m));
        for window in &mut record.windows {
            window.machines.retain(|m| !machines.contains(m));
        }
        record.windows.retain(|w| !w.machines.is_empty());
        self.record(Change::MaintenanceUpdated {
            record: record.clone(),
        })?;
        self.maintenance = record;
        Ok(())
    }

    fn named_machines(&self, machines: Vec<String>) -> Result<Vec<String>, ApiError> {
        if machines.is_empty() {
            return Err(ApiError::BadRequest("name at least one machine".into()));
        }
        let machines: Vec<String> = machines.iter().map(|m| machine(m)).collect();
        if machines.iter().any(String::is_empty) {
            return Err(ApiError::BadRequest(
                "every machine needs a hostname (Orca matches machines to agents by hostname)"
                    .into(),
            ));
        }
        Ok(machines)
    }
}

/// What a framework answered to an inverse offer for a machine (Mesos's
/// `InverseOfferStatus.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InverseOfferAnswer {
    /// Asked, not answered yet.
    Unknown,
    Accept,
    Decline,
}

impl InverseOfferAnswer {
    pub fn name(self) -> &'static str {
        match self {
            InverseOfferAnswer::Unknown => "UNKNOWN",
            InverseOfferAnswer::Accept => "ACCEPT",
            InverseOfferAnswer::Decline => "DECLINE",
        }
    }
}

/// The maintenance state and what each framework answered per draining machine.
#[derive(Clone, Debug)]
pub struct MaintenanceStatus {
    pub record: MaintenanceRecord,
    /// Machine → (framework, answer, when).
    pub answers: BTreeMap<String, Vec<(String, InverseOfferAnswer, SystemTime)>>,
}

/// Inverse offers sent and not answered, and the answers.
#[derive(Debug, Default)]
pub(super) struct InverseOfferBook {
    outstanding: HashMap<String, InverseOffer>,
    /// Machine → framework → answer and when.
    answers: BTreeMap<String, BTreeMap<String, (InverseOfferAnswer, SystemTime)>>,
    /// No new inverse offer to a framework for an agent before this (its answer's filter).
    filters: HashMap<(String, String), Instant>,
}

/// Mesos's default `Filters.refuse_seconds`.
const DEFAULT_REFUSE: Duration = Duration::from_secs(5);

impl State {
    /// The window of the machine of an agent on `hostname`, while it drains (scheduled and
    /// not down).
    pub(super) fn unavailability(&self, hostname: &str) -> Option<Unavailability> {
        // Asked for every offer: nothing to look up without a schedule.
        if self.maintenance.windows.is_empty() {
            return None;
        }
        let machine = machine(hostname);
        if self.maintenance.down.contains(&machine) {
            return None;
        }
        self.maintenance
            .windows
            .iter()
            .find(|w| w.machines.contains(&machine))
            .map(|w| Unavailability {
                start_nanos: w.start_nanos,
                duration_nanos: w.duration_nanos,
            })
    }

    /// Each allocation round: inverse offers no longer true are rescinded, and every
    /// connected framework with tasks on an agent of a draining machine is asked, once per
    /// agent, unless it answered within its filter.
    pub(in crate::cluster) fn inverse_offer_round(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .inverse
            .outstanding
            .values()
            .filter(|o| {
                let current = self
                    .agents
                    .get(&o.agent_id)
                    .and_then(|a| self.unavailability(&a.info.hostname));
                current != Some(o.unavailability) || !self.frameworks.contains_key(&o.framework_id)
            })
            .map(|o| o.id.clone())
            .collect();
        for id in stale {
            let Some(offer) = self.inverse.outstanding.remove(&id) else {
                continue;
            };
            if let Some(fw) = self.frameworks.get(&offer.framework_id) {
                fw.send(Event::RescindInverseOffer {
                    inverse_offer_id: id,
                });
            }
        }
        let draining: HashSet<&String> = self.maintenance.draining().collect();
        self.inverse.answers.retain(|m, _| draining.contains(m));
        self.inverse.filters.retain(|_, until| now < *until);
        if draining.is_empty() {
            return;
        }
        let on_draining: HashMap<&str, (Unavailability, String)> = self
            .agents
            .values()
            .filter_map(|a| {
                self.unavailability(&a.info.hostname)
                    .map(|u| (a.id.as_str(), (u, machine(&a.info.hostname))))
            })
            .collect();
        let asked: HashSet<(&str, &str)> = self
            .inverse
            .outstanding
            .values()
            .map(|o| (o.framework_id.as_str(), o.agent_id.as_str()))
            .collect();
        let mut to_ask: BTreeMap<(String, String), (Unavailability, String)> = BTreeMap::new();
        for fw in self.frameworks.values().filter(|f| f.events.is_some()) {
            for task in fw.tasks.values().filter(|t| !t.state.is_terminal()) {
                let agent = task.info.agent_id.as_str();
                let Some((unavailability, machine)) = on_draining.get(agent) else {
                    continue;
                };
                let key = (fw.id.clone(), agent.to_owned());
                if asked.contains(&(fw.id.as_str(), agent))
                    || self.inverse.filters.contains_key(&key)
                {
                    continue;
                }
                to_ask.insert(key, (*unavailability, machine.clone()));
            }
        }
        let mut by_framework: BTreeMap<String, Vec<InverseOffer>> = BTreeMap::new();
        for ((framework_id, agent_id), (unavailability, machine)) in to_ask {
            let offer = InverseOffer {
                id: self.next("I"),
                framework_id: framework_id.clone(),
                agent_id,
                unavailability,
            };
            self.inverse
                .outstanding
                .insert(offer.id.clone(), offer.clone());
            self.inverse
                .answers
                .entry(machine)
                .or_default()
                .entry(framework_id.clone())
                .or_insert((InverseOfferAnswer::Unknown, SystemTime::now()));
            by_framework.entry(framework_id).or_default().push(offer);
        }
        for (framework_id, offers) in by_framework {
            if let Some(fw) = self.frameworks.get(&framework_id) {
                fw.send(Event::InverseOffers(offers));
            }
        }
    }

    /// ACCEPT_INVERSE_OFFERS / DECLINE_INVERSE_OFFERS: the answer is kept for the machine's
    /// status, and no new inverse offer comes for that agent within `refuse` (Mesos's 5 s
    /// by default). Ids not outstanding for this framework are ignored, as Mesos does.
    pub(in crate::cluster) fn answer_inverse_offers(
        &mut self,
        framework_id: &str,
        ids: &[String],
        answer: InverseOfferAnswer,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        let refuse = refuse.unwrap_or(DEFAULT_REFUSE);
        for id in ids {
            match self.inverse.outstanding.get(id) {
                Some(o) if o.framework_id == framework_id => {}
                Some(_) => {
                    tracing::warn!(framework = %framework_id, inverse_offer = %id, "an answer to another framework's inverse offer; ignored");
                    continue;
                }
                None => {
                    tracing::info!(framework = %framework_id, inverse_offer = %id, "an answer to an inverse offer no longer outstanding; ignored");
                    continue;
                }
            }
            let offer = self.inverse.outstanding.remove(id).expect("checked");
            if let Some(agent) = self.agents.get(&offer.agent_id) {
                self.inverse
                    .answers
                    .entry(machine(&agent.info.hostname))
                    .or_default()
                    .insert(framework_id.to_owned(), (answer, SystemTime::now()));
            }
            self.inverse
                .filters
                .insert((framework_id.to_owned(), offer.agent_id), now + refuse);
        }
        Ok(())
    }

    pub(in crate::cluster) fn maintenance_status(&self) -> MaintenanceStatus {
        MaintenanceStatus {
            record: self.maintenance.clone(),
            answers: self
                .inverse
                .answers
                .iter()
                .map(|(machine, answers)| {
                    let answers = answers
                        .iter()
                        .map(|(fw, (answer, at))| (fw.clone(), *answer, *at))
                        .collect();
                    (machine.clone(), answers)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::super::testing::*;
    use super::InverseOfferAnswer;
    use crate::cluster::{
        AgentCommand, ApiError, Event, TaskState, Unavailability, registry::WindowRecord,
    };

    const HOUR: i64 = 3_600_000_000_000;

    fn now_nanos() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64
    }

    fn window(machines: &[&str], start: i64, duration: Option<i64>) -> WindowRecord {
        WindowRecord {
            machines: machines.iter().map(|m| m.to_string()).collect(),
            start_nanos: start,
            duration_nanos: duration,
        }
    }

    fn refused(result: Result<(), ApiError>, says: &str) {
        match result {
            Err(ApiError::BadRequest(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("expected a refusal saying {says:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_schedule_is_checked_whole_before_it_replaces_the_old_one() {
        let mut s = state();
        let now = SystemTime::now();
        let soon = now_nanos() + HOUR;
        s.update_maintenance_schedule(vec![window(&["Node-1"], soon, Some(HOUR))], now)
            .unwrap();
        assert_eq!(
            s.maintenance().windows[0].machines,
            ["node-1"],
            "hostnames compare without case"
        );
        for (windows, says) in [
            (
                vec![
                    window(&["node-1"], soon, Some(HOUR)),
                    window(&["NODE-1"], soon + 2 * HOUR, None),
                ],
                "is in windows 0 and 1",
            ),
            (vec![window(&["a", "a"], soon, None)], "twice"),
            (
                vec![window(&["a"], now_nanos() - 2 * HOUR, Some(HOUR))],
                "ended in the past",
            ),
            (vec![window(&["a"], soon, Some(-1))], "negative"),
            (vec![window(&[""], soon, None)], "needs a hostname"),
            (vec![window(&[], soon, None)], "names no machine"),
        ] {
            refused(s.update_maintenance_schedule(windows, now), says);
        }
        assert_eq!(s.maintenance().windows.len(), 1, "nothing changed");
        // A window that began in the past and has not ended is fine; so is one without end.
        s.update_maintenance_schedule(
            vec![
                window(&["node-1"], now_nanos() - HOUR, Some(2 * HOUR)),
                window(&["node-2"], now_nanos() - HOUR, None),
            ],
            now,
        )
        .unwrap();
    }

    #[test]
    fn a_machine_brought_down_loses_its_agents_until_it_is_up_again() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        let _other = register(&mut s, "node-2", "cpus:2;mem:1024");
        agent.drain();
        fw.updates();

        refused(
            s.start_maintenance(vec!["node-1".into()], Instant::now()),
            "not in the maintenance schedule",
        );
        let soon = now_nanos() + HOUR;
        s.update_maintenance_schedule(vec![window(&["node-1"], soon, None)], SystemTime::now())
            .unwrap();
        s.start_maintenance(vec!["NODE-1".into()], Instant::now())
            .unwrap();
        let updates = fw.updates();
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].state, TaskState::Lost);
        assert_eq!(updates[0].reason.as_deref(), Some("REASON_AGENT_REMOVED"));
        assert!(matches!(
            agent.drain().as_slice(),
            [AgentCommand::Shutdown { message, rejoin: true }]
                if message.contains("down for maintenance")
        ));
        assert!(!s.agents.contains_key(&agent.id), "its agent is removed");
        refused(
            s.start_maintenance(vec!["node-1".into()], Instant::now()),
            "already down",
        );
        refused(
            s.update_maintenance_schedule(Vec::new(), SystemTime::now()),
            "must stay in the schedule",
        );

        // While down, no agent of the machine registers.
        let mut info = agent_info("node-1", "cpus:2;mem:1024");
        info.id = Some(agent.id.clone());
        let Err(ApiError::Forbidden(why)) =
            s.register_agent(info.clone(), Vec::new(), Instant::now())
        else {
            panic!("a down machine's agent may not register");
        };
        assert!(why.contains("down for maintenance"), "{why}");

        refused(
            s.stop_maintenance(vec!["node-2".into()]),
            "not down for maintenance",
        );
        s.stop_maintenance(vec!["node-1".into()]).unwrap();
        assert!(s.maintenance().windows.is_empty(), "it left the schedule");
        assert!(s.maintenance().down.is_empty());
        let link = s
            .register_agent(info, Vec::new(), Instant::now() + Duration::from_secs(1))
            .unwrap();
        assert_eq!(link.agent_id, agent.id, "up again, it registers");
    }

    #[test]
    fn frameworks_on_a_draining_machine_get_inverse_offers_and_their_answers_are_kept() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        fw.drain();
        let now = Instant::now();
        s.inverse_offer_round(now);
        assert!(fw.drain().is_empty(), "nothing scheduled, nothing asked");

        let start = now_nanos() + HOUR;
        s.update_maintenance_schedule(
            vec![window(&["node-1"], start, Some(HOUR))],
            SystemTime::now(),
        )
        .unwrap();
        s.inverse_offer_round(now);
        let events = fw.drain();
        let [Event::InverseOffers(offers)] = events.as_slice() else {
            panic!("one INVERSE_OFFERS event, got {events:?}")
        };
        let [offer] = offers.as_slice() else {
            panic!("one inverse offer, got {offers:?}")
        };
        assert_eq!(offer.agent_id, agent.id);
        assert_eq!(
            offer.unavailability,
            Unavailability {
                start_nanos: start,
                duration_nanos: Some(HOUR)
            }
        );
        s.inverse_offer_round(now);
        assert!(
            fw.drain().is_empty(),
            "one outstanding inverse offer per agent"
        );
        let status = s.maintenance_status();
        assert_eq!(status.answers["node-1"][0].1, InverseOfferAnswer::Unknown);
        // Regular offers of the draining agent say when it goes away (past the launch's
        // default 5 s filter).
        s.allocate(now + Duration::from_secs(6));
        let offers = fw.offers();
        assert_eq!(
            offers[0].unavailability.map(|u| u.start_nanos),
            Some(start),
            "{offers:?}"
        );

        s.answer_inverse_offers(
            &fw.id,
            std::slice::from_ref(&offer.id),
            InverseOfferAnswer::Accept,
            Some(Duration::from_secs(10)),
            now,
        )
        .unwrap();
        assert_eq!(
            s.maintenance_status().answers["node-1"][0].1,
            InverseOfferAnswer::Accept
        );
        s.inverse_offer_round(now + Duration::from_secs(9));
        assert!(fw.drain().is_empty(), "not asked again within the filter");
        s.inverse_offer_round(now + Duration::from_secs(11));
        let events = fw.drain();
        let [Event::InverseOffers(again)] = events.as_slice() else {
            panic!("asked again after the filter, got {events:?}")
        };

        // The machine leaves the schedule: the outstanding inverse offer is rescinded.
        s.update_maintenance_schedule(Vec::new(), SystemTime::now())
            .unwrap();
        s.inverse_offer_round(now + Duration::from_secs(12));
        assert_eq!(
            fw.drain(),
            vec![Event::RescindInverseOffer {
                inverse_offer_id: again[0].id.clone()
            }]
        );
        assert!(s.maintenance_status().answers.is_empty());
    }
}
