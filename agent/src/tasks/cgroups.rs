//! One cgroup per task: CPU shares and CFS quota, a memory limit, a pids limit; usage and OOM
//! kills read back; every process killed at the end.
//!
//! Built on cgroups-rs: cgroup creation, limits, membership, the process list, freezing,
//! `cgroup.kill` and removal go through its controllers. Two things it cannot do are done
//! here, each shown by a test below:
//! - its unified (v2) hierarchy is fixed at `/sys/fs/cgroup` (`hierarchies::V2` has no other
//!   root, and creating a v2 cgroup enables the controllers that path lists), so the hierarchy
//!   handed to it is [`Mounts`], which takes its roots from `/proc/self/mountinfo` (v1: one per
//!   controller, as on hybrid hosts where `cpu` and `cpuacct` are separate mounts) or from a
//!   path (a v2 layout built in a temporary directory on hosts whose kernel keeps the
//!   controllers on v1), and the controllers a task needs are enabled in each ancestor's
//!   `cgroup.subtree_control` here;
//! - its statistics getters read every file of a controller (`memory_stat` parses about ten,
//!   and its v2 variant panics on a cgroup without `memory.max`/`memory.low`), and cgroups-rs
//!   0.3 reads no v2 `memory.events`: the per-task usage poll reads its four counters
//!   (`cpuacct.usage` or `cpu.stat`, memory usage, `pids.current`, the OOM-kill count) from the
//!   controllers' directories itself.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use cgroups_rs::{
    Cgroup, CgroupPid, Hierarchy, MaxValue, Subsystem, cpu::CpuController,
    freezer::FreezerController, memory::MemController, pid::PidController,
};

/// cgroup v1 `cpu.shares` per CPU, as Mesos sets it.
pub const SHARES_PER_CPU: f64 = 1024.0;
/// CFS period; the quota is `cpus` periods' worth.
pub const CFS_PERIOD_US: u64 = 100_000;
/// Mesos's floor for shares and quota (0.01 CPU).
const MIN_CPUS: f64 = 0.01;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy: neither v1 cpu/cpuacct/memory/pids mounts nor a cgroup2 \
         mount with the cpu, memory and pids controllers was found in /proc/self/mountinfo"
    )]
    NoHierarchy,
    #[error("{action} {path}: {source}; the agent needs root (or delegated cgroups) to run tasks")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{action} cgroup {path}: {source}; the agent needs root (or delegated cgroups) to run tasks"
    )]
    Cgroup {
        action: &'static str,
        path: String,
        source: cgroups_rs::error::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn cg_err<'a>(
    action: &'static str,
    path: &'a str,
) -> impl FnOnce(cgroups_rs::error::Error) -> CgroupError + 'a {
    move |source| CgroupError::Cgroup {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What a task's cgroup enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// CPUs the task was given (shares always; a hard quota when `cfs_quota`).
    pub cpus: f64,
    pub cfs_quota: bool,
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
}

impl Limits {
    pub fn cpu_shares(&self) -> u64 {
        (self.cpus.max(MIN_CPUS) * SHARES_PER_CPU).round() as u64
    }

    /// v2 `cpu.weight` for the same shares (the kernel's own conversion).
    pub fn cpu_weight(&self) -> u64 {
        let shares = self.cpu_shares().clamp(2, 262_144);
        1 + ((shares - 2) * 9999) / 262_142
    }

    pub fn cfs_quota_us(&self) -> Option<u64> {
        self.cfs_quota
            .then(|| (self.cpus.max(MIN_CPUS) * CFS_PERIOD_US as f64).round() as u64)
    }
}

/// Usage of a task's cgroup.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
}

/// Where the hierarchies are mounted.
#[derive(Clone, Debug, PartialEq)]
pub enum Driver {
    V1 {
        cpu: PathBuf,
        cpuacct: PathBuf,
        memory: PathBuf,
        pids: PathBuf,
        freezer: Option<PathBuf>,
    },
    V2 {
        root: PathBuf,
    },
}

