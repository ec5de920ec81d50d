//! Each phase's checks: before it acts (pre), what must hold after (post), and what must
//! hold all along (in-flight, the migration's `health`). A check measures and says what it
//! measured; a gate passes when all of its checks do.
use std::{net::SocketAddr, time::Duration};

use crate::{
    actuator,
    cluster::{ClusterView, Contender},
    ensemble::EnsembleHealth,
    orchestrator::Orchestrator,
    state::CheckResult,
};

/// The checks of one phase and stage, evaluated against the live system.
pub struct Gate<'a> {
    o: &'a Orchestrator,
    phase: u8,
    stage: &'a str,
    out: Vec<CheckResult>,
}

/// Which masters must lead.
#[derive(Clone, Copy, PartialEq)]
enum Leaders {
    Source,
    Target,
    /// A master of A or B (a phase 3 tried again finds the lead already moved).
    Either,
}

impl<'a> Gate<'a> {
    pub fn new(o: &'a Orchestrator, phase: u8, stage: &'a str) -> Self {
        Self {
            o,
            phase,
            stage,
            out: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.out.push(CheckResult {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
    }

    pub async fn run(mut self) -> Vec<CheckResult> {
        match (self.phase, self.stage) {
            (1, "pre") => {
                self.ensemble(false, false).await;
                self.ensemble(true, true).await;
                self.has_leader().await;
            }
            (1, "post") => {
                self.ensemble(true, false).await;
                self.sync_identical().await;
                self.sync_lag();
            }
            (2, "pre") => {
                self.ensemble(true, false).await;
                self.sync_lag();
                self.groups_agree(None).await;
                self.frameworks_connected();
            }
            (2, "post") => {
                self.sync_lag();
                self.groups_agree(Some(false)).await;
                self.leader(Leaders::Source).await;
                self.frameworks_connected();
                self.no_interruptions();
            }
            (3, "pre") => {
                // Phase 3 starts any master of B missing first, and a try after a halt
                // finds masters of A already gone: only a stable leader is required.
                self.sync_lag();
                self.groups_agree(None).await;
                self.leader(Leaders::Either).await;
                self.frameworks_connected();
                self.no_interruptions();
            }
            (3, "post") => {
                self.sync_lag();
                self.groups_agree(Some(true)).await;
                self.leader(Leaders::Target).await;
                self.frameworks_connected();
                self.agents_active();
                self.no_interruptions();
            }
            (4, "pre") | (5, "pre") => {
                self.leader(Leaders::Target).await;
                self.agents_active();
                // The offers made from here on are what the post-checks look for.
                let _ = self.o.sample_offers().await;
            }
            (4, "post") => {
                self.agents_switched();
                self.agents_active();
                self.no_flapping();
                self.offers_flowing().await;
                self.no_interruptions();
            }
            (5, "post") => {
                self.agents_drained();
                self.frameworks_connected();
                self.no_interruptions();
            }
            (6, "pre") => {
                self.agents_switched();
                self.agents_drained();
                self.sync_lag();
                self.ensemble(true, false).await;
            }
            (6, "post") => {
                self.source_retired().await;
                self.ensemble(true, false).await;
                self.leader(Leaders::Target).await;
                self.agents_active();
                self.frameworks_connected();
                self.no_interruptions();
            }
            (_, "in-flight") => {
                self.ensemble(true, false).await;
                if self.o.has_a() {
                    self.sync_lag();
                }
                self.groups_agree(None).await;
                self.frameworks_connected();
                self.no_interruptions();
            }
            _ => self.push(
                "phase",
                false,
                format!("no phase {} stage {}", self.phase, self.stage),
            ),
        }
        self.out
    }

    /// B (`target`) or A has a quorum; with `all`, every server serves.
    async fn ensemble(&mut self, target: bool, all: bool) {
        let cfg = self.o.config();
        let connect = if target {
            &cfg.sync.target_zk
        } else {
            &cfg.sync.source_zk
        };
        let health = EnsembleHealth::probe(connect).await;
        let name = if target { "B" } else { "A" };
        let ok = health.has_quorum() && (!all || health.all_serving());
        self.push(
            &format!("ensemble {name} healthy"),
            ok,
            format!(
                "{} of {} serving, quorum {}: {}",
                health.serving(),
                health.servers.len(),
                if health.has_quorum() { "yes" } else { "NO" },
                health.describe()
            ),
        );
    }

    async fn has_leader(&mut self) {
        match self.o.contenders(false).await {
            Ok(group) if !group.is_empty() => {
                let list = names(&group);
                self.push("a master leads on A", true, format!("group on A: {list}"));
            }
            Ok(_) => self.push(
                "a master leads on A",
                false,
                format!("no contender under {} on A", self.o.config().cluster.path),
            ),
            Err(e) => self.push("a master leads on A", false, e),
        }
    }

    /// B holds every znode of A: the sync's own comparison of both trees by digest (it runs
    /// right after the initial copy and every `validate-interval-s`), if one is recent
    /// (within two intervals), with what was replicated since judged by the lag checks; else
    /// a comparison now.
    async fn sync_identical(&mut self) {
        const NAME: &str = "A and B identical";
        let Some(engine) = self.o.engine_for_checks().await else {
            return self.push(NAME, false, "the sync is not running");
        };
        let max_age_ms = 2 * 1000 * self.o.config().sync.validate_interval_s;
        let now = crate::state::now_ms();
        let recent = engine
            .status()
            .last_validation
            .filter(|v| now.saturating_sub(v.at_unix_ms) <= max_age_ms);
        let (validation, when) = match recent {
            Some(v) => {
                let when = format!(
                    "the sync's comparison {:.1} s ago",
                    (now - v.at_unix_ms) as f64 / 1000.0
                );
                (v, when)
            }
            None => match engine.check().await {
                Ok((v, _)) => (v, "a comparison now".to_owned()),
                Err(e) => return self.push(NAME, false, e.to_string()),
            },
        };
        let keep_target = self.o.config().sync.acl_hidden == orca_sync::HiddenAclPolicy::KeepTarget;
        if validation.acl_hidden > 0 && !keep_target {
            let status = engine.status();
            self.push(
                NAME,
                false,
                format!(
                    "{} znodes cannot be compared: the sync reads their ACL with hidden digests \
                     (no ADMIN), e.g. {}; give its identity ADMIN on them or a super digest",
                    validation.acl_hidden,
                    status
                        .acl_hidden_paths
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        } else if validation.diverged == 0 {
            let hidden = if validation.acl_hidden > 0 {
                format!(
                    "; {} znodes whose ACL the sync reads with hidden digests compared by data \
                     alone, B keeping its own ACL on them (acl-hidden: keep-target)",
                    validation.acl_hidden
                )
            } else {
                String::new()
            };
            self.push(
                NAME,
                true,
                format!(
                    "0 missing znodes: {when} of {} znodes on A with {} on B by digest ({} ms; \
                     {} changes then on their way){hidden}",
                    validation.nodes_a,
                    validation.nodes_b,
                    validation.took_ms,
                    validation.in_flight
                ),
            )
        } else {
            self.push(
                NAME,
                false,
                format!(
                    "{} paths differ ({when}), e.g. {}; the sync repairs them: check again",
                    validation.diverged,
                    validation
                        .diverged_paths
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }
    }

    fn sync_lag(&mut self) {
        let max = self.o.config().gates.max_lag_ms;
        let Some(status) = self.o.sync_status() else {
            return self.push("sync lag", false, "the sync is not running");
        };
        // Recent writes (the sync's lag window), and what waits now: a stalled ensemble
        // replicates nothing, so it shows as a round under way for too long, not as lag.
        let (ab, ba) = (&status.recent_lag_a_to_b_ms, &status.recent_lag_b_to_a_ms);
        let stalled = status.stalled_ms as f64;
        let ok = status.bootstrapped && ab.p99 <= max && ba.p99 <= max && stalled <= max;
        let mut detail = format!(
            "recent p99 A->B {:.1} ms ({} writes), B->A {:.1} ms ({} writes), limit {max} ms; queue {}",
            ab.p99, ab.count, ba.p99, ba.count, status.queue_depth
        );
        if stalled > max {
            detail.push_str(&format!(
                "; changes have waited {:.1} s to be replicated (is an ensemble stalled or unreachable?)",
                stalled / 1000.0
            ));
        }
        if !status.bootstrapped {
            detail.push_str("; the initial copy has not ended");
        }
        self.push("sync lag", ok, detail);
    }

    /// Both ensembles hold the same contenders (names, so sequence order agrees) with the
    /// same leader; with `only`, the group is exactly the target masters (`true`) or holds
    /// them all beside the source masters (`false`).
    async fn groups_agree(&mut self, only: Option<bool>) {
        let cfg = self.o.config();
        let on_b = match self.o.contenders(true).await {
            Ok(g) => g,
            Err(e) => return self.push("one master set on A and B", false, e),
        };
        if self.o.has_a() {
            let on_a = match self.o.contenders(false).await {
                Ok(g) => g,
                Err(e) => return self.push("one master set on A and B", false, e),
            };
            let same = names(&on_a) == names(&on_b);
            self.push(
                "one master set on A and B",
                same,
                format!("A: {}; B: {}", names(&on_a), names(&on_b)),
            );
        }
        let targets: Vec<SocketAddr> = cfg.cluster.target_masters.iter().map(|m| m.http).collect();
        // A master killed outright leaves its contender until its session expires: the
        // group alone would count it. Each must answer too.
        let silent: Vec<SocketAddr> = if only.is_some() {
            let answers =
                futures::future::join_all(targets.iter().map(|t| actuator::answers(*t))).await;
            targets
                .iter()
                .zip(answers)
                .filter(|(_, ok)| !ok)
                .map(|(t, _)| *t)
                .collect()
        } else {
            Vec::new()
        };
        let silent_note = silent
            .iter()
            .map(|t| format!("master {t} of B does not answer"))
            .collect::<Vec<_>>();
        match only {
            Some(true) => {
                let exact = on_b.len() == targets.len()
                    && on_b
                        .iter()
                        .all(|c| c.http.is_some_and(|h| targets.contains(&h)));
                let missing: Vec<String> = targets
                    .iter()
                    .filter(|t| !on_b.iter().any(|c| c.http == Some(**t)))
                    .map(|t| format!("master {t} of B is not in the group (did it stop?)"))
                    .collect();
                let mut detail = format!("group: {}", names(&on_b));
                let problems: Vec<String> = missing.into_iter().chain(silent_note).collect();
                if !problems.is_empty() {
                    detail = format!("{}; {detail}", problems.join("; "));
                }
                self.push(
                    "only masters on B in the group",
                    exact && silent.is_empty(),
                    detail,
                );
            }
            Some(false) => {
                let joined = targets
                    .iter()
                    .all(|t| on_b.iter().any(|c| c.http == Some(*t)));
                let mut detail = format!("group: {}", names(&on_b));
                if !silent_note.is_empty() {
                    detail = format!("{}; {detail}", silent_note.join("; "));
                }
                self.push("masters on B joined", joined && silent.is_empty(), detail);
            }
            None => {}
        }
    }

    /// The leader is one of `who`, and has led for the configured window.
    async fn leader(&mut self, who: Leaders) {
        let cfg = self.o.config();
        let group = match self
            .o
            .contenders(self.o.leader_on_b() || !self.o.has_a())
            .await
        {
            Ok(g) => g,
            Err(e) => return self.push("leader stable", false, e),
        };
        let Some(leader) = group.first() else {
            return self.push("leader stable", false, "no master leads");
        };
        let targets = cfg.cluster.target_masters.iter().map(|m| m.http);
        let sources = self.o.snapshot().source_http();
        let expected: Vec<SocketAddr> = match who {
            Leaders::Target => targets.collect(),
            Leaders::Source => sources,
            Leaders::Either => sources.into_iter().chain(targets).collect(),
        };
        let is_expected = leader.http.is_some_and(|h| expected.contains(&h));
        let window = Duration::from_millis(cfg.gates.leader_stable_ms);
        let stable = self
            .o
            .leader_since()
            .filter(|(name, _)| *name == leader.name)
            .map(|(_, d)| d);
        let ok = is_expected && stable.is_some_and(|d| d >= window);
        self.push(
            "leader stable",
            ok,
            format!(
                "{} leads ({}), for {} (needs {} ms)",
                crate::cluster::describe(leader),
                match who {
                    Leaders::Source => "expected a master on A",
                    Leaders::Target => "expected a master on B",
                    Leaders::Either => "expected a master of the cluster",
                },
                stable.map_or("an unknown time".into(), |d| format!(
                    "{} ms",
                    d.as_millis()
                )),
                window.as_millis()
            ),
        );
    }

    fn view(&self) -> Option<ClusterView> {
        let o = self.o.monitor.lock();
        o.connected.then(|| o.view.clone())
    }

    fn frameworks_connected(&mut self) {
        let Some(view) = self.view() else {
            return self.push(
                "frameworks connected",
                false,
                "no cluster view from the leader",
            );
        };
        let missing = view.disconnected_frameworks();
        self.push(
            "frameworks connected",
            missing.is_empty(),
            if missing.is_empty() {
                format!(
                    "{} frameworks subscribed to the leader",
                    view.frameworks.len()
                )
            } else {
                format!("not connected: {}", missing.join(", "))
            },
        );
    }

    fn agents_active(&mut self) {
        let Some(view) = self.view() else {
            return self.push(
                "agents registered",
                false,
                "no cluster view from the leader",
            );
        };
        let active = view.active_agents();
        self.push(
            "agents registered",
            active == view.agents.len(),
            format!("{active} of {} agents active", view.agents.len()),
        );
    }

    fn agents_switched(&mut self) {
        let Some(view) = self.view() else {
            return self.push("agents on B", false, "no cluster view from the leader");
        };
        let switched = self.o.snapshot().switched_agents;
        let left: Vec<&String> = view
            .agents
            .keys()
            .filter(|id| !switched.contains(id))
            .collect();
        self.push(
            "agents on B",
            left.is_empty(),
            format!(
                "{} of {} agents follow B{}",
                view.agents.len() - left.len(),
                view.agents.len(),
                if left.is_empty() {
                    String::new()
                } else {
                    format!("; not yet: {left:?}")
                }
            ),
        );
    }

    fn no_flapping(&mut self) {
        let o = self.o.monitor.lock();
        let flapping: Vec<String> = o
            .registrations
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| format!("{id} ({n} registrations)"))
            .collect();
        drop(o);
        self.push(
            "no agent flapping",
            flapping.is_empty(),
            if flapping.is_empty() {
                "every agent registered once since its switch".to_owned()
            } else {
                flapping.join(", ")
            },
        );
    }

    async fn offers_flowing(&mut self) {
        // Offers go only to connected frameworks in roles they did not suppress: when none
        // asks for offers, none being made is the allocator doing right.
        if let Some(view) = self.view() {
            let asking = view.frameworks.values().any(|f| {
                f.active && f.connected && f.roles.iter().any(|r| !f.suppressed_roles.contains(r))
            });
            if !asking {
                return self.push(
                    "offers flowing",
                    true,
                    format!(
                        "no framework asks for offers ({} connected, each suppressed in its roles)",
                        view.frameworks.values().filter(|f| f.connected).count()
                    ),
                );
            }
        }
        let made = |m: &std::collections::HashMap<String, f64>| {
            m.get("master/offers_made").copied().unwrap_or(0.0)
        };
        let (first, before) = match self.o.sample_offers().await {
            Ok(sampled) => sampled,
            Err(e) => return self.push("offers flowing", false, e),
        };
        // Offers made since an earlier gate (at most 30 s ago) read the same leader's count.
        if let Some(before) =
            before.filter(|b| made(&first) > b.made && b.at.elapsed() <= Duration::from_secs(30))
        {
            return self.push(
                "offers flowing",
                true,
                format!(
                    "{} offers made in the last {:.1} s",
                    made(&first) - before.made,
                    before.at.elapsed().as_secs_f64()
                ),
            );
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(900);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.o.leader_metrics().await {
                Ok(now) if made(&now) > made(&first) => {
                    return self.push(
                        "offers flowing",
                        true,
                        format!(
                            "{} offers made within the last second",
                            made(&now) - made(&first)
                        ),
                    );
                }
                Ok(now) if tokio::time::Instant::now() >= deadline => {
                    let outstanding = now.get("master/outstanding_offers").copied().unwrap_or(0.0);
                    return self.push(
                        "offers flowing",
                        outstanding > 0.0,
                        format!("no new offer within a second; {outstanding} outstanding"),
                    );
                }
                Err(e) => return self.push("offers flowing", false, e),
                _ => {}
            }
        }
    }

    fn agents_drained(&mut self) {
        let Some(view) = self.view() else {
            return self.push(
                "agents tied to A empty",
                false,
                "no cluster view from the leader",
            );
        };
        let cfg = self.o.config();
        let mut busy = Vec::new();
        let mut count = 0;
        for host in &cfg.cluster.leave_agents {
            for agent in view.agent_by_host(host) {
                count += 1;
                if !ClusterView::drained(agent) {
                    busy.push(format!("{host} ({} tasks)", agent.running_tasks));
                }
            }
        }
        self.push(
            "agents tied to A empty",
            busy.is_empty(),
            if busy.is_empty() {
                format!("{count} agents drained, 0 tasks on them")
            } else {
                format!("still running: {}", busy.join(", "))
            },
        );
    }

    fn no_interruptions(&mut self) {
        let mut seen = self.o.snapshot().interruptions;
        for i in self.o.monitor.lock().interruptions.iter() {
            if !seen.contains(i) {
                seen.push(i.clone());
            }
        }
        let running = self.view().map(|v| v.running_tasks());
        self.push(
            "zero task interruptions",
            seen.is_empty(),
            if seen.is_empty() {
                format!(
                    "none; {} tasks running",
                    running.map_or("?".into(), |r| r.to_string())
                )
            } else {
                format!("{} interrupted: {}", seen.len(), seen.join("; "))
            },
        );
    }

    async fn source_retired(&mut self) {
        let cfg = self.o.config();
        let health = EnsembleHealth::probe(&cfg.sync.source_zk).await;
        self.push(
            "ensemble A retired",
            health.serving() == 0 && self.o.sync_status().is_none(),
            format!(
                "{} of {} servers of A serve; sync {}",
                health.serving(),
                health.servers.len(),
                if self.o.sync_status().is_some() {
                    "running"
                } else {
                    "stopped"
                }
            ),
        );
    }
}

fn names(group: &[Contender]) -> String {
    if group.is_empty() {
        return "(empty)".into();
    }
    group
        .iter()
        .map(crate::cluster::describe)
        .collect::<Vec<_>>()
        .join(", ")
}
