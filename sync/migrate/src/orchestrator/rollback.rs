//! Undoing phases, in reverse: each restores the routing the phase changed.
use std::time::{Duration, Instant};

use orca_proto::operator::v1::AgentRequest;

use super::{Orchestrator, connect};
use crate::{
    actuator::Action,
    cluster,
    ensemble::{self, EnsembleHealth},
    state::{Status, phase_name},
};

impl Orchestrator {
    pub(super) async fn run_rollback(&self, to: u8) {
        let s = self.snapshot();
        let from = match &s.status {
            Status::RollingBack { from, .. } => *from,
            Status::Halted { phase, .. } | Status::Running { phase } => (*phase).max(s.completed),
            _ => s.completed,
        };
        self.update(|s| {
            s.status = Status::RollingBack { to, from };
            s.record(
                from,
                format!("rollback from phase {from} to phase {to} begins"),
                None,
            );
        });
        for phase in ((to + 1)..=from).rev() {
            let started = Instant::now();
            let undone = match phase {
                1 => {
                    self.stop_sync().await;
                    Ok(())
                }
                2 => self.stop_target_masters().await,
                3 => self.restore_source_masters().await,
                4 => self.switch_agents(false).await,
                5 => self.reactivate_drained().await,
                6 => self.restore_source_ensemble().await,
                _ => Ok(()),
            };
            if let Err(reason) = undone {
                self.update(|s| {
                    s.record(phase, format!("rollback halted: {reason}"), None);
                    s.status = Status::Halted {
                        phase,
                        reason: format!("rollback: {reason}"),
                    };
                });
                return;
            }
            self.update(|s| {
                s.completed = phase - 1;
                s.status = Status::RollingBack {
                    to,
                    from: phase - 1,
                };
                s.record(
                    phase,
                    format!("phase {phase} ({}) undone", phase_name(phase)),
                    Some(started.elapsed().as_millis() as u64),
                );
            });
        }
        let running = self.monitor.view().running_tasks();
        self.update(|s| {
            s.completed = to;
            s.tasks.after = Some(running);
            s.status = if to == 0 {
                Status::RolledBack
            } else {
                Status::Waiting
            };
            s.record(to, format!("rolled back to phase {to}"), None);
        });
    }

    pub(super) async fn stop_target_masters(&self) -> Result<(), String> {
        // Leadership is on A again (phase 3 undone) or never left it.
        let cfg = self.config();
        for master in &cfg.cluster.target_masters {
            self.actuate(2, Action::StopMaster { http: master.http })
                .await?;
        }
        Ok(())
    }

    /// Undoing phase 3: A's sequence is put ahead of B's, the masters on A start again and
    /// join (mirrored to B), then the masters on B leave, the leader last.
    pub(super) async fn restore_source_masters(&self) -> Result<(), String> {
        let cfg = self.config();
        let a = self.a_client().ok_or("no session on A")?;
        self.align(&self.b_client(), &a, 3).await?;
        let present = self.contenders(false).await?;
        for m in self.snapshot().source_masters {
            if present.iter().any(|c| c.http == Some(m.addr.http)) {
                continue;
            }
            self.actuate(
                3,
                Action::StartMaster {
                    master: m.addr.clone(),
                    zk: cfg.zk_url(false),
                },
            )
            .await?;
        }
        let sources = self.snapshot().source_http();
        let deadline = Instant::now() + cfg.phase_timeout();
        loop {
            let on_b = self.contenders(true).await?;
            if sources
                .iter()
                .all(|h| on_b.iter().any(|c| c.http == Some(*h)))
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err("the masters on A did not appear in B's group".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.retire_masters(true).await
    }

    pub(super) async fn reactivate_drained(&self) -> Result<(), String> {
        if self.snapshot().drained_agents.is_empty() {
            return Ok(());
        }
        let grpc = self.leader_grpc().await?;
        let mut client = cluster::operator(grpc).await?;
        for id in self.snapshot().drained_agents {
            match client
                .reactivate_agent(AgentRequest {
                    agent_id: id.clone(),
                })
                .await
            {
                Ok(_) => {}
                // Gone meanwhile, or not deactivated: nothing to undo.
                Err(e)
                    if matches!(
                        e.code(),
                        tonic::Code::NotFound | tonic::Code::FailedPrecondition
                    ) => {}
                Err(e) => return Err(format!("reactivating agent {id}: {}", e.message())),
            }
            self.update(|s| {
                s.drained_agents.retain(|d| *d != id);
                s.record(5, format!("agent {id} reactivated"), None);
            });
        }
        Ok(())
    }

    /// Undoing phase 6: A's servers start again and the sync resumes from what both last
    /// agreed on, so B's writes since catch A up.
    pub(super) async fn restore_source_ensemble(&self) -> Result<(), String> {
        let cfg = self.config();
        for server in ensemble::servers(&cfg.sync.source_zk) {
            self.actuate(6, Action::StartZookeeper { server }).await?;
        }
        let deadline = Instant::now() + cfg.phase_timeout();
        while !EnsembleHealth::probe(&cfg.sync.source_zk)
            .await
            .has_quorum()
        {
            if Instant::now() >= deadline {
                return Err("A has no quorum after its servers started".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let a = connect(
            "A",
            &cfg.sync.source_zk,
            cfg.sync.source_auth.as_deref(),
            cfg.sync.session_timeout(),
        )
        .await
        .map_err(|e| e.to_string())?;
        *self.a.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
        self.start_sync().await?;
        Ok(())
    }
}
