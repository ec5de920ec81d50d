//! Frameworks: subscription and failover, roles and who may use them, UPDATE_FRAMEWORK,
//! disconnection and the failover timeout, teardown, revive and suppress, and frameworks
//! recovered from the registry when agents report their tasks before they re-subscribe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Instant, SystemTime};

use orca_auth::Action;
use tokio::sync::mpsc;

use super::{FrameworkEntry, State};
use crate::allocator::{FrameworkSpec, validate_role};
use crate::cluster::registry::{Change, FrameworkRecord};
use crate::cluster::{
    AgentCommand, ApiError, ClusterEvent, Event, FrameworkInfo, RunningTask, Subscription,
    TaskState,
};

impl State {
    /// A framework's roles as Mesos takes them: `*` when none is given, more than one only
    /// with MULTI_ROLE, each a valid name the principal may use.
    fn check_roles(
        &self,
        info: &mut FrameworkInfo,
        authenticated: Option<&str>,
    ) -> Result<(), ApiError> {
        if info.roles.is_empty() {
            info.roles.push("*".into());
        }
        if info.roles.len() > 1 && !info.has_capability("MULTI_ROLE") {
            return Err(ApiError::BadRequest(
                "more than one role needs the MULTI_ROLE capability".into(),
            ));
        }
        for role in &info.roles {
            validate_role(role)?;
            self.authorize_role(role, info.principal.as_deref())?;
            self.authorize(Action::RegisterFrameworks, authenticated, Some(role))?;
        }
        Ok(())
    }

