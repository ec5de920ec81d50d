//! `orca up` end to end in a real terminal (tmux): the local host and a known connection
//! appear, the connection is found with the filter and its details opened, a task is launched
//! and killed from the UI, and `q` quits cleanly with the terminal restored. Needs root (the
//! local agent runs tasks in cgroups) and tmux (installed by `cargo xtask setup`).
mod support;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use support::tmux::Tmux;

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first table row (it starts with a health glyph) that contains `needle`.
fn line_with<'a>(screen: &'a str, needle: &str) -> Option<&'a str> {
    screen
        .lines()
        .filter(|l| l.starts_with(['●', '▲', '✖', '·']))
        .find(|l| l.contains(needle))
}

/// Whether a process with exactly this command line runs.
fn running(cmdline: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|raw| {
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            args.join(&b' ') == cmdline.as_bytes()
        })
}

#[test]
fn orca_up_shows_this_host_finds_a_connection_and_runs_and_kills_a_task() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (the local agent runs tasks in cgroups): run `cargo xtask test` as root"
    );
    let state_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("orca-up-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    std::fs::create_dir_all(&state_dir).unwrap();
    let exit_file = state_dir.join("exit-status");

    // A known connection: this test talks to its own listener the whole time.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"hello orca").unwrap();
    let mut buf = [0u8; 10];
    server.read_exact(&mut buf).unwrap();

    let (grpc, http) = (free_port(), free_port());
    let command = format!(
        "{bin} up --grpc-addr 127.0.0.1:{grpc} --http-addr 127.0.0.1:{http} --state-dir {dir}; \
         echo $? > {exit}",
        bin = support::bin("orca").display(),
        dir = state_dir.display(),
        exit = exit_file.display(),
    );
    let started = Instant::now();
    let tmux = Tmux::start(
        &format!("orca-e2e-{}", std::process::id()),
        120,
        36,
        &command,
    );

    // This host appears in the hosts view.
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    tmux.wait_for("this host in the hosts view", |s| {
        s.contains("● connected")
            && s.lines()
                .any(|l| (l.starts_with('●') || l.starts_with('▲')) && l.contains(&hostname))
    });
    eprintln!("host visible {:?} after start", started.elapsed());

    // The known connection, found with the filter, then its details.
    tmux.keys(&["4", "/"]);
    tmux.type_text(&port.to_string());
    let endpoint = format!("127.0.0.1:{port}");
    tmux.wait_for("the test's connection under the filter", |s| {
        line_with(s, &endpoint).is_some_and(|l| l.contains("established"))
    });
    tmux.keys(&["Enter", "d"]);
    let details = tmux.wait_for("the connection's details", |s| {
        s.contains("remote") && s.contains("direction") && s.contains(&endpoint)
    });
    assert!(details.contains("sent"), "{details}");

    // Launch a task from the dialog; it runs; kill it from the UI.
    tmux.keys(&["d", "Escape"]);
    tmux.wait_for("the filter cleared", |s| !s.contains("filter:"));
    tmux.keys(&["7", "L"]);
    tmux.wait_for("the launch dialog", |s| s.contains("launch a task"));
    tmux.type_text("e2e-sleeper");
    tmux.keys(&["Tab"]);
    tmux.type_text("sleep 300");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the task running", |s| {
        line_with(s, "e2e-sleeper").is_some_and(|l| l.contains("RUNNING"))
    });
    tmux.keys(&["/"]);
    tmux.type_text("e2e-sleeper");
    tmux.keys(&["Enter", "x"]);
    tmux.wait_for("the kill confirmation", |s| {
        s.contains("Kill task e2e-sleeper")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the task killed", |s| {
        line_with(s, "e2e-sleeper").is_some_and(|l| l.contains("KILLED"))
    });

    // A task still running when orca quits is stopped with it.
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter cleared", |s| !s.contains("filter:"));
    tmux.keys(&["L"]);
    tmux.wait_for("the launch dialog", |s| s.contains("launch a task"));
    tmux.type_text("e2e-left");
    tmux.keys(&["Tab"]);
    tmux.type_text("sleep 301");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the second task running", |s| {
        line_with(s, "e2e-left").is_some_and(|l| l.contains("RUNNING"))
    });
    assert!(running("sleep 301"), "the task's process runs");

    // Quit: orca stops master and agent, exits 0, and the terminal is back to normal.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&exit_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "orca did not exit after q; the screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status,
        "0",
        "orca's exit status; the screen:\n{}",
        tmux.screen()
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    let history = tmux.history();
    assert!(history.contains("orca up: stopped"), "{history}");
    assert!(
        !running("sleep 301"),
        "quitting orca up killed the task it left running"
    );
    drop(tmux);
    let _ = std::fs::remove_dir_all(&state_dir);
}

/// `orca up --headless` on the given ports, stopped with SIGINT (as Ctrl-C) when dropped.
struct Headless(std::process::Child);

impl Headless {
    fn start(grpc: u16, http: u16, state_dir: &std::path::Path) -> Headless {
        let child = Command::new(support::bin("orca"))
            .args(["up", "--headless", "--no-tasks"])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("orca up --headless starts");
        Headless(child)
    }

    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let status = self.0.wait().unwrap();
        assert!(status.success(), "orca up --headless exited with {status}");
    }
}

impl Drop for Headless {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn orca_says_when_the_master_is_unreachable_and_reconnects_on_its_own() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (the agent's eBPF probe): run `cargo xtask test` as root"
    );
    let state_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("orca-reconnect-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let (grpc, http) = (free_port(), free_port());
    let exit_file = state_dir.join("exit-status");
    std::fs::create_dir_all(&state_dir).unwrap();
    let command = format!(
        "{bin} --master 127.0.0.1:{grpc}; echo $? > {exit}",
        bin = support::bin("orca").display(),
        exit = exit_file.display(),
    );
    let tmux = Tmux::start(
        &format!("orca-reconnect-{}", std::process::id()),
        120,
        30,
        &command,
    );
    // No master yet: the status line says so, and the UI keeps answering keys.
    tmux.wait_for("the unreachable master on the status line", |s| {
        s.contains(&format!("master 127.0.0.1:{grpc} unreachable"))
    });
    tmux.keys(&["5"]);
    tmux.wait_for("the agents view while unreachable", |s| {
        s.contains("Agents") && s.contains("no data: the master is unreachable")
    });

    // The master comes: orca connects by itself and shows this host.
    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let master = Headless::start(grpc, http, &state_dir.join("up"));
    tmux.keys(&["1"]);
    tmux.wait_for("connected, with this host", |s| {
        s.contains("● connected") && line_with(s, &hostname).is_some()
    });

    // It goes away again: said so, nothing frozen; then q quits cleanly.
    master.stop();
    tmux.wait_for("unreachable again", |s| s.contains("unreachable"));
    tmux.keys(&["3", "1", "q"]);
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&exit_file).map_or(true, |t| t.trim().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "orca did not exit after q; the screen:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "the alternate screen is left"
    );
    drop(tmux);
    let _ = std::fs::remove_dir_all(&state_dir);
}