/// The hierarchies cgroups-rs works in, each controller at its mount: those of a task's own
/// cgroup, or the v1 freezer alone (where a task's processes are frozen to be killed).
#[derive(Clone, Debug)]
pub enum Mounts {
    Task(Driver),
    Freezer(PathBuf),
}

impl Hierarchy for Mounts {
    fn subsystems(&self) -> Vec<Subsystem> {
        match self {
            // The freezer is not part of a task's cgroup: it is joined only to kill several
            // processes at once (see `TaskCgroup::kill_all`).
            //
            // Nor is a separately mounted cpuacct: where it is mounted with cpu (most hosts),
            // the cpu directory has `cpuacct.usage`; where it is its own hierarchy (this
            // project's hybrid hosts) a task's CPU time is read from its processes instead
            // (`TaskCgroup::usage`). Each hierarchy costs every launch a cgroup mkdir and a
            // cgroup.procs write, both serialised by the kernel's cgroup locks.
            Mounts::Task(Driver::V1 {
                cpu, memory, pids, ..
            }) => vec![
                Subsystem::Cpu(CpuController::new(cpu.clone(), false)),
                Subsystem::Mem(MemController::new(memory.clone(), false)),
                Subsystem::Pid(PidController::new(pids.clone(), false)),
            ],
            Mounts::Task(Driver::V2 { root }) => vec![
                Subsystem::Cpu(CpuController::new(root.clone(), true)),
                Subsystem::Mem(MemController::new(root.clone(), true)),
                Subsystem::Pid(PidController::new(root.clone(), true)),
            ],
            Mounts::Freezer(root) => vec![Subsystem::Freezer(FreezerController::new(
                root.clone(),
                false,
            ))],
        }
    }

    fn root(&self) -> PathBuf {
        match self {
            Mounts::Task(Driver::V1 { cpu, .. }) => cpu.clone(),
            Mounts::Task(Driver::V2 { root }) | Mounts::Freezer(root) => root.clone(),
        }
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().unwrap_or(Path::new(""));
        Cgroup::load(Box::new(self.clone()), parent)
    }

    fn v2(&self) -> bool {
        matches!(self, Mounts::Task(Driver::V2 { .. }))
    }
}

/// The v2 controllers a task cgroup needs, enabled for children at each level above it.
const V2_CONTROLLERS: &str = "+cpu +memory +pids";

