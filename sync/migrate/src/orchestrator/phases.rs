//! The six phases' actions, forward: what each phase does before its gate is evaluated.
use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use orca_proto::operator::v1::{DrainAgentRequest, SwitchAgentMasterRequest};
use zookeeper_client::Client;

use super::{Orchestrator, SEQUENCE_MARGIN};
use crate::{
    actuator::Action,
    cluster::{self, ClusterView, Contender},
    config::MasterAddr,
    ensemble,
    state::{Archive, MigrationState, SourceMaster, now_ms},
};

impl Orchestrator {
    /// Phase 1: the masters on A are recorded, and the sync copies A to B and replicates
    /// both ways.
    pub(super) async fn sync_target(&self) -> Result<(), String> {
        let cfg = self.config();
        let a = self.a_client().ok_or("no session on A")?;
        let on_a = cluster::contenders(&a, &cfg.cluster.path)
            .await
            .map_err(|e| format!("reading the masters on A: {e}"))?;
        if self.snapshot().source_masters.is_empty() {
            let masters: Vec<SourceMaster> = on_a
                .iter()
                .filter_map(|c| {
                    Some(SourceMaster {
                        addr: MasterAddr {
                            http: c.http?,
                            grpc: c.grpc?,
                        },
                        id: c.id.clone(),
                        hostname: None,
                    })
                })
                .collect();
            self.update(|s| {
                s.record(
                    1,
                    format!(
                        "masters on A: {}",
                        on_a.iter()
                            .map(cluster::describe)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                );
                s.source_masters = masters;
            });
        }
        let started = Instant::now();
        let started_ms = crate::state::now_ms();
        self.start_sync()
            .await
            .map_err(|e| format!("starting the sync: {e}"))?;
        let engine = self.engine().await.ok_or("the sync did not start")?;
        let deadline = Instant::now() + cfg.phase_timeout();
        self.wait_sync(&engine, deadline, "end its initial copy", |st| {
            st.bootstrapped.then_some(())
        })
        .await?;
        let st = engine.status();
        self.update(|s| {
            s.record(
                1,
                format!(
                    "initial copy done: {} znodes written to B",
                    st.replicated_a_to_b
                ),
                Some(started.elapsed().as_millis() as u64),
            )
        });
        // The sync validates right after its copy: both trees read and compared by digest.
        // The gate judges that comparison and what was replicated since.
        let validation = self
            .wait_sync(
                &engine,
                deadline,
                "compare A and B after its copy (is validate-interval-s 0?)",
                |st| {
                    st.last_validation
                        .clone()
                        .filter(|v| v.at_unix_ms >= started_ms)
                },
            )
            .await?;
        self.update(|s| {
            s.record(
                1,
                format!(
                    "A and B compared by digest: {} znodes on A, {} on B, {} diverged, {} \
                     changes on their way",
                    validation.nodes_a,
                    validation.nodes_b,
                    validation.diverged,
                    validation.in_flight
                ),
                Some(validation.took_ms),
            )
        });
        // B's contender sequence is raised in phase 2, right before its masters join:
        // nothing creates contenders on B before then (the copy's mirrors keep A's names),
        // and B, just written 100,000 znodes, may still be busy here.
        Ok(())
    }

    /// Waits until the sync's status gives what `found` looks for, failing at `deadline` or
    /// when the sync fails.
    async fn wait_sync<T>(
        &self,
        engine: &orca_sync::SyncEngine,
        deadline: Instant,
        what: &str,
        found: impl Fn(&orca_sync::engine::Status) -> Option<T>,
    ) -> Result<T, String> {
        loop {
            if let Some(t) = found(&engine.status()) {
                return Ok(t);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the sync did not {what} within {:?}",
                    self.config().phase_timeout()
                ));
            }
            if let Some(e) = self.sync_failure().await {
                return Err(e);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts `low`'s next contender sequence [`SEQUENCE_MARGIN`] ahead of `high`'s.
    pub(super) async fn align(&self, high: &Client, low: &Client, phase: u8) -> Result<(), String> {
        let path = self.config().cluster.path;
        let started = Instant::now();
        // Both steps only read or raise a counter: a request lost to a slow or busy
        // ensemble is simply made again.
        let mut attempt = 0;
        let reached = loop {
            attempt += 1;
            match cluster::align_sequence(high, low, &path, SEQUENCE_MARGIN).await {
                Ok(aligned) => break aligned.reached,
                Err(e) if attempt < 5 => {
                    tracing::warn!("raising {path}'s sequence: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(format!("raising {path}'s sequence: {e}")),
            }
        };
        self.update(|s| {
            s.record(
                phase,
                format!("contender sequence under {path} raised to {reached} (the other side's next plus {SEQUENCE_MARGIN})"),
                Some(started.elapsed().as_millis() as u64),
            )
        });
        Ok(())
    }

    /// Phase 2: B's sequence is checked (and raised again if A's moved past it), and each
    /// master of B not yet in the group is started.
    pub(super) async fn join_target_masters(&self) -> Result<(), String> {
        let a = self.a_client().ok_or("no session on A")?;
        self.align(&a, &self.b_client(), 2).await?;
        self.start_missing_targets(2).await
    }

    /// Starts each master of B missing from the group and waits until every one is in the
    /// group on both ensembles (already there: nothing is done).
    async fn start_missing_targets(&self, phase: u8) -> Result<(), String> {
        let cfg = self.config();
        let present = self.contenders(true).await?;
        for master in &cfg.cluster.target_masters {
            if present.iter().any(|c| c.http == Some(master.http)) {
                continue;
            }
            self.actuate(
                phase,
                Action::StartMaster {
                    master: master.clone(),
                    zk: cfg.zk_url(true),
                },
            )
            .await?;
        }
        let deadline = Instant::now() + cfg.phase_timeout();
        // Each joined on B and is mirrored to A.
        loop {
            let on_b = self.contenders(true).await?;
            let on_a = match self.a_client() {
                Some(_) => self.contenders(false).await?,
                None => on_b.clone(),
            };
            let joined = |list: &[Contender]| {
                cfg.cluster
                    .target_masters
                    .iter()
                    .all(|m| list.iter().any(|c| c.http == Some(m.http)))
            };
            if joined(&on_a) && joined(&on_b) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("the masters on B did not appear in both ensembles' groups".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Phase 3 (`back` false): the masters on A leave, followers first and the leader last,
    /// so leadership moves once, to a master on B (every master of B there first). Undoing phase 3 (`back`): the masters on
    /// A start again and the masters on B leave the same way.
    pub(super) async fn retire_masters(&self, back: bool) -> Result<(), String> {
        let cfg = self.config();
        let phase = 3;
        if !back {
            // Leadership only moves to a whole set on B: a master of B that stopped since
            // phase 2 (or during an earlier try of this phase) is started again first.
            self.start_missing_targets(phase).await?;
        }
        let leaving: Vec<SocketAddr> = if back {
            cfg.cluster.target_masters.iter().map(|m| m.http).collect()
        } else {
            self.snapshot().source_http()
        };
        let ordered = {
            let group = self.contenders(!back).await?;
            let leader = group.first().and_then(|c| c.http);
            let mut order: Vec<SocketAddr> = leaving
                .iter()
                .copied()
                .filter(|h| Some(*h) != leader)
                .collect();
            if let Some(l) = leader.filter(|l| leaving.contains(l)) {
                order.push(l);
            }
            order
        };
        for http in ordered {
            self.actuate(phase, Action::StopMaster { http }).await?;
            let deadline = Instant::now() + cfg.phase_timeout();
            loop {
                let gone_a = self.a_client().is_none()
                    || !self
                        .contenders(false)
                        .await?
                        .iter()
                        .any(|c| c.http == Some(http));
                let gone_b = !self
                    .contenders(true)
                    .await?
                    .iter()
                    .any(|c| c.http == Some(http));
                if gone_a && gone_b {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("master {http}'s contender stayed after it stopped"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.leader_on_b.store(!back, Ordering::Relaxed);
        Ok(())
    }

    /// Phase 4 (`to_b`): every agent is told to follow B's ensemble, in batches; each must
    /// register again (with its tasks) before the next batch. Undoing it: back to A.
    pub(super) async fn switch_agents(&self, to_b: bool) -> Result<(), String> {
        let cfg = self.config();
        let phase = 4;
        let target = cfg.zk_url(to_b);
        // Registrations are counted from here: more than one per agent is flapping.
        self.monitor.lock().registrations.clear();
        let done = self.snapshot().switched_agents;
        if !to_b && done.is_empty() {
            return Ok(());
        }
        let grpc = self.leader_grpc().await?;
        if !self.monitor.fresh_from(grpc, Duration::from_secs(10)).await {
            return Err(format!("no cluster view from the leader at {grpc}"));
        }
        let mut agents: Vec<String> = if to_b {
            let mut ids: Vec<String> = self.monitor.view().agents.keys().cloned().collect();
            ids.retain(|id| !done.contains(id));
            ids
        } else {
            done.clone()
        };
        agents.sort();
        let client = cluster::operator(grpc).await?;
        for batch in agents.chunks(cfg.cluster.agent_batch_size) {
            let started = Instant::now();
            // Each must register again: its (re)registration time moves past this.
            let before: std::collections::HashMap<String, i64> = {
                let view = self.monitor.view();
                batch
                    .iter()
                    .map(|id| {
                        (
                            id.clone(),
                            view.agents.get(id).map_or(0, cluster::last_registered),
                        )
                    })
                    .collect()
            };
            // The batch's switches go out together (one HTTP/2 connection to the leader).
            futures::future::try_join_all(batch.iter().map(|id| {
                let (mut client, target) = (client.clone(), target.clone());
                async move {
                    client
                        .switch_agent_master(SwitchAgentMasterRequest {
                            agent_id: id.clone(),
                            master: target.clone(),
                        })
                        .await
                        .map_err(|e| format!("switching agent {id} to {target}: {}", e.message()))
                }
            }))
            .await?;
            let deadline = Instant::now() + cfg.phase_timeout();
            loop {
                let view = self.monitor.view();
                let back: Vec<&String> = batch
                    .iter()
                    .filter(|id| {
                        view.agents.get(*id).is_some_and(|a| {
                            cluster::last_registered(a) > before[*id]
                                && a.state == orca_proto::operator::v1::AgentState::Active as i32
                        })
                    })
                    .collect();
                if back.len() == batch.len() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{} of {} agents did not register again after the switch",
                        batch.len() - back.len(),
                        batch.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.update(|s| {
                if to_b {
                    s.switched_agents.extend(batch.iter().cloned());
                } else {
                    s.switched_agents.retain(|id| !batch.contains(id));
                }
                s.record(
                    phase,
                    format!(
                        "{} agents switched to {} and registered again",
                        batch.len(),
                        if to_b { "B" } else { "A" }
                    ),
                    Some(started.elapsed().as_millis() as u64),
                );
            });
            if cfg.cluster.agent_batch_pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(cfg.cluster.agent_batch_pause_ms)).await;
            }
        }
        Ok(())
    }

    /// Phase 5: the agents tied to A are drained (their tasks killed so their frameworks
    /// place them elsewhere) until empty.
    pub(super) async fn drain_leaving_agents(&self) -> Result<(), String> {
        let cfg = self.config();
        let grpc = self.leader_grpc().await?;
        let mut client = cluster::operator(grpc).await?;
        let view = self.monitor.view();
        let drained = self.snapshot().drained_agents;
        for host in &cfg.cluster.leave_agents {
            for agent in view.agent_by_host(host) {
                if drained.contains(&agent.id) {
                    continue;
                }
                client
                    .drain_agent(DrainAgentRequest {
                        agent_id: agent.id.clone(),
                        max_grace_seconds: cfg.cluster.drain_grace_s,
                        mark_gone: false,
                    })
                    .await
                    .map_err(|e| {
                        format!("draining agent {} ({host}): {}", agent.id, e.message())
                    })?;
                let id = agent.id.clone();
                self.update(|s| {
                    s.drained_agents.push(id.clone());
                    s.record(5, format!("draining agent {id} ({host})"), None);
                });
            }
        }
        let started = Instant::now();
        let deadline = started + cfg.phase_timeout();
        let ids = self.snapshot().drained_agents;
        loop {
            let view = self.monitor.view();
            if ids
                .iter()
                .all(|id| view.agents.get(id).is_none_or(ClusterView::drained))
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err("agents tied to A did not drain".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.update(|s| {
            s.record(
                5,
                format!("{} agents drained", ids.len()),
                Some(started.elapsed().as_millis() as u64),
            )
        });
        Ok(())
    }

    /// Phase 6: the sync stops, A's tree is archived, this orchestrator leaves A, A must have
    /// no client session left, and A's servers are archived and stopped by the actuator.
    pub(super) async fn retire_source(&self) -> Result<(), String> {
        let cfg = self.config();
        let a = self.a_client().ok_or("no session on A")?;
        let started = Instant::now();
        let archive = self.archive().await?;
        self.update(|s| {
            s.record(
                6,
                format!(
                    "A's tree archived: {} znodes in {}",
                    archive.znodes,
                    archive.file.display()
                ),
                Some(started.elapsed().as_millis() as u64),
            );
            s.archive = Some(archive);
        });
        self.stop_sync().await;
        self.update(|s| s.record(6, "sync stopped", None));
        *self.a.lock().unwrap_or_else(|p| p.into_inner()) = None;
        drop(a);
        let deadline = Instant::now() + cfg.phase_timeout();
        loop {
            let sessions = ensemble::sessions(&cfg.sync.source_zk).await;
            let open: usize = sessions
                .iter()
                .filter_map(|(_, n)| n.as_ref().map(Vec::len))
                .sum();
            if open == 0 {
                self.update(|s| s.record(6, "no client session left on A (cons)", None));
                break;
            }
            if Instant::now() >= deadline {
                let detail: Vec<String> = sessions
                    .iter()
                    .map(|(s, n)| match n {
                        None => format!("{s}: no answer"),
                        Some(list) if list.is_empty() => format!("{s}: none"),
                        Some(list) => format!("{s}: {}", list.join(", ")),
                    })
                    .collect();
                return Err(format!(
                    "clients still hold sessions on A ({}): move them to B first",
                    detail.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for server in ensemble::servers(&cfg.sync.source_zk) {
            self.actuate(
                6,
                Action::ArchiveZookeeper {
                    server: server.clone(),
                },
            )
            .await?;
            self.actuate(6, Action::StopZookeeper { server }).await?;
        }
        Ok(())
    }

    /// Writes A's replicated subtree to `<migration>/archive/a-<time>.jsonl` (path, data in
    /// base64, ACL, ephemerality per line).
    pub(super) async fn archive(&self) -> Result<Archive, String> {
        use base64::Engine as _;
        let cfg = self.config();
        let engine = self.engine().await.ok_or("the sync is not running")?;
        let (tree, _) = engine
            .read_both()
            .await
            .map_err(|e| format!("reading A: {e}"))?;
        drop(engine);
        let dir = MigrationState::dir(&cfg.state_dir, &self.snapshot().id).join("archive");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let file = dir.join(format!("a-{}.jsonl", now_ms()));
        let mut out = String::new();
        for (path, node) in &tree {
            out.push_str(
                &serde_json::json!({
                    "path": path,
                    "data": base64::engine::general_purpose::STANDARD.encode(&node.data),
                    "acl": node.acl,
                    "ephemeral": node.ephemeral,
                })
                .to_string(),
            );
            out.push('\n');
        }
        std::fs::write(&file, out).map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(Archive {
            file,
            znodes: tree.len() as u64,
            keep_until_unix_ms: now_ms() + cfg.rollback_window_h * 3_600_000,
        })
    }
}
