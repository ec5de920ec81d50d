//! The contract between the agent and `orca-task-supervisor`, the small process that owns one
//! task (as a Mesos executor or a containerd shim does) so the task does not depend on the
//! agent process staying alive.
//!
//! The agent starts the supervisor with an [`Invocation`]. The supervisor starts the task's
//! program in its own process group, puts it in the task's cgroup, opens the program's
//! start gate (one line on its stdin), checkpoints both processes' identities ([`Pids`]) in
//! the task's checkpoint directory and says [`Report::Started`] on its stdout. From then on it
//! needs nobody: it copies the task's output into the sandbox with rotation ([`logs`]),
//! reaps the task, writes how it ended ([`ExitRecord`]) and exits once the output is written.
//! An agent restarted meanwhile finds all of it in the checkpoint directory.
pub mod logs;

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
};

/// The supervisor's checkpoint file naming both processes.
pub const PIDS_FILE: &str = "pids";
/// The supervisor's checkpoint file saying how the task ended.
pub const EXIT_FILE: &str = "exit";

/// What the agent asks a supervisor to do (its command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The task's checkpoint directory: [`PIDS_FILE`] and [`EXIT_FILE`] are written there.
    pub meta: PathBuf,
    /// The task's `stdout` and `stderr` files go here (the process's working directory is the
    /// supervisor's, which the agent sets).
    pub sandbox: PathBuf,
    /// `cgroup.procs` (or `tasks`) files the task's pid is written to before the gate opens.
    pub cgroup_procs: Vec<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub rotation: logs::Rotation,
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl Invocation {
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--meta".into(),
            self.meta.clone().into(),
            "--sandbox".into(),
            self.sandbox.clone().into(),
            "--rotate-bytes".into(),
            self.rotation.max_bytes.to_string().into(),
            "--rotate-keep".into(),
            self.rotation.keep.to_string().into(),
        ];
        for procs in &self.cgroup_procs {
            out.push("--cgroup-procs".into());
            out.push(procs.clone().into());
        }
        if let Some(uid) = self.uid {
            out.extend(["--uid".into(), uid.to_string().into()]);
        }
        if let Some(gid) = self.gid {
            out.extend(["--gid".into(), gid.to_string().into()]);
        }
        out.push("--".into());
        out.push(self.program.clone());
        out.extend(self.args.iter().cloned());
        out
    }

    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let mut meta = None;
        let mut sandbox = None;
        let mut cgroup_procs = Vec::new();
        let (mut uid, mut gid) = (None, None);
        let mut rotation = logs::Rotation::default();
        let number = |flag: &str, value: Option<OsString>| -> Result<u64, String> {
            value
                .and_then(|v| v.into_string().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{flag} needs a number"))
        };
        loop {
            let Some(flag) = args.next() else {
                return Err("no program: the task's command follows `--`".into());
            };
            let flag = flag.to_string_lossy().into_owned();
            match flag.as_str() {
                "--meta" => meta = args.next().map(PathBuf::from),
                "--sandbox" => sandbox = args.next().map(PathBuf::from),
                "--cgroup-procs" => cgroup_procs.push(PathBuf::from(
                    args.next().ok_or("--cgroup-procs needs a path")?,
                )),
                "--uid" => uid = Some(number("--uid", args.next())? as u32),
                "--gid" => gid = Some(number("--gid", args.next())? as u32),
                "--rotate-bytes" => rotation.max_bytes = number("--rotate-bytes", args.next())?,
                "--rotate-keep" => rotation.keep = number("--rotate-keep", args.next())? as usize,
                "--" => break,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let program = args.next().ok_or("no program after `--`")?;
        Ok(Invocation {
            meta: meta.ok_or("--meta is required")?,
            sandbox: sandbox.ok_or("--sandbox is required")?,
            cgroup_procs,
            uid,
            gid,
            rotation,
            program,
            args: args.collect(),
        })
    }
}

/// The supervisor's one line to the agent on its stdout, once the task runs or cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    Started { pid: u32 },
    Failed(String),
}

impl Report {
    pub fn to_line(&self) -> String {
        match self {
            Report::Started { pid } => format!("started {pid}\n"),
            Report::Failed(why) => format!("failed {}\n", why.replace('\n', " ")),
        }
    }

    pub fn parse(line: &str) -> Option<Report> {
        let line = line.trim_end_matches('\n');
        if let Some(pid) = line.strip_prefix("started ") {
            return pid.parse().ok().map(|pid| Report::Started { pid });
        }
        line.strip_prefix("failed ")
            .map(|why| Report::Failed(why.to_owned()))
    }
}