impl Driver {
    /// Finds the hierarchies from `/proc/self/mountinfo`: v1 when the memory controller is
    /// mounted as v1 (hybrid hosts), v2 otherwise.
    pub fn detect() -> Result<Driver, CgroupError> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err("reading", Path::new("/proc/self/mountinfo")))?;
        Driver::from_mountinfo(&text).ok_or(CgroupError::NoHierarchy)
    }

    pub fn from_mountinfo(text: &str) -> Option<Driver> {
        let mut v1: std::collections::HashMap<&str, PathBuf> = Default::default();
        let mut v2 = None;
        for line in text.lines() {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let options = right.nth(1).unwrap_or("");
            match fs_type {
                "cgroup" => {
                    for option in options.split(',') {
                        if matches!(option, "cpu" | "cpuacct" | "memory" | "pids" | "freezer") {
                            v1.insert(option, PathBuf::from(mount_point));
                        }
                    }
                }
                "cgroup2" => v2 = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        if let (Some(cpu), Some(cpuacct), Some(memory), Some(pids)) = (
            v1.get("cpu"),
            v1.get("cpuacct"),
            v1.get("memory"),
            v1.get("pids"),
        ) {
            return Some(Driver::V1 {
                cpu: cpu.clone(),
                cpuacct: cpuacct.clone(),
                memory: memory.clone(),
                pids: pids.clone(),
                freezer: v1.get("freezer").cloned(),
            });
        }
        v2.map(|root| Driver::V2 { root })
    }

    fn hierarchy(&self) -> Box<dyn Hierarchy> {
        Box::new(Mounts::Task(self.clone()))
    }

    /// The v1 freezer's mount, where it is mounted (never part of a task's own cgroup).
    fn freezer_root(&self) -> Option<&PathBuf> {
        match self {
            Driver::V1 {
                freezer: Some(root),
                ..
            } => Some(root),
            _ => None,
        }
    }

    /// The first hierarchy's root (v1: cpu), where every task cgroup has a directory.
    fn first_root(&self) -> &Path {
        match self {
            Driver::V1 { cpu, .. } => cpu,
            Driver::V2 { root } => root,
        }
    }

    /// Removes the (empty) parent directory tasks were created under; errors are ignored
    /// because another user of the parent may still hold tasks there.
    pub fn remove_parent(&self, parent: &str) {
        let _ = Cgroup::load(self.hierarchy(), parent).delete();
        if let Some(root) = self.freezer_root() {
            // Where `kill_all` froze several processes of a task.
            let _ = fs::remove_dir(root.join(parent));
        }
    }

    /// Kills every task cgroup under `parent`, waits (up to 2 s each) until it is empty, and
    /// removes it and then `parent`: what a failed test or benchmark leaves behind goes.
    pub fn remove_all(&self, parent: &str) {
        for (_, cgroup) in self.existing(parent) {
            cgroup.kill_all();
            for _ in 0..200 {
                if cgroup.pids().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = cgroup.destroy();
        }
        self.remove_parent(parent);
    }

    /// The task cgroups that exist under `parent`, by name (a previous run's leftovers when
    /// the agent starts).
    pub fn existing(&self, parent: &str) -> Vec<(String, TaskCgroup)> {
        let Ok(entries) = fs::read_dir(self.first_root().join(parent)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let cgroup = TaskCgroup {
                    driver: self.clone(),
                    path: format!("{parent}/{name}"),
                    memory_limit: None,
                };
                (name, cgroup)
            })
            .collect()
    }

    /// The cgroup `<parent>/<name>` as a task of a previous run of the agent made it (for
    /// reattaching to it), whether or not it still exists.
    pub fn task_cgroup(&self, parent: &str, name: &str, memory_limit: Option<u64>) -> TaskCgroup {
        TaskCgroup {
            driver: self.clone(),
            path: format!("{parent}/{name}"),
            memory_limit,
        }
    }

    /// The cgroup at `path` (as /proc/<pid>/cgroup names it: from the hierarchy's root), to
    /// read its usage.
    pub fn cgroup_at(&self, path: &str) -> TaskCgroup {
        TaskCgroup {
            driver: self.clone(),
            path: path.trim_start_matches('/').to_string(),
            memory_limit: None,
        }
    }

    pub fn version(&self) -> u8 {
        match self {
            Driver::V1 { .. } => 1,
            Driver::V2 { .. } => 2,
        }
    }

    /// Creates `<parent>/<name>` (in every v1 controller) with `limits` applied.
    pub fn create(
        &self,
        parent: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<TaskCgroup, CgroupError> {
        let path = format!("{parent}/{name}");
        let cgroup = match self {
            Driver::V2 { root } => {
                // cgroups-rs would enable the controllers its fixed root lists: the levels
                // down to the task are made here, with ours enabled in each.
                let mut at = root.clone();
                for segment in Path::new(parent).components() {
                    let control = at.join("cgroup.subtree_control");
                    fs::write(&control, V2_CONTROLLERS).map_err(io_err("writing", &control))?;
                    at = at.join(segment);
                    fs::create_dir_all(&at).map_err(io_err("creating", &at))?;
                }
                let control = at.join("cgroup.subtree_control");
                fs::write(&control, V2_CONTROLLERS).map_err(io_err("writing", &control))?;
                let dir = at.join(name);
                fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
                Cgroup::load(self.hierarchy(), &path)
            }
            Driver::V1 { .. } => {
                Cgroup::new(self.hierarchy(), &path).map_err(cg_err("creating", &path))?
            }
        };
        // cgroups-rs logs a directory it could not make and goes on: check it is there.
        for sub in cgroup.subsystems() {
            let dir = sub.to_controller().path();
            if !dir.is_dir() {
                return Err(CgroupError::Io {
                    action: "creating",
                    path: dir.to_path_buf(),
                    source: io::Error::from(io::ErrorKind::PermissionDenied),
                });
            }
        }
        let applied = (|| {
            let cpu: &CpuController = cgroup.controller_of().expect("a cpu controller");
            let v2 = matches!(self, Driver::V2 { .. });
            cpu.set_shares(if v2 {
                limits.cpu_weight()
            } else {
                limits.cpu_shares()
            })?;
            // A new cgroup's CFS period is the kernel's default, 100 ms (CFS_PERIOD_US): only
            // the quota is written (each write takes the scheduler's bandwidth locks).
            if let Some(quota) = limits.cfs_quota_us() {
                cpu.set_cfs_quota(quota as i64)?;
            }
            let memory: &MemController = cgroup.controller_of().expect("a memory controller");
            if let Some(bytes) = limits.memory_bytes {
                memory.set_limit(bytes as i64)?;
            }
            let pids: &PidController = cgroup.controller_of().expect("a pids controller");
            if let Some(max) = limits.pids_max {
                pids.set_pid_max(MaxValue::Value(max as i64))?;
            }
            Ok(())
        })();
        if let Err(source) = applied {
            let _ = cgroup.delete();
            return Err(CgroupError::Cgroup {
                action: "limiting",
                path,
                source,
            });
        }
        Ok(TaskCgroup {
            driver: self.clone(),
            path,
            memory_limit: limits.memory_bytes,
        })
    }
}

/// A task's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Clone, Debug)]
pub struct TaskCgroup {
    driver: Driver,
    /// Relative to each hierarchy's root: `<parent>/<framework>.<task>`.
    path: String,
    memory_limit: Option<u64>,
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.events, memory.oom_control, cpu.stat).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl TaskCgroup {
    fn cgroup(&self) -> Cgroup {
        Cgroup::load(self.driver.hierarchy(), &self.path)
    }

    /// The cgroup's directory in each hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .cgroup()
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().to_path_buf())
            .collect();
        dirs.dedup();
        dirs
    }

    /// The directory of one controller (v2: the one directory).
    fn dir(&self, controller: fn(&Driver) -> Option<&PathBuf>) -> PathBuf {
        match &self.driver {
            Driver::V2 { root } => root.join(&self.path),
            v1 => controller(v1).map_or_else(PathBuf::new, |root| root.join(&self.path)),
        }
    }

    /// The files a process is placed in the cgroup through (one per hierarchy), for a
    /// process that places itself or its child (the task supervisor).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Whether the cgroup exists (in its first hierarchy).
    pub fn exists(&self) -> bool {
        self.dirs().first().is_some_and(|d| d.is_dir())
    }

    /// Places process `pid` (and its threads) in the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        self.cgroup()
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(cg_err("joining", &self.path))
    }

    /// Every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        self.cgroup()
            .procs()
            .into_iter()
            .map(|p| p.pid as i32)
            .collect()
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self.driver {
            Driver::V1 { .. } => ("memory.oom_control", "oom_kill"),
            Driver::V2 { .. } => ("memory.events", "oom_kill"),
        };
        read_keyed(&self.dir(memory_root).join(file), key).unwrap_or(0) > 0
    }

    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    pub fn usage(&self) -> Usage {
        match &self.driver {
            Driver::V1 { cpu, cpuacct, .. } => Usage {
                cpu_seconds: if cpu == cpuacct {
                    read_u64(&cpu.join(&self.path).join("cpuacct.usage")).unwrap_or(0) as f64 / 1e9
                } else {
                    self.cpu_seconds_of_processes()
                },
                memory_bytes: read_u64(&self.dir(memory_root).join("memory.usage_in_bytes"))
                    .unwrap_or(0),
                memory_limit_bytes: self.memory_limit,
                pids: read_u64(&self.dir(pids_root).join("pids.current")).unwrap_or(0),
            },
            Driver::V2 { root } => {
                let dir = root.join(&self.path);
                Usage {
                    cpu_seconds: read_keyed(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0)
                        as f64
                        / 1e6,
                    memory_bytes: read_u64(&dir.join("memory.current")).unwrap_or(0),
                    memory_limit_bytes: self.memory_limit,
                    pids: read_u64(&dir.join("pids.current")).unwrap_or(0),
                }
            }
        }
    }

    /// CPU time of the task's processes: their own and their reaped children's (what
    /// cpuacct would count, less children reaped by a process that exited since).
    fn cpu_seconds_of_processes(&self) -> f64 {
        let ticks: u64 = self
            .pids()
            .into_iter()
            .filter_map(|pid| procfs::process::Process::new(pid).ok()?.stat().ok())
            .map(|s| s.utime + s.stime + s.cutime.max(0) as u64 + s.cstime.max(0) as u64)
            .sum();
        ticks as f64 / procfs::ticks_per_second() as f64
    }

    /// SIGKILLs every process in the cgroup. v2 uses `cgroup.kill`. On v1 a lone process is
    /// killed directly; several (which may fork while being killed) are first moved into a
    /// freezer cgroup of their own and frozen, where the freezer is mounted, and the whole is
    /// repeated until the cgroup is empty. A task's cgroup joins the freezer only then: most
    /// tasks are one process, and making and freezing a freezer cgroup for each would cost
    /// every launch and every kill.
    pub fn kill_all(&self) {
        let cgroup = self.cgroup();
        if matches!(self.driver, Driver::V2 { .. })
            && cgroup.kill().is_ok()
            && self.pids().is_empty()
        {
            return;
        }
        let sigkill = |pids: &[i32]| {
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        };
        let freezer = self.driver.freezer_root().cloned().map(Mounts::Freezer);
        for _ in 0..100 {
            let pids = self.pids();
            match (&freezer, pids.len()) {
                (_, 0) => break,
                (Some(mount), n) if n > 1 => {
                    let Ok(frozen) = Cgroup::new(Box::new(mount.clone()), &self.path) else {
                        sigkill(&pids);
                        continue;
                    };
                    for pid in &pids {
                        let _ = frozen.add_task_by_tgid(CgroupPid::from(*pid as u64));
                    }
                    let controller: Option<&FreezerController> = frozen.controller_of();
                    if let Some(f) = controller {
                        let _ = f.freeze();
                    }
                    sigkill(&self.pids());
                    if let Some(f) = controller {
                        let _ = f.thaw();
                    }
                }
                _ => sigkill(&pids),
            }
            std::thread::yield_now();
        }
    }

    /// The freezer cgroup `kill_all` may have made (v1), removed with the rest.
    fn freezer_dir(&self) -> Option<PathBuf> {
        self.driver.freezer_root().map(|root| root.join(&self.path))
    }

    /// Removes the directories (after the processes are gone).
    pub fn destroy(&self) -> Result<(), CgroupError> {
        for dir in self.dirs().into_iter().chain(self.freezer_dir()) {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // A directory built by hand (tests of the v2 layout) holds regular files.
                Err(_) if !is_cgroupfs(&dir) => {
                    fs::remove_dir_all(&dir).map_err(io_err("removing", &dir))?
                }
                Err(e) => return Err(io_err("removing", &dir)(e)),
            }
        }
        Ok(())
    }
}

