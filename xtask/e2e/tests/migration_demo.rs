//! `orca up --migration-demo` as a newcomer runs it, in a real terminal (tmux): the UI opens
//! on the Migration view of a cluster on ensemble A (three `orca-master` processes, the local
//! agent, the UI's six `sleep` tasks); `a` and `y` advance it phase by phase to its agents on
//! B, `R` and `y` roll it all back to A, with no task interrupted; `q` leaves nothing running.
//! Needs root (the local agent's tasks), tmux and Debian's `zookeeper`.
mod support;

use std::{net::SocketAddr, time::Duration};

use orca_migrate::{client::MigrationClient, overview::Overview};
use support::{masters::free_ports, tmux::Tmux, zk::wait_for};

const WAIT: Duration = Duration::from_secs(60);
/// A's client ports are 21971-21973, B's 21981-21983 (apart from the other tests').
const ZK_BASE: u16 = 21970;

/// What a failed run leaves listening (the demo's masters and ZooKeeper servers) is ended.
struct Leftovers {
    ports: Vec<u16>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for port in &self.ports {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            if let Some(pid) = orca_migrate::actuator::listener_pid(addr) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

async fn overview(client: &MigrationClient) -> Option<Overview> {
    client.overview("demo").await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_demo_moves_its_cluster_to_b_and_back_from_the_ui() {
    support::agent::require_root();
    let dir = std::env::temp_dir().join(format!("orca-e2e-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (grpc, http) = loop {
        let (g, h) = (free_ports(6), free_ports(6));
        if g.abs_diff(h) >= 6 {
            break (g, h);
        }
    };
    let api: SocketAddr = format!("127.0.0.1:{}", free_ports(1)).parse().unwrap();
    let exit_file = dir.join("exit-status");
    let command = format!(
        "{} up --migration-demo --state-dir {} --grpc-addr 127.0.0.1:{grpc} \
         --http-addr 127.0.0.1:{http} --zk-base-port {ZK_BASE} --migration-addr {api} --log {}; \
         echo $? > {}",
        support::bin("orca").display(),
        dir.display(),
        dir.join("orca.log").display(),
        exit_file.display()
    );
    let _leftovers = Leftovers {
        ports: (0..6)
            .flat_map(|n| [grpc + n, http + n])
            .chain((1..=3).flat_map(|n| [ZK_BASE + n, ZK_BASE + 10 + n]))
            .collect(),
    };
    let term = Tmux::start("orca-e2e-demo", 140, 45, &command);
    term.wait_for("the Migration view", |s| {
        s.contains("Migration demo · planned")
    });
    let client = MigrationClient::new(api.to_string());
    wait_for(
        "three masters on A, the agent and six tasks",
        WAIT,
        || async {
            overview(&client).await.is_some_and(|o| {
                o.ensembles[0].masters.len() == 3 && o.agents.total == 1 && o.tasks_running >= 6
            })
        },
    )
    .await;
    let url_file = dir.join("demo").join("master");
    let names = |port: u16| {
        std::fs::read_to_string(&url_file)
            .unwrap_or_default()
            .contains(&format!(":{port}"))
    };
    assert!(names(ZK_BASE + 1), "clients follow A first");

    // Phases 1-4 from the keyboard, each confirmed.
    for (phase, line) in [
        (1, "✓ 1 target ensemble synced"),
        (2, "✓ 2 masters on B joined"),
        (3, "✓ 3 masters on A left"),
        (4, "✓ 4 agents moved to B"),
    ] {
        term.keys(&["a"]);
        term.wait_for(&format!("the prompt for phase {phase}"), |s| {
            s.contains(&format!("Advance migration demo to phase {phase}"))
        });
        term.keys(&["y"]);
        wait_for(&format!("phase {phase} done"), WAIT, || async {
            client.state("demo").await.is_ok_and(|s| {
                s.completed == phase || matches!(s.status, orca_migrate::Status::Halted { .. })
            })
        })
        .await;
        let state = client.state("demo").await.unwrap();
        assert_eq!(state.completed, phase, "{:?}", state.status);
        term.wait_for(line, |s| s.contains(line));
    }
    let o = overview(&client).await.unwrap();
    assert_eq!((o.agents.on_b, o.agents.on_a), (1, 0), "{o:?}");
    assert!(o.leader.as_ref().is_some_and(|l| l.on_b), "{o:?}");
    assert!(o.ensembles[0].masters.is_empty(), "{o:?}");
    assert!(o.interruptions.is_empty(), "{:?}", o.interruptions);
    assert!(o.tasks_running >= 6, "{o:?}");
    wait_for("clients pointed at B", WAIT, || async {
        names(ZK_BASE + 11)
    })
    .await;

    // Everything back to A.
    term.keys(&["R"]);
    term.wait_for("the rollback prompt", |s| {
        s.contains("everything back on A")
    });
    term.keys(&["y"]);
    term.wait_for("rolled back", |s| {
        s.contains("Migration demo · rolled back")
    });
    // A new leader on A knows the tasks once the agent has registered with it again.
    wait_for(
        "A's masters leading again, the agent back",
        WAIT,
        || async {
            overview(&client).await.is_some_and(|o| {
                o.ensembles[0].masters.len() == 3
                    && o.leader.as_ref().is_some_and(|l| !l.on_b)
                    && o.agents.active == 1
                    && o.tasks_running >= 6
            })
        },
    )
    .await;
    let o = overview(&client).await.unwrap();
    assert_eq!(o.agents.on_b, 0, "{o:?}");
    assert!(o.interruptions.is_empty(), "{:?}", o.interruptions);
    assert!(o.tasks_running >= 6, "{o:?}");
    wait_for("clients pointed at A", WAIT, || async {
        names(ZK_BASE + 1)
    })
    .await;

    // `q` ends the UI and everything the demo started.
    term.keys(&["q"]);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&exit_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orca did not quit; the screen:\n{}",
            term.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status,
        "0",
        "orca's exit status; the screen:\n{}",
        term.history()
    );
    for n in 0..6 {
        for port in [grpc + n, http + n] {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            assert!(
                orca_migrate::actuator::listener_pid(addr).is_none(),
                "a master still listens on {addr}"
            );
        }
    }
    for port in [ZK_BASE + 1, ZK_BASE + 2, ZK_BASE + 3, ZK_BASE + 11] {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            !orca_zk_local::serving(addr),
            "ZooKeeper still serves on {addr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
