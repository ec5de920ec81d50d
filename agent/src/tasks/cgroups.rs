//! One cgroup per task: CPU shares and CFS quota, a memory limit, a pids limit; usage and OOM
//! kills read back; every process killed at the end.
//!
//! Two drivers: cgroup v1 (a directory per controller, as on this host's hybrid layout where
//! `cpu` and `cpuacct` are separate mounts) and v2 (one unified directory). Both take their
//! roots as paths, so the v2 driver is tested against a layout built in a temporary
//! directory on hosts whose kernel keeps the controllers on v1. (cgroups-rs fixes the v2
//! mount point, which is why this is written against the files directly.)
use std::{
    fs, io,
    path::{Path, PathBuf},
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
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_path_buf(),
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

    /// The hierarchy roots a task cgroup has a directory in: every v1 controller used, or the
    /// one v2 root.
    fn roots(&self) -> Vec<&PathBuf> {
        match self {
            Driver::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
                freezer,
            } => [
                Some(cpu),
                Some(cpuacct),
                Some(memory),
                Some(pids),
                freezer.as_ref(),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Driver::V2 { root } => vec![root],
        }
    }

    /// Removes the (empty) parent directory tasks were created under; errors are ignored
    /// because another user of the parent may still hold tasks there.
    pub fn remove_parent(&self, parent: &str) {
        for root in self.roots() {
            let _ = fs::remove_dir(root.join(parent));
        }
    }

    /// The task cgroups that exist under `parent`, by name (a previous run's leftovers when
    /// the agent starts).
    pub fn existing(&self, parent: &str) -> Vec<(String, TaskCgroup)> {
        let roots = self.roots();
        // Names are listed in the first hierarchy (v1: cpu), where every task cgroup exists.
        let Ok(entries) = fs::read_dir(roots[0].join(parent)) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let mut dirs: Vec<PathBuf> = roots
                    .iter()
                    .map(|root| root.join(parent).join(&name))
                    .collect();
                dirs.dedup();
                let cgroup = TaskCgroup {
                    version: self.version(),
                    dirs,
                    memory_limit: None,
                };
                (name, cgroup)
            })
            .collect()
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
        let write = |dir: &Path, file: &str, value: String| -> Result<(), CgroupError> {
            let path = dir.join(file);
            fs::write(&path, value).map_err(io_err("writing", &path))
        };
        let make = |root: &Path| -> Result<PathBuf, CgroupError> {
            let dir = root.join(parent).join(name);
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            Ok(dir)
        };
        match self {
            Driver::V1 {
                cpu,
                cpuacct,
                memory,
                pids,
                freezer,
            } => {
                let cpu_dir = make(cpu)?;
                write(&cpu_dir, "cpu.shares", limits.cpu_shares().to_string())?;
                if let Some(quota) = limits.cfs_quota_us() {
                    write(&cpu_dir, "cpu.cfs_period_us", CFS_PERIOD_US.to_string())?;
                    write(&cpu_dir, "cpu.cfs_quota_us", quota.to_string())?;
                }
                let cpuacct_dir = make(cpuacct)?;
                let memory_dir = make(memory)?;
                if let Some(bytes) = limits.memory_bytes {
                    write(&memory_dir, "memory.limit_in_bytes", bytes.to_string())?;
                }
                let pids_dir = make(pids)?;
                if let Some(max) = limits.pids_max {
                    write(&pids_dir, "pids.max", max.to_string())?;
                }
                let freezer_dir = freezer.as_deref().map(make).transpose()?;
                let mut dirs = vec![cpu_dir, cpuacct_dir, memory_dir, pids_dir];
                dirs.extend(freezer_dir);
                dirs.dedup();
                Ok(TaskCgroup {
                    version: 1,
                    dirs,
                    memory_limit: limits.memory_bytes,
                })
            }
            Driver::V2 { root } => {
                // Controllers must be enabled for children at each level below the root.
                let mut at = root.clone();
                for segment in Path::new(parent).components() {
                    let control = at.join("cgroup.subtree_control");
                    fs::write(&control, "+cpu +memory +pids")
                        .map_err(io_err("writing", &control))?;
                    at = at.join(segment);
                    fs::create_dir_all(&at).map_err(io_err("creating", &at))?;
                }
                let control = at.join("cgroup.subtree_control");
                fs::write(&control, "+cpu +memory +pids").map_err(io_err("writing", &control))?;
                let dir = make(root)?;
                write(&dir, "cpu.weight", limits.cpu_weight().to_string())?;
                write(
                    &dir,
                    "cpu.max",
                    match limits.cfs_quota_us() {
                        Some(quota) => format!("{quota} {CFS_PERIOD_US}"),
                        None => format!("max {CFS_PERIOD_US}"),
                    },
                )?;
                write(
                    &dir,
                    "memory.max",
                    limits
                        .memory_bytes
                        .map_or("max".to_string(), |b| b.to_string()),
                )?;
                write(
                    &dir,
                    "pids.max",
                    limits.pids_max.map_or("max".to_string(), |p| p.to_string()),
                )?;
                Ok(TaskCgroup {
                    version: 2,
                    dirs: vec![dir],
                    memory_limit: limits.memory_bytes,
                })
            }
        }
    }
}