/// A process named by its pid and its start time (clock ticks after boot), which together
/// name it for good: a pid alone may be another process's once the first has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessIdentity {
    /// The live process `pid` is now.
    pub fn of(pid: u32) -> io::Result<Self> {
        Ok(ProcessIdentity {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this process is still alive: a pid with the same start time, not a zombie
    /// (a process that ended and that nobody has reaped yet, as an orphan under an init that
    /// does not reap).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_ok_and(|(state, t)| t == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// Field 22 of `/proc/<pid>/stat`.
pub fn start_time(pid: u32) -> io::Result<u64> {
    stat(pid).map(|(_, start_time)| start_time)
}

/// The state (field 3) and start time (field 22) of `/proc/<pid>/stat`, read after the
/// command name, which may hold spaces.
fn stat(pid: u32) -> io::Result<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat has no command name")))?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next().and_then(|s| s.chars().next());
    // After the state (field 3), start time (22) is the 19th field.
    let start_time = fields.nth(18).and_then(|t| t.parse().ok());
    match (state, start_time) {
        (Some(state), Some(start_time)) => Ok((state, start_time)),
        _ => Err(io::Error::other(format!(
            "/proc/{pid}/stat is not as expected"
        ))),
    }
}

/// The supervisor and the task, as the supervisor checkpoints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pids {
    pub supervisor: ProcessIdentity,
    pub task: ProcessIdentity,
}

impl Pids {
    pub fn write(&self, meta: &Path) -> io::Result<()> {
        let text = format!(
            "supervisor {} {}\ntask {} {}\n",
            self.supervisor.pid, self.supervisor.start_time, self.task.pid, self.task.start_time
        );
        write_atomically(&meta.join(PIDS_FILE), text.as_bytes())
    }

    /// `Ok(None)` when the supervisor never wrote them (the task never started).
    pub fn read(meta: &Path) -> io::Result<Option<Pids>> {
        let Some(text) = read_if_exists(&meta.join(PIDS_FILE))? else {
            return Ok(None);
        };
        let mut found = [None, None];
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let slot = match words.next() {
                Some("supervisor") => 0,
                Some("task") => 1,
                _ => continue,
            };
            let pid = words.next().and_then(|w| w.parse().ok());
            let start_time = words.next().and_then(|w| w.parse().ok());
            if let (Some(pid), Some(start_time)) = (pid, start_time) {
                found[slot] = Some(ProcessIdentity { pid, start_time });
            }
        }
        match found {
            [Some(supervisor), Some(task)] => Ok(Some(Pids { supervisor, task })),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged: {text:?}", meta.join(PIDS_FILE).display()),
            )),
        }
    }
}

/// How the task's process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitRecord {
    Exited(i32),
    Signaled(i32),
}

impl ExitRecord {
    pub fn write(&self, meta: &Path) -> io::Result<()> {
        let text = match self {
            ExitRecord::Exited(code) => format!("exited {code}\n"),
            ExitRecord::Signaled(signal) => format!("signaled {signal}\n"),
        };
        write_atomically(&meta.join(EXIT_FILE), text.as_bytes())
    }

    /// `Ok(None)` while the task has not ended (or its supervisor died before saying so).
    pub fn read(meta: &Path) -> io::Result<Option<ExitRecord>> {
        let Some(text) = read_if_exists(&meta.join(EXIT_FILE))? else {
            return Ok(None);
        };
        let mut words = text.split_whitespace();
        let record = match (words.next(), words.next().and_then(|n| n.parse().ok())) {
            (Some("exited"), Some(code)) => Some(ExitRecord::Exited(code)),
            (Some("signaled"), Some(signal)) => Some(ExitRecord::Signaled(signal)),
            _ => None,
        };
        record.map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged: {text:?}", meta.join(EXIT_FILE).display()),
            )
        })
    }
}

fn read_if_exists(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Written whole to a temporary name, then renamed over `path`: a reader sees the old file
/// or the new one, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_survives_its_command_line() {
        let invocation = Invocation {
            meta: "/w/meta/fw/t".into(),
            sandbox: "/w/frameworks/fw/tasks/t".into(),
            cgroup_procs: vec!["/sys/fs/cgroup/a/cgroup.procs".into(), "/b/tasks".into()],
            uid: Some(65534),
            gid: Some(65534),
            rotation: logs::Rotation {
                max_bytes: 1000,
                keep: 2,
            },
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo --meta x".into()],
        };
        assert_eq!(Invocation::parse(invocation.to_args()), Ok(invocation));
        assert!(Invocation::parse(["--meta".into(), "/m".into()]).is_err());
        assert!(
            Invocation::parse(["--bogus".into(), "--".into(), "true".into()])
                .unwrap_err()
                .contains("--bogus")
        );
    }

    #[test]
    fn reports_and_records_read_back() {
        for report in [
            Report::Started { pid: 42 },
            Report::Failed("no such file".into()),
        ] {
            assert_eq!(Report::parse(&report.to_line()), Some(report));
        }
        assert_eq!(Report::parse("hello"), None);
        let dir = std::env::temp_dir().join(format!("orca-supervisor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(ExitRecord::read(&dir).unwrap(), None);
        assert_eq!(Pids::read(&dir).unwrap(), None);
        for record in [ExitRecord::Exited(3), ExitRecord::Signaled(9)] {
            record.write(&dir).unwrap();
            assert_eq!(ExitRecord::read(&dir).unwrap(), Some(record));
        }
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive());
        let pids = Pids {
            supervisor: me,
            task: me,
        };
        pids.write(&dir).unwrap();
        assert_eq!(Pids::read(&dir).unwrap(), Some(pids));
        std::fs::write(dir.join(EXIT_FILE), "garbage").unwrap();
        assert!(ExitRecord::read(&dir).is_err());
        let older = ProcessIdentity {
            pid: me.pid,
            start_time: me.start_time.wrapping_sub(1),
        };
        assert!(
            !older.is_alive(),
            "same pid, another start: not the same process"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
