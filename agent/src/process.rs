//! The process table from /proc, with CPU utilisation between two scans.
use std::{
    collections::HashMap,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use procfs::process::{FDTarget, Process};

use crate::cgroup;

/// One process as scanned from /proc.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub cmdline: Vec<String>,
    pub uid: u32,
    pub user: String,
    /// Percent of one core since the previous scan.
    pub cpu_percent: f64,
    /// User + system CPU time since the process started.
    pub cpu_seconds_total: f64,
    pub rss_bytes: u64,
    pub vsz_bytes: u64,
    pub open_fds: u32,
    pub cgroup: String,
    pub started_unix_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct CpuTicks {
    ticks: u64,
    at: Instant,
}

/// What rarely changes about a process, re-read every `REFRESH_EVERY` scans (and at once when
/// its command name changes, i.e. after an exec).
#[derive(Debug, Clone)]
struct Cached {
    starttime: u64,
    comm: String,
    cmdline: Vec<String>,
    uid: u32,
    user: String,
    open_fds: u32,
    cgroup: String,
    age: u32,
}

const REFRESH_EVERY: u32 = 5;

/// Scans /proc; remembers CPU ticks and user names between scans.
#[derive(Debug)]
pub struct ProcessScanner {
    previous: HashMap<u32, CpuTicks>,
    cache: HashMap<u32, Cached>,
    users: HashMap<u32, String>,
    ticks_per_second: u64,
    page_size: u64,
    boot_unix_ms: i64,
}

impl Default for ProcessScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessScanner {
    pub fn new() -> Self {
        let boot = procfs::boot_time_secs().unwrap_or(0) as i64;
        Self {
            previous: HashMap::new(),
            cache: HashMap::new(),
            users: HashMap::new(),
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
            boot_unix_ms: boot * 1000,
        }
    }

    /// Scans every process. With `socket_inodes`, also fills `inode -> pid` for every socket
    /// the processes hold (used to attribute connections in /proc mode and at start).
    pub fn scan(&mut self, mut socket_inodes: Option<&mut HashMap<u64, u32>>) -> Vec<ProcessInfo> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        let Ok(all) = procfs::process::all_processes() else {
            return out;
        };
        for process in all.flatten() {
            let Some(info) = self.read(&process, now, &mut seen, socket_inodes.as_deref_mut())
            else {
                continue;
            };
            out.push(info);
        }
        self.cache.retain(|pid, _| seen.contains_key(pid));
        self.previous = seen;
        out
    }

    fn read(
        &mut self,
        process: &Process,
        now: Instant,
        seen: &mut HashMap<u32, CpuTicks>,
        socket_inodes: Option<&mut HashMap<u64, u32>>,
    ) -> Option<ProcessInfo> {
        let stat = process.stat().ok()?;
        let pid = stat.pid as u32;
        let ticks = stat.utime + stat.stime;
        let cpu_percent = match self.previous.get(&pid) {
            Some(prev) if ticks >= prev.ticks => {
                let secs = now.duration_since(prev.at).as_secs_f64();
                if secs > 0.0 {
                    100.0 * (ticks - prev.ticks) as f64 / self.ticks_per_second as f64 / secs
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        seen.insert(pid, CpuTicks { ticks, at: now });
        let fresh = match self.cache.get_mut(&pid) {
            Some(c)
                if c.starttime == stat.starttime
                    && c.comm == stat.comm
                    && c.age < REFRESH_EVERY =>
            {
                c.age += 1;
                socket_inodes.is_none()
            }
            _ => false,
        };
        if !fresh {
            let uid = process.uid().unwrap_or(0);
            let user = self
                .users
                .entry(uid)
                .or_insert_with(|| {
                    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                        .unwrap_or_else(|| uid.to_string())
                })
                .clone();
            let open_fds = match socket_inodes {
                Some(map) => match process.fd() {
                    Ok(fds) => {
                        let mut count = 0;
                        for fd in fds.flatten() {
                            count += 1;
                            if let FDTarget::Socket(inode) = fd.target {
                                map.insert(inode, pid);
                            }
                        }
                        count
                    }
                    Err(_) => 0,
                },
                None => process.fd_count().unwrap_or(0) as u32,
            };
            let groups = process.cgroups().map(|g| g.0).unwrap_or_default();
            self.cache.insert(
                pid,
                Cached {
                    starttime: stat.starttime,
                    comm: stat.comm.clone(),
                    cmdline: process.cmdline().unwrap_or_default(),
                    uid,
                    user,
                    open_fds,
                    cgroup: cgroup::cgroup_path(&groups),
                    age: 0,
                },
            );
        }
        let cached = self.cache.get(&pid)?;
        Some(ProcessInfo {
            pid,
            ppid: stat.ppid as u32,
            comm: stat.comm.clone(),
            cmdline: cached.cmdline.clone(),
            uid: cached.uid,
            user: cached.user.clone(),
            cpu_percent,
            cpu_seconds_total: ticks as f64 / self.ticks_per_second as f64,
            rss_bytes: stat.rss * self.page_size,
            vsz_bytes: stat.vsize,
            open_fds: cached.open_fds,
            cgroup: cached.cgroup.clone(),
            started_unix_ms: self.boot_unix_ms
                + (stat.starttime * 1000 / self.ticks_per_second) as i64,
        })
    }
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_unix_ms() -> i64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_itself_with_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut scanner = ProcessScanner::new();
        let mut inodes = HashMap::new();
        let all = scanner.scan(Some(&mut inodes));
        let me = std::process::id();
        let info = all
            .iter()
            .find(|p| p.pid == me)
            .expect("own process listed");
        assert!(info.rss_bytes > 0);
        assert!(info.open_fds >= 3);
        assert!(!info.cmdline.is_empty());
        assert!(
            inodes.values().any(|pid| *pid == me),
            "own socket inode mapped"
        );
        drop(listener);
    }
}