/// A task's cgroup (one directory per v1 controller, or one v2 directory).
#[derive(Clone, Debug)]
pub struct TaskCgroup {
    version: u8,
    /// v1: cpu, cpuacct, memory, pids[, freezer]; v2: the one directory.
    dirs: Vec<PathBuf>,
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
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files a new process writes itself into before it execs.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    pub fn add(&self, pid: u32) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            fs::write(&file, pid.to_string()).map_err(io_err("writing", &file))?;
        }
        Ok(())
    }

    /// Every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let dir = match self.version {
            1 => self.dirs.get(2).unwrap_or(&self.dirs[0]),
            _ => &self.dirs[0],
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether the kernel OOM-killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        match self.version {
            1 => {
                let memory = &self.dirs[2];
                read_keyed(&memory.join("memory.oom_control"), "oom_kill").unwrap_or(0) > 0
            }
            _ => read_keyed(&self.dirs[0].join("memory.events"), "oom_kill").unwrap_or(0) > 0,
        }
    }

    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    pub fn usage(&self) -> Usage {
        match self.version {
            1 => Usage {
                cpu_seconds: read_u64(&self.dirs[1].join("cpuacct.usage")).unwrap_or(0) as f64
                    / 1e9,
                memory_bytes: read_u64(&self.dirs[2].join("memory.usage_in_bytes")).unwrap_or(0),
                memory_limit_bytes: self.memory_limit,
                pids: read_u64(&self.dirs[3].join("pids.current")).unwrap_or(0),
            },
            _ => {
                let dir = &self.dirs[0];
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

    /// SIGKILLs every process in the cgroup. v2 uses `cgroup.kill`; v1 freezes the cgroup
    /// first (when the freezer is mounted) so nothing forks away between listing and killing.
    pub fn kill_all(&self) {
        if self.version == 2 {
            let kill = self.dirs[0].join("cgroup.kill");
            if fs::write(&kill, "1").is_ok() && self.pids().is_empty() {
                return;
            }
        }
        let freezer = (self.version == 1 && self.dirs.len() > 4).then(|| self.dirs[4].clone());
        if let Some(f) = &freezer {
            let _ = fs::write(f.join("freezer.state"), "FROZEN");
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(f) = &freezer {
            let _ = fs::write(f.join("freezer.state"), "THAWED");
        }
    }

    /// Removes the directories (after the processes are gone).
    pub fn destroy(&self) -> Result<(), CgroupError> {
        for dir in &self.dirs {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // A directory built by hand (tests of the v2 layout) holds regular files.
                Err(_) if !is_cgroupfs(dir) => {
                    fs::remove_dir_all(dir).map_err(io_err("removing", dir))?
                }
                Err(e) => return Err(io_err("removing", dir)(e)),
            }
        }
        Ok(())
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
        let cg = driver.create("orca", "fw.t1", &limits).unwrap();
        let dir = root.join("orca/fw.t1");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("cpu.max"), "150000 100000");
        assert_eq!(read("cpu.weight"), limits.cpu_weight().to_string());
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("pids.max"), "64");
        assert_eq!(
            std::fs::read_to_string(root.join("orca/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert_eq!(cg.procs_files(), vec![dir.join("cgroup.procs")]);
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
}
