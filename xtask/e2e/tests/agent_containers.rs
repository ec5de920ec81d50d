//! Containers from real runtimes, started by this test: containerd (with a locally made
//! image) and a Docker engine. Each container opens a TCP connection to this test; the agent
//! must show the container with its id, name and image, and attribute its process and
//! connection to it. Runs as root.
mod support;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use orca_agent::{
    containers::{self, RuntimeSockets, SharedDirectory, control::ContainerControl},
    engine::{Engine, EngineOptions},
    probe::ProbeChoice,
};
use orca_proto::{
    cluster::v1::{self as cpb, ContainerAction},
    topology::v1 as pb,
};
use support::{agent::*, docker::*};

/// A docker-save archive of the rootfs tarball, importable by `ctr images import`.
fn docker_archive(dir: &Path, layer: &Path, tag: &str) -> PathBuf {
    let work = dir.join("archive");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(layer, work.join("layer.tar")).unwrap();
    let digest = sh(Command::new("sha256sum").arg(work.join("layer.tar")));
    let digest = digest.split_whitespace().next().unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:{digest}"]}}}}"#
    );
    std::fs::write(work.join("config.json"), config).unwrap();
    std::fs::write(
        work.join("manifest.json"),
        format!(r#"[{{"Config":"config.json","RepoTags":["{tag}"],"Layers":["layer.tar"]}}]"#),
    )
    .unwrap();
    let archive = dir.join("image.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&work)
        .arg("-cf")
        .arg(&archive)
        .args(["manifest.json", "config.json", "layer.tar"]));
    archive
}

/// What the agent must say about the test's container.
struct Expected<'a> {
    id: &'a str,
    name: &'a str,
    image: &'a str,
    runtime: &'a str,
}

/// Starts an agent engine that knows the runtime at `sockets`, and asserts that the
/// container, its process and its connection are in its snapshot.
fn assert_attributed(
    sockets: &RuntimeSockets,
    listener: &TcpListener,
    expected: Expected<'_>,
) -> pb::Container {
    let directory = SharedDirectory::default();
    let mut engine = Engine::start(EngineOptions {
        probe: ProbeChoice::Ebpf,
        containers: directory.clone(),
        ..Default::default()
    })
    .unwrap();
    let Expected {
        id,
        name,
        image,
        runtime,
    } = expected;
    let (_conn, peer) = listener.accept().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(containers::refresh(sockets, &directory));
    let snapshot = wait_for(
        Duration::from_secs(10),
        "the container's connection",
        || {
            let s = engine.snapshot(true);
            let c = s.connections.iter().find(|c| {
                c.local
                    .as_ref()
                    .is_some_and(|l| l.port == peer.port() as u32)
                    && c.direction == pb::Direction::Outbound as i32
            })?;
            (c.container_id == id).then(|| s.clone())
        },
    );
    let conn = snapshot
        .connections
        .iter()
        .find(|c| {
            c.local
                .as_ref()
                .is_some_and(|l| l.port == peer.port() as u32)
        })
        .unwrap();
    let process = process(&snapshot.nodes, conn.pid).expect("the container's process");
    assert_eq!(process.comm, "nc");
    assert_eq!(process.container_id, id);
    let node = node(&snapshot.nodes, &format!("container:{id}")).expect("the container node");
    let pb::node::Detail::Container(container) = node.detail.clone().unwrap() else {
        panic!("not a container: {node:?}");
    };
    assert_eq!(container.id, id);
    assert_eq!(container.name, name);
    assert_eq!(container.image, image);
    assert_eq!(container.runtime, runtime);
    assert_eq!(container.state(), pb::ContainerState::Running);
    let proc_node = node_for_pid(&snapshot.nodes, conn.pid);
    assert_eq!(proc_node.parents[0], format!("container:{id}"));
    container
}

fn node_for_pid(nodes: &Option<Vec<pb::Node>>, pid: u32) -> pb::Node {
    nodes
        .as_ref()
        .unwrap()
        .iter()
        .find(|n| matches!(&n.detail, Some(pb::node::Detail::Process(p)) if p.pid == pid))
        .cloned()
        .unwrap()
}