    /// The principal a subscription acts as: the authenticated one, which a principal written
    /// into FrameworkInfo must equal; and a framework failing over keeps the principal it
    /// has (subscribing with another framework's id is a takeover, refused).
    fn check_principal(
        &self,
        info: &mut FrameworkInfo,
        authenticated: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(principal) = authenticated {
            match info.principal.as_deref() {
                // Mesos answers 400 with this message.
                Some(claimed) if claimed != principal => {
                    return Err(ApiError::BadRequest(format!(
                        "Authenticated principal '{principal}' does not match principal \
                         '{claimed}' set in `FrameworkInfo`"
                    )));
                }
                _ => info.principal = Some(principal.to_owned()),
            }
        }
        let Some(id) = &info.id else {
            return Ok(());
        };
        let owner = self
            .frameworks
            .get(id)
            .and_then(|f| f.info.principal.clone())
            .or_else(|| {
                self.registered_frameworks
                    .get(id)
                    .and_then(|r| r.principal.clone())
            });
        match owner {
            Some(owner) if info.principal.as_deref() != Some(owner.as_str()) => {
                Err(ApiError::Forbidden(format!(
                    "framework {id} belongs to principal '{owner}': only that principal may \
                     subscribe with its id (subscribe without an id to start a new framework)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Mesos UPDATE_FRAMEWORK: new roles (offers in roles left are rescinded, allocations in
    /// them stay charged until recovered), suppressed roles, capabilities, name, labels and
    /// failover timeout. `user` and `principal` may not change, as in Mesos.
    pub(in crate::cluster) fn update_framework(
        &mut self,
        framework_id: &str,
        mut info: FrameworkInfo,
        suppressed_roles: Vec<String>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let current = &self
            .frameworks
            .get(framework_id)
            .ok_or_else(|| ApiError::NotFound(format!("unknown framework {framework_id}")))?
            .info;
        if info.id.as_deref().is_some_and(|id| id != framework_id) {
            return Err(ApiError::BadRequest(
                "framework_info.id must be the id of the framework making the call".into(),
            ));
        }
        if info.user != current.user || info.principal != current.principal {
            return Err(ApiError::BadRequest(
                "`user` and `principal` cannot be changed by UPDATE_FRAMEWORK; subscribe a new \
                 framework instead"
                    .into(),
            ));
        }
        let authenticated = self.framework_principal(framework_id).map(str::to_owned);
        self.check_roles(&mut info, authenticated.as_deref())?;
        if let Some(role) = suppressed_roles.iter().find(|r| !info.roles.contains(r)) {
            return Err(ApiError::BadRequest(format!(
                "suppressed role {role} is not one of the framework's roles"
            )));
        }
        let spec = FrameworkSpec {
            roles: info.roles.clone(),
            suppressed_roles,
            gpu_aware: info.has_capability("GPU_RESOURCES"),
        };
        let record = FrameworkRecord::of(&info);
        self.record(Change::FrameworkAdded {
            id: framework_id.to_owned(),
            record: record.clone(),
        })?;
        self.registered_frameworks
            .insert(framework_id.to_owned(), record);
        self.allocator.update_framework(framework_id, &spec)?;
        let left: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| {
                o.offer.framework_id == framework_id
                    && !info.roles.iter().any(|r| **r == *o.offer.role)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for offer in left {
            self.rescind(&offer, now, true);
        }
        info.id = Some(framework_id.to_owned());
        self.frameworks
            .get_mut(framework_id)
            .expect("checked above")
            .info = info;
        self.publish(ClusterEvent::FrameworkUpdated {
            framework_id: framework_id.to_owned(),
        });
        Ok(())
    }

    /// Subscribes a framework as the principal its caller authenticated as (`None`: the
    /// door did not authenticate it).
    pub(in crate::cluster) fn subscribe(
        &mut self,
        mut info: FrameworkInfo,
        authenticated: Option<&str>,
        now: Instant,
    ) -> Result<Subscription, ApiError> {
        if info.user.is_empty() || info.name.is_empty() {
            return Err(ApiError::BadRequest(
                "framework_info needs a non-empty `user` and `name`".into(),
            ));
        }
        self.check_principal(&mut info, authenticated)?;
        self.check_roles(&mut info, authenticated)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stream_id = uuid::Uuid::new_v4().to_string();
        let spec = FrameworkSpec {
            roles: info.roles.clone(),
            suppressed_roles: Vec::new(),
            gpu_aware: info.has_capability("GPU_RESOURCES"),
        };
        let failover = info
            .id
            .as_ref()
            .is_some_and(|id| self.frameworks.contains_key(id));
        let framework_id = match info.id.clone() {
            Some(id) if self.frameworks.contains_key(&id) => {
                // Failover: the new connection replaces the old one.
                if !self.registered_frameworks.contains_key(&id) {
                    // Known only from an agent moved here: the registry learns it now.
                    let record = FrameworkRecord::of(&info);
                    self.record(Change::FrameworkAdded {
                        id: id.clone(),
                        record: record.clone(),
                    })?;
                    self.registered_frameworks.insert(id.clone(), record);
                }
                self.allocator.update_framework(&id, &spec)?;
                self.allocator.set_framework_active(&id, true)?;
                let heartbeat = self.config.framework_heartbeat;
                let fw = self.frameworks.get_mut(&id).expect("checked");
                fw.info = info;
                fw.authenticated = authenticated.map(str::to_owned);
                fw.stream_id = Some(stream_id.clone());
                fw.events = Some(tx);
                fw.disconnected_at = None;
                fw.recovered = false;
                fw.send(Event::Subscribed {
                    framework_id: id.clone(),
                    heartbeat_interval: heartbeat,
                });
                // Everything not acknowledged yet is delivered again.
                for task in fw.tasks.values() {
                    for status in &task.pending {
                        fw.send(Event::Update(status.clone()));
                    }
                }
                for task in &fw.completed {
                    for status in &task.pending {
                        fw.send(Event::Update(status.clone()));
                    }
                }
                id
            }
            Some(id) if self.completed_frameworks.iter().any(|(c, _)| *c == id) => {
                return Err(ApiError::Forbidden(format!(
                    "framework {id} was torn down; subscribe without an id to start a new one"
                )));
            }
            requested => {
                // A framework id we never saw (e.g. after a master restart without the HA
                // store) is adopted, as Mesos does when frameworks re-register.
                let id = requested.unwrap_or_else(|| self.next("framework-"));
                if !self.registered_frameworks.contains_key(&id) {
                    let record = FrameworkRecord::of(&info);
                    self.record(Change::FrameworkAdded {
                        id: id.clone(),
                        record: record.clone(),
                    })?;
                    self.registered_frameworks.insert(id.clone(), record);
                }
                self.allocator.add_framework(&id, &spec)?;
                info.id = Some(id.clone());
                let entry = FrameworkEntry {
                    id: id.clone(),
                    info,
                    stream_id: Some(stream_id.clone()),
                    events: Some(tx),
                    disconnected_at: None,
                    registered: SystemTime::now(),
                    recovered: false,
                    authenticated: authenticated.map(str::to_owned),
                    offers: HashSet::new(),
                    tasks: HashMap::new(),
                    completed: VecDeque::new(),
                };
                entry.send(Event::Subscribed {
                    framework_id: id.clone(),
                    heartbeat_interval: self.config.framework_heartbeat,
                });
                self.frameworks.insert(id.clone(), entry);
                id
            }
        };
        let _ = now;
        self.publish(if failover {
            ClusterEvent::FrameworkUpdated {
                framework_id: framework_id.clone(),
            }
        } else {
            ClusterEvent::FrameworkAdded {
                framework_id: framework_id.clone(),
            }
        });
        Ok(Subscription {
            framework_id,
            stream_id,
            events: rx,
        })
    }

    fn authorize_role(&self, role: &str, principal: Option<&str>) -> Result<(), ApiError> {
        match self.config.roles.get(role) {
            Some(settings) if !settings.principals.is_empty() => {
                if principal.is_some_and(|p| settings.principals.iter().any(|a| a == p)) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!(
                        "principal {} may not use role {role}",
                        principal.unwrap_or("(none)")
                    )))
                }
            }
            Some(_) => Ok(()),
            None if self.config.open_roles => Ok(()),
            None => Err(ApiError::Forbidden(format!(
                "role {role} is not configured on this master"
            ))),
        }
    }

    pub(in crate::cluster) fn check_stream(
        &self,
        framework_id: &str,
        stream_id: Option<&str>,
    ) -> Result<(), ApiError> {
        let fw = self.frameworks.get(framework_id).ok_or_else(|| {
            ApiError::Forbidden(format!("framework {framework_id} is not subscribed"))
        })?;
        match (stream_id, fw.stream_id.as_deref()) {
            (None, _) => Err(ApiError::Forbidden(
                "calls other than SUBSCRIBE need the Mesos-Stream-Id header from SUBSCRIBE".into(),
            )),
            (Some(given), Some(current)) if given == current => Ok(()),
            (Some(_), _) => Err(ApiError::Forbidden(format!(
                "the Mesos-Stream-Id does not match framework {framework_id}'s current subscription"
            ))),
        }
    }

    pub(in crate::cluster) fn disconnected(
        &mut self,
        framework_id: &str,
        stream_id: &str,
        now: Instant,
    ) {
        let Some(fw) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if fw.stream_id.as_deref() != Some(stream_id) {
            return; // an older connection, already replaced
        }
        fw.events = None;
        fw.stream_id = None;
        fw.disconnected_at = Some(now);
        let offers: Vec<String> = fw.offers.iter().cloned().collect();
        let _ = self.allocator.set_framework_active(framework_id, false);
        for offer_id in offers {
            self.rescind(&offer_id, now, false);
        }
        self.publish(ClusterEvent::FrameworkUpdated {
            framework_id: framework_id.to_owned(),
        });
    }

    /// Frameworks disconnected for longer than their failover timeout are torn down.
    pub(in crate::cluster) fn expire_frameworks(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|fw| {
                fw.disconnected_at
                    .is_some_and(|at| now.duration_since(at) >= fw.info.failover_timeout)
            })
            .map(|fw| fw.id.clone())
            .collect();
        for id in expired {
            tracing::info!(framework = %id, "failover timeout passed; tearing the framework down");
            let _ = self.teardown(&id, now);
        }
    }

    pub(in crate::cluster) fn teardown(
        &mut self,
        framework_id: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        if !self.frameworks.contains_key(framework_id) {
            return Err(ApiError::NotFound(format!(
                "framework {framework_id} is not subscribed"
            )));
        }
        self.record(Change::FrameworkTornDown {
            id: framework_id.to_owned(),
        })?;
        self.registered_frameworks.remove(framework_id);
        let fw = self.frameworks.remove(framework_id).ok_or_else(|| {
            ApiError::NotFound(format!("framework {framework_id} is not subscribed"))
        })?;
        for offer_id in &fw.offers {
            self.offers.remove(offer_id);
        }
        let mut agents = HashSet::new();
        for task in fw.tasks.values() {
            if !task.state.is_terminal() {
                agents.insert(task.info.agent_id.clone());
                *self
                    .counters
                    .terminal
                    .entry(TaskState::Killed.name())
                    .or_default() += 1;
            }
        }
        for agent_id in agents {
            if let Some(agent) = self.agents.get(&agent_id) {
                let _ = agent.commands.send(AgentCommand::ShutdownFramework {
                    framework_id: framework_id.to_owned(),
                });
            }
        }
        // Everything it held (offers and tasks) returns to the agents.
        self.allocator.remove_framework(framework_id)?;
        self.publish(ClusterEvent::FrameworkRemoved {
            framework_id: framework_id.to_owned(),
            info: fw.info.clone(),
        });
        self.completed_frameworks
            .push_back((framework_id.to_owned(), fw.info.clone()));
        if self.completed_frameworks.len() > 100 {
            self.completed_frameworks.pop_front();
        }
        let _ = now;
        // Dropping `fw` closes its event stream.
        Ok(())
    }

    pub(in crate::cluster) fn revive(
        &mut self,
        framework_id: &str,
        roles: Option<&[String]>,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        self.allocator.revive(framework_id, roles)?;
        Ok(())
    }

    pub(in crate::cluster) fn suppress(
        &mut self,
        framework_id: &str,
        roles: Option<&[String]>,
    ) -> Result<(), ApiError> {
        self.framework(framework_id)?;
        self.allocator.suppress(framework_id, roles)?;
        Ok(())
    }

    /// Frameworks whose tasks an agent reports before the framework has (re-)subscribed to
    /// this master are recreated disconnected: their tasks keep running and are charged, and
    /// the framework has its failover timeout, and at least `framework_recovery_timeout`, to
    /// come back before it is torn down. That is a framework the registry knows (after a
    /// master restart), or one this master never saw, on an agent moved here from another
    /// master or ensemble (Mesos recovers those from the frameworks its agents report). Only
    /// a framework torn down here has its tasks shut down.
    pub(super) fn recover_frameworks(&mut self, running: &[RunningTask], now: Instant) {
        for task in running {
            let id = &task.framework_id;
            if self.frameworks.contains_key(id) {
                continue;
            }
            let record = match self.registered_frameworks.get(id) {
                Some(record) => record.clone(),
                None if self.completed_frameworks.iter().any(|(c, _)| c == id) => continue,
                None => {
                    tracing::info!(framework = %id, "an agent runs tasks of a framework this master never saw (moved from another master?); keeping them for it to subscribe");
                    FrameworkRecord {
                        // The agent knows the framework's id, user and roles, not its name.
                        name: id.clone(),
                        user: task
                            .info
                            .command
                            .as_ref()
                            .and_then(|c| c.user.clone())
                            .unwrap_or_default(),
                        ..Default::default()
                    }
                }
            };
            let mut roles = record.roles.clone();
            for t in running.iter().filter(|t| &t.framework_id == id) {
                if !roles.contains(&t.role) {
                    roles.push(t.role.clone());
                }
            }
            let spec = FrameworkSpec {
                roles: roles.clone(),
                suppressed_roles: Vec::new(),
                gpu_aware: false,
            };
            if self.allocator.add_framework(id, &spec).is_err() {
                continue;
            }
            let _ = self.allocator.set_framework_active(id, false);
            let mut capabilities = record.capabilities.clone();
            if spec.roles.len() > 1 && !capabilities.iter().any(|c| c == "MULTI_ROLE") {
                capabilities.push("MULTI_ROLE".into());
            }
            tracing::info!(framework = %id, "recovered from its tasks on an agent; waiting for it to subscribe");
            let info = record.info(id, self.config.framework_recovery_timeout);
            // A framework has at least the recovery timeout to find the new master: its own
            // failover timeout (0 for many) would tear it down before it could notice.
            let failover_timeout = info
                .failover_timeout
                .max(self.config.framework_recovery_timeout);
            self.frameworks.insert(
                id.clone(),
                FrameworkEntry {
                    id: id.clone(),
                    info: FrameworkInfo {
                        roles,
                        capabilities,
                        failover_timeout,
                        ..info
                    },
                    stream_id: None,
                    events: None,
                    disconnected_at: Some(now),
                    registered: SystemTime::now(),
                    recovered: true,
                    authenticated: None,
                    offers: HashSet::new(),
                    tasks: HashMap::new(),
                    completed: VecDeque::new(),
                },
            );
            self.publish(ClusterEvent::FrameworkAdded {
                framework_id: id.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::testing::*;
    use crate::cluster::{
        AgentCommand, ApiError, Event, RoleConfig, TaskState, registry::MemoryStore,
    };

    #[test]
    fn a_framework_needs_a_user_and_a_name_and_multi_role_for_several_roles() {
        let mut s = state();
        let mut info = framework_info("");
        assert!(matches!(
            s.subscribe(info.clone(), None, Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
        info.name = "two-roles".into();
        info.roles = vec!["a".into(), "b".into()];
        let Err(ApiError::BadRequest(why)) = s.subscribe(info.clone(), None, Instant::now()) else {
            panic!("two roles without MULTI_ROLE must be refused");
        };
        assert!(why.contains("MULTI_ROLE"), "{why}");
        info.capabilities.push("MULTI_ROLE".into());
        subscribe(&mut s, info);
        // No roles at all means `*`.
        let mut none = framework_info("no-roles");
        none.roles.clear();
        let fw = subscribe(&mut s, none);
        assert_eq!(s.frameworks[&fw.id].info.roles, vec!["*".to_string()]);
    }

    #[test]
    fn a_role_with_principals_admits_only_them() {
        let mut config = config();
        config.roles.insert(
            "prod".into(),
            RoleConfig {
                principals: vec!["ops".into()],
                ..Default::default()
            },
        );
        config.open_roles = false;
        let mut s = super::State::new(
            config,
            "m".into(),
            Box::<MemoryStore>::default(),
            Default::default(),
        )
        .unwrap();
        let mut info = framework_info("prod-fw");
        info.roles = vec!["prod".into()];
        assert!(matches!(
            s.subscribe(info.clone(), None, Instant::now()),
            Err(ApiError::Forbidden(_))
        ));
        info.principal = Some("ops".into());
        subscribe(&mut s, info);
        // Closed roles: one without an entry is refused.
        let mut other = framework_info("other");
        other.roles = vec!["batch".into()];
        let Err(ApiError::Forbidden(why)) = s.subscribe(other, None, Instant::now()) else {
            panic!("an unconfigured role is refused when roles are closed");
        };
        assert!(why.contains("not configured"), "{why}");
    }

    #[test]
    fn calls_need_the_current_stream_and_a_failover_replaces_it_and_resends_pending_updates() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("web"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        assert!(matches!(
            agent.drain().as_slice(),
            [AgentCommand::Launch { .. }]
        ));
        let running = agent_update(&agent.id, "t1", TaskState::Running);
        s.status_update(&fw.id, running.clone()).unwrap();
        assert_eq!(fw.updates(), vec![running.clone()]);

        assert!(s.check_stream(&fw.id, Some(&fw.stream_id)).is_ok());
        assert!(matches!(
            s.check_stream(&fw.id, None),
            Err(ApiError::Forbidden(_))
        ));
        // The framework fails over: the old stream id stops working, the unacknowledged
        // update is delivered again on the new subscription.
        let mut info = framework_info("web");
        info.id = Some(fw.id.clone());
        let sub = s.subscribe(info, None, Instant::now()).unwrap();
        assert_eq!(sub.framework_id, fw.id);
        assert!(matches!(
            s.check_stream(&fw.id, Some(&fw.stream_id)),
            Err(ApiError::Forbidden(_))
        ));
        let mut events = sub.events;
        let again: Vec<Event> = std::iter::from_fn(|| events.try_recv().ok()).collect();
        assert!(matches!(again[0], Event::Subscribed { .. }));
        assert_eq!(again[1..], [Event::Update(running)]);
    }

    #[test]
    fn a_disconnected_framework_is_torn_down_after_its_failover_timeout() {
        let mut s = state();
        let mut agent = register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("batch"));
        launch_on_offer(
            &mut s,
            &mut fw,
            vec![task("t1", &agent.id, "cpus:1;mem:128")],
        );
        agent.drain();
        let gone = Instant::now();
        s.disconnected(&fw.id, &fw.stream_id, gone);
        // An older stream ending after a failover changes nothing; so does time within the
        // timeout.
        s.disconnected(&fw.id, "an-older-stream", gone);
        s.expire_frameworks(gone + Duration::from_secs(59));
        assert!(s.frameworks.contains_key(&fw.id));
        s.expire_frameworks(gone + Duration::from_secs(60));
        assert!(!s.frameworks.contains_key(&fw.id));
        assert_eq!(
            agent.drain(),
            vec![AgentCommand::ShutdownFramework {
                framework_id: fw.id.clone()
            }]
        );
        // Its resources are back, and its id cannot be used again.
        assert_eq!(
            s.agent_available(&agent.id).unwrap(),
            resources("cpus:2;mem:1024")
        );
        let mut info = framework_info("batch");
        info.id = Some(fw.id.clone());
        let Err(ApiError::Forbidden(why)) = s.subscribe(info, None, Instant::now()) else {
            panic!("a torn-down id may not subscribe again");
        };
        assert!(why.contains("torn down"), "{why}");
        assert!(matches!(
            s.teardown(&fw.id, Instant::now()),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn update_framework_rescinds_offers_in_roles_left_and_keeps_user_and_principal() {
        let mut s = state();
        register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("mover"));
        s.allocate(Instant::now());
        let offer = fw.offers().pop().expect("an offer in *");
        let mut other_user = framework_info("mover");
        other_user.user = "nobody".into();
        assert!(matches!(
            s.update_framework(&fw.id, other_user, Vec::new(), Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
        let mut info = framework_info("mover");
        info.roles = vec!["web".into()];
        assert!(matches!(
            s.update_framework(&fw.id, info.clone(), vec!["db".into()], Instant::now()),
            Err(ApiError::BadRequest(_))
        ));
        s.update_framework(&fw.id, info, Vec::new(), Instant::now())
            .unwrap();
        assert_eq!(fw.drain(), vec![Event::Rescind { offer_id: offer.id }]);
        s.allocate(Instant::now());
        let offers = fw.offers();
        assert_eq!(&*offers[0].role, "web");
        assert_eq!(
            s.registered_frameworks[&fw.id].roles,
            vec!["web".to_string()]
        );
    }

    #[test]
    fn a_suppressed_framework_gets_no_offers_until_it_revives() {
        let mut s = state();
        register(&mut s, "node-1", "cpus:2;mem:1024");
        let mut fw = subscribe(&mut s, framework_info("quiet"));
        s.suppress(&fw.id, None).unwrap();
        s.allocate(Instant::now());
        assert!(fw.offers().is_empty());
        s.revive(&fw.id, None).unwrap();
        s.allocate(Instant::now());
        assert_eq!(fw.offers().len(), 1);
        assert!(matches!(
            s.revive("nobody", None),
            Err(ApiError::NotFound(_))
        ));
    }
}
