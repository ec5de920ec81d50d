//! `orca-task-supervisor`: owns one task for the agent (see the library's documentation).
//! Started by the agent, never by hand.
use std::{
    ffi::OsString,
    io::Write as _,
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Child, Command, ExitCode, Stdio},
    sync::mpsc,
    time::Duration,
};

use orca_task_supervisor::{ExitRecord, Invocation, Pids, ProcessIdentity, Report, logs};

/// How long the output of a task that has ended may take to drain (a process the task left
/// behind holding its pipe is killed by the agent, with the task's cgroup).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let invocation = match Invocation::parse(std::env::args_os().skip(1)) {
        Ok(invocation) => invocation,
        Err(why) => {
            eprintln!("orca-task-supervisor: {why}; it is started by orca-agent, not by hand");
            return ExitCode::from(2);
        }
    };
    // Its own session: signals for the agent's process group or terminal are not for it.
    // SAFETY: setsid has no memory effects; it fails only if already a group leader.
    unsafe { libc::setsid() };
    let mut child = match start(&invocation) {
        Ok(child) => child,
        Err(why) => {
            say(&Report::Failed(why));
            return ExitCode::FAILURE;
        }
    };
    let pid = child.id();
    let pumps = pump_output(&mut child, &invocation);
    // From here on nothing may stop the supervisor but the task's end: the agent may go away
    // (its end of our pipes with it) and a terminal may hang up.
    // SAFETY: setting dispositions to SIG_IGN runs no handler code. The task has exec'd
    // already (spawn returns after exec), so it keeps the default dispositions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    say(&Report::Started { pid });
    detach_stdio();
    let status = loop {
        match child.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Only if the child were not ours; nothing more to learn then.
            Err(_) => return ExitCode::FAILURE,
        }
    };
    // The task's process group goes with it (its cgroup, with anything that left the group,
    // is the agent's to end).
    // SAFETY: killpg only sends a signal; the group id is the task's pid, which cannot be
    // reused while members of the group live.
    unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
    let record = match (status.code(), status.signal()) {
        (Some(code), _) => ExitRecord::Exited(code),
        (None, Some(signal)) => ExitRecord::Signaled(signal),
        (None, None) => ExitRecord::Signaled(0),
    };
    if record.write(&invocation.meta).is_err() {
        return ExitCode::FAILURE;
    }
    for _ in 0..pumps.count {
        if pumps.done.recv_timeout(OUTPUT_DRAIN).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// Starts the task's program, puts it in its cgroup, opens its gate and checkpoints both
/// processes. On failure the program is killed and reaped, and the reason returned.
fn start(invocation: &Invocation) -> Result<Child, String> {
    let mut command = Command::new(&invocation.program);
    command
        .args(&invocation.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(uid) = invocation.uid {
        command.uid(uid);
    }
    if let Some(gid) = invocation.gid {
        command.gid(gid);
    }
    let program = invocation.program.to_string_lossy();
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = child.id();
    let abandon = |child: &mut Child, why: String| {
        let _ = child.kill();
        let _ = child.wait();
        why
    };
    for procs in &invocation.cgroup_procs {
        if let Err(e) = std::fs::write(procs, pid.to_string()) {
            let why = format!(
                "cannot put the task in its cgroup ({}): {e}",
                procs.display()
            );
            return Err(abandon(&mut child, why));
        }
    }
    let pids = ProcessIdentity::of(std::process::id()).and_then(|supervisor| {
        Ok(Pids {
            supervisor,
            task: ProcessIdentity::of(pid)?,
        })
    });
    if let Err(e) = pids.and_then(|pids| pids.write(&invocation.meta)) {
        let why = format!(
            "cannot checkpoint the task's processes in {}: {e}",
            invocation.meta.display()
        );
        return Err(abandon(&mut child, why));
    }
    let Some(mut gate) = child.stdin.take() else {
        return Err(abandon(
            &mut child,
            "the task's gate pipe is missing".into(),
        ));
    };
    if let Err(e) = gate.write_all(b"go\n") {
        return Err(abandon(
            &mut child,
            format!("cannot open the task's gate: {e}"),
        ));
    }
    Ok(child)
}

/// The threads copying the task's output, each saying on `done` when its pipe has closed.
struct Pumps {
    done: mpsc::Receiver<()>,
    count: usize,
}

fn pump_output(child: &mut Child, invocation: &Invocation) -> Pumps {
    let (tx, done) = mpsc::channel();
    let mut count = 0;
    let streams: [(Option<Box<dyn std::io::Read + Send>>, &'static str); 2] = [
        (child.stdout.take().map(|s| Box::new(s) as Box<_>), "stdout"),
        (child.stderr.take().map(|s| Box::new(s) as Box<_>), "stderr"),
    ];
    for (stream, name) in streams {
        let Some(stream) = stream else { continue };
        let (dir, rotation, tx) = (invocation.sandbox.clone(), invocation.rotation, tx.clone());
        // Copying needs little stack; a small one keeps a supervisor per task cheap.
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let _ = logs::pump(stream, &dir, name, rotation);
                let _ = tx.send(());
            });
        if spawned.is_ok() {
            count += 1;
        }
    }
    Pumps { done, count }
}

/// One line to the agent.
fn say(report: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.to_line().as_bytes());
    let _ = out.flush();
}

/// Standard streams point at /dev/null from here on: the agent's pipes may close at any time.
fn detach_stdio() {
    let null: OsString = "/dev/null".into();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(null)
    {
        use std::os::fd::AsRawFd as _;
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which nothing else holds as owned.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