#[test]
fn containerd_container_with_its_process_and_connection() {
    require_root();
    let scratch = Scratch::new("ctd");
    let dir = &scratch.0;
    let sock = dir.join("c.sock");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{dbg}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            dbg = dir.join("d.sock").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let _containerd = ChildGuard(
        Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is installed by `cargo xtask setup`"),
    );
    let ctr = || {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&sock)
            .args(["--namespace", "orca-test"]);
        c
    };
    wait_socket("containerd to serve", || {
        let mut c = ctr();
        c.arg("version");
        c
    });
    let (_rootfs, layer) = busybox_rootfs(dir);
    let archive = docker_archive(dir, &layer, "orca-test/busybox:1");
    sh(ctr().args(["images", "import"]).arg(&archive));
    let image = "docker.io/orca-test/busybox:1";

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let id = format!("orca-web-{}", std::process::id());
    struct Task<'a>(&'a dyn Fn() -> Command, String);
    impl Drop for Task<'_> {
        fn drop(&mut self) {
            let _ = (self.0)()
                .args(["tasks", "kill", "-s", "SIGKILL", &self.1])
                .status();
            for _ in 0..50 {
                if (self.0)()
                    .args(["tasks", "delete", &self.1])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // The test may have removed it through the agent already.
            let _ = (self.0)()
                .args(["containers", "delete", &self.1])
                .stderr(Stdio::null())
                .status();
            // containerd leaves the namespace's (now empty) cgroup in every hierarchy.
            for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_dir(hierarchy.path().join("orca-test"));
            }
        }
    }
    sh(ctr()
        .args([
            "run",
            "-d",
            "--net-host",
            "--label",
            "name=orca-web",
            image,
            &id,
        ])
        .args([
            "sh",
            "-c",
            &format!("echo orca-says-hi; sleep 600 | nc 127.0.0.1 {port}"),
        ]));
    let _task = Task(&ctr, id.clone());

    let sockets = RuntimeSockets {
        docker: None,
        containerd: Some(sock.clone()),
    };
    let container = assert_attributed(
        &sockets,
        &listener,
        Expected {
            id: &id,
            name: "orca-web",
            image,
            runtime: "containerd",
        },
    );
    assert_eq!(container.namespace, "orca-test");
    assert_eq!(
        container.labels.get("name").map(String::as_str),
        Some("orca-web")
    );

    // Control through the agent. containerd keeps no output of a task it did not start
    // with a log; a restart from the agent writes one.
    let status = |id: &str| -> String {
        sh(ctr().args(["tasks", "ls"]))
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .unwrap_or_else(|| "no task".into())
    };
    let mut control = Control::new(&sockets, &dir.join("logs"));
    let err = control.logs(&id).unwrap_err();
    assert!(err.contains("keeps no output"), "{err}");
    control.act(&id, ContainerAction::Pause).unwrap();
    assert_eq!(status(&id), "PAUSED");
    control.act(&id, ContainerAction::Unpause).unwrap();
    assert_eq!(status(&id), "RUNNING");
    control.act(&id, ContainerAction::Restart).unwrap();
    assert_eq!(status(&id), "RUNNING");
    wait_for(
        Duration::from_secs(10),
        "the restarted task's output",
        || {
            control
                .logs(&id)
                .ok()
                .filter(|o| o.contains("orca-says-hi"))
        },
    );
    control.act(&id, ContainerAction::Stop).unwrap();
    assert_eq!(status(&id), "no task");
    control.act(&id, ContainerAction::Start).unwrap();
    assert_eq!(status(&id), "RUNNING");
    control.act(&id, ContainerAction::Remove).unwrap();
    assert!(!sh(ctr().args(["containers", "ls", "-q"])).contains(&id));
    let err = control.act(&id, ContainerAction::Stop).unwrap_err();
    assert!(err.contains("no container"), "{err}");
}