fn memory_root(d: &Driver) -> Option<&PathBuf> {
    match d {
        Driver::V1 { memory, .. } => Some(memory),
        Driver::V2 { root } => Some(root),
    }
}

fn pids_root(d: &Driver) -> Option<&PathBuf> {
    match d {
        Driver::V1 { pids, .. } => Some(pids),
        Driver::V2 { root } => Some(root),
    }
}

fn is_cgroupfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == nix::sys::statfs::CGROUP_SUPER_MAGIC || t == nix::sys::statfs::CGROUP2_SUPER_MAGIC
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct
35 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
";

    #[test]
    fn hybrid_hosts_use_v1_and_pure_v2_hosts_v2() {
        let d = Driver::from_mountinfo(HYBRID).unwrap();
        assert_eq!(d.version(), 1);
        let Driver::V1 { cpu, cpuacct, .. } = d else {
            unreachable!()
        };
        assert_eq!(cpu, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(cpuacct, PathBuf::from("/sys/fs/cgroup/cpuacct"));
        let v2 = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Driver::from_mountinfo(v2),
            Some(Driver::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
        assert_eq!(
            Driver::from_mountinfo("1 0 0:1 / / rw - ext4 sda rw\n"),
            None
        );
    }

    #[test]
    fn limits_follow_mesos_conversions() {
        let l = Limits {
            cpus: 0.5,
            cfs_quota: true,
            memory_bytes: Some(64 << 20),
            pids_max: Some(100),
        };
        assert_eq!(l.cpu_shares(), 512);
        assert_eq!(l.cfs_quota_us(), Some(50_000));
        assert_eq!(l.cpu_weight(), 1 + (510 * 9999) / 262_142);
    }

    #[test]
    fn the_v2_driver_writes_and_reads_a_unified_layout() {
        // This host keeps cpu/memory/pids on v1, so the v2 driver runs against a layout made here.
        let root = std::env::temp_dir().join(format!("orca-cgroup2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let driver = Driver::V2 { root: root.clone() };
        let limits = Limits {
            cpus: 1.5,
            cfs_quota: true,
            memory_bytes: Some(256 << 20),
            pids_max: Some(64),
        };
        // The files a kernel makes in a new cgroup that are written, not created, here.
        let dir = root.join("orca/fw.t1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.kill"), "").unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("cpu.max"), "max 100000\n").unwrap();
        let cg = driver.create("orca", "fw.t1", &limits).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("cpu.weight"), limits.cpu_weight().to_string());
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("pids.max"), "64");
        assert_eq!(
            std::fs::read_to_string(root.join("orca/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert_eq!(cg.dirs(), vec![dir.clone()]);
        cg.add(4242).unwrap();
        assert_eq!(read("cgroup.procs"), "4242");
        assert_eq!(cg.pids(), vec![4242]);
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        // What the kernel would write: usage and an OOM kill.
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\n",
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "1048576\n").unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        )
        .unwrap();
        let usage = cg.usage();
        assert_eq!(usage.cpu_seconds, 2.5);
        assert_eq!(usage.memory_bytes, 1 << 20);
        assert_eq!(usage.pids, 3);
        assert!(cg.oom_killed());
        cg.kill_all();
        assert_eq!(read("cgroup.kill"), "1");
        cg.destroy().unwrap();
        assert!(!dir.exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Why the driver hands cgroups-rs its own hierarchy: cgroups-rs's unified hierarchy
    /// lives at `/sys/fs/cgroup` whatever the host (on this hybrid host that path is a tmpfs
    /// of v1 mounts), so a v2 layout anywhere else cannot be driven through it.
    #[test]
    fn cgroups_rs_fixes_the_unified_root() {
        use cgroups_rs::hierarchies::V2;
        assert_eq!(V2::new().root(), PathBuf::from("/sys/fs/cgroup"));
        let ours = Mounts::Task(Driver::V2 {
            root: "/tmp/elsewhere".into(),
        });
        assert_eq!(ours.root(), PathBuf::from("/tmp/elsewhere"));
        assert!(ours.v2());
    }
}