#[test]
fn docker_container_with_its_process_and_connection() {
    require_root();
    let scratch = Scratch::new("dkr");
    let dir = &scratch.0;
    let dockerd = Dockerd::start(dir);
    let docker = || dockerd.docker();
    let (_rootfs, tarball) = busybox_rootfs(dir);
    sh(docker()
        .arg("import")
        .arg(&tarball)
        .arg("orca-test/busybox:1"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let name = format!("orca-web-{}", std::process::id());
    let id = sh(docker()
        .args([
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            &name,
            "--label",
            "app=orca-test",
        ])
        .args(["--memory", "64m", "orca-test/busybox:1"])
        .args([
            "sh",
            "-c",
            &format!("echo orca-says-hi; sleep 600 | nc 127.0.0.1 {port}"),
        ]))
    .trim()
    .to_string();
    let _container = Container {
        dockerd: &dockerd,
        id: id.clone(),
    };

    let sockets = RuntimeSockets {
        docker: Some(dockerd.socket.clone()),
        containerd: None,
    };
    let container = assert_attributed(
        &sockets,
        &listener,
        Expected {
            id: &id,
            name: &name,
            image: "orca-test/busybox:1",
            runtime: "docker",
        },
    );
    assert_eq!(
        container.labels.get("app").map(String::as_str),
        Some("orca-test")
    );
    assert_eq!(container.memory_limit_bytes, 64 << 20);
    assert_eq!(container.cgroup_path, format!("/docker/{id}"));

    // Control through the agent: every action, the output, and a followed output.
    let state = |id: &str| {
        sh(docker().args(["inspect", "-f", "{{.State.Status}}", id]))
            .trim()
            .to_owned()
    };
    let mut control = Control::new(&sockets, &dir.join("logs"));
    control.act(&id, ContainerAction::Pause).unwrap();
    assert_eq!(state(&id), "paused");
    control.act(&id, ContainerAction::Unpause).unwrap();
    assert_eq!(state(&id), "running");
    let out = control.logs(&id).unwrap();
    assert!(out.contains("orca-says-hi"), "{out:?}");
    control.follow_until(&id, "followed-line", || {
        sh(docker().args(["exec", &id, "sh", "-c", "echo followed-line > /proc/1/fd/1"]));
    });
    control.act(&id, ContainerAction::Restart).unwrap();
    assert_eq!(state(&id), "running");
    control.act(&id, ContainerAction::Stop).unwrap();
    assert_eq!(state(&id), "exited");
    control.act(&id, ContainerAction::Start).unwrap();
    assert_eq!(state(&id), "running");
    control.act(&id, ContainerAction::Remove).unwrap();
    assert!(
        docker()
            .args(["inspect", &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| !s.success())
    );
    let err = control
        .act("no-such-container", ContainerAction::Stop)
        .unwrap_err();
    assert!(err.contains("no container"), "{err}");
}

/// The agent's container control, driven the way the agent link drives it.
struct Control {
    rt: tokio::runtime::Runtime,
    control: ContainerControl,
    next: u64,
}

impl Control {
    fn new(sockets: &RuntimeSockets, log_dir: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let directory = SharedDirectory::default();
        rt.block_on(containers::refresh(sockets, &directory));
        Self {
            rt,
            control: ContainerControl::new(sockets.clone(), directory, log_dir.to_path_buf()),
            next: 0,
        }
    }

    fn command(
        &mut self,
        id: &str,
        action: ContainerAction,
        follow: bool,
    ) -> cpb::ContainerCommand {
        self.next += 1;
        cpb::ContainerCommand {
            request_id: self.next,
            container_id: id.into(),
            action: action as i32,
            follow,
            // A shell as pid 1 ignores SIGTERM: do not wait the default 10 s for it.
            stop_timeout_seconds: 1,
            ..Default::default()
        }
    }

    /// Runs a command to its `done`: the output it sent, or its error.
    fn run(&mut self, command: cpb::ContainerCommand) -> Result<String, String> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let control = self.control.clone();
        self.rt.block_on(async move {
            control.handle(command, tx);
            let mut out = Vec::new();
            loop {
                let message = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                    .await
                    .expect("a reply within 60 s")
                    .expect("replies until done");
                let Some(cpb::agent_message::Kind::ContainerReply(reply)) = message.kind else {
                    panic!("not a container reply: {message:?}");
                };
                out.extend(reply.log);
                if !reply.error.is_empty() {
                    return Err(reply.error);
                }
                if reply.done {
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
            }
        })
    }

    fn act(&mut self, id: &str, action: ContainerAction) -> Result<(), String> {
        let command = self.command(id, action, false);
        self.run(command).map(|_| ())
    }

    fn logs(&mut self, id: &str) -> Result<String, String> {
        let command = self.command(id, ContainerAction::Logs, false);
        self.run(command)
    }

    /// Follows the output, runs `write` once the stream is open, and waits for `needle`;
    /// then cancels the stream.
    fn follow_until(&mut self, id: &str, needle: &str, write: impl FnOnce()) {
        let command = self.command(id, ContainerAction::Logs, true);
        let request_id = command.request_id;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let control = self.control.clone();
        self.rt.block_on(async {
            control.handle(command, tx);
            let mut out = Vec::new();
            let mut write = Some(write);
            while !String::from_utf8_lossy(&out).contains(needle) {
                let message = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "{needle:?} within 30 s; got {:?}",
                            String::from_utf8_lossy(&out)
                        )
                    })
                    .expect("the followed stream stays open");
                let Some(cpb::agent_message::Kind::ContainerReply(reply)) = message.kind else {
                    continue;
                };
                assert!(reply.error.is_empty(), "{}", reply.error);
                assert!(!reply.done, "a followed log ended");
                out.extend(reply.log);
                if let Some(write) = write.take() {
                    write();
                }
            }
            let (cancel_tx, _) = tokio::sync::mpsc::channel(1);
            control.handle(
                cpb::ContainerCommand {
                    request_id,
                    cancel: true,
                    ..Default::default()
                },
                cancel_tx,
            );
        });
    }
}
