//! Which cgroup a process is in and which container that cgroup belongs to.

use procfs::{ProcessCGroup, process::Process};

/// The cgroup path of process `pid` (`/` when it cannot be read: the process is gone).
pub fn of_process(pid: u32) -> String {
    let groups = Process::new(pid as i32)
        .and_then(|p| p.cgroups())
        .map(|g| g.0)
        .unwrap_or_default();
    cgroup_path(&groups)
}

/// The cgroup path of a process from its `/proc/<pid>/cgroup` entries (procfs parses them).
/// The unified (v2) path is used when the process is placed there; on hybrid hosts, where cpu
/// and memory are v1 controllers, the memory (else cpu, else pids) controller's path is used.
pub fn cgroup_path(groups: &[ProcessCGroup]) -> String {
    let mut v2 = None;
    let mut v1: Option<(u8, &str)> = None;
    for group in groups {
        let path = group.pathname.as_str();
        if group.controllers.is_empty() {
            v2 = Some(path);
            continue;
        }
        let rank = group
            .controllers
            .iter()
            .filter_map(|c| match c.as_str() {
                "memory" => Some(0),
                "cpu" => Some(1),
                "pids" => Some(2),
                _ => None,
            })
            .min();
        if let Some(rank) = rank
            && v1.is_none_or(|(best, _)| rank < best)
        {
            v1 = Some((rank, path));
        }
    }
    match (v2, v1) {
        (Some(path), _) if path != "/" => path.to_string(),
        (_, Some((_, path))) => path.to_string(),
        (Some(path), None) => path.to_string(),
        (None, None) => "/".to_string(),
    }
}

/// A container recognised from a cgroup path by its runtime's naming scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub runtime: &'static str,
    pub id: String,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Recognises docker (`/docker/<id>`, `docker-<id>.scope`), CRI containerd and CRI-O
/// (`cri-containerd-<id>.scope`, `crio-<id>.scope`, `/kubepods/.../<id>`) naming.
/// containerd's own naming (`/<namespace>/<id>`) carries no marker; those cgroups are
/// matched against the containers containerd lists.
pub fn container_from_cgroup(path: &str) -> Option<ContainerRef> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let kube = segments.iter().any(|s| s.starts_with("kubepods"));
    for (i, segment) in segments.iter().enumerate().rev() {
        let (runtime, candidate) = if let Some(rest) = segment.strip_prefix("docker-") {
            ("docker", rest.trim_end_matches(".scope"))
        } else if let Some(rest) = segment.strip_prefix("cri-containerd-") {
            ("cri", rest.trim_end_matches(".scope"))
        } else if let Some(rest) = segment.strip_prefix("crio-") {
            ("cri", rest.trim_end_matches(".scope"))
        } else if i > 0 && segments[i - 1] == "docker" {
            ("docker", *segment)
        } else if kube {
            ("cri", *segment)
        } else {
            continue;
        };
        if is_container_id(candidate) {
            return Some(ContainerRef {
                runtime,
                id: candidate.to_string(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Entries as `/proc/<pid>/cgroup` lists them (`hierarchy:controllers:path`).
    fn groups(text: &str) -> Vec<ProcessCGroup> {
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(3, ':');
                ProcessCGroup {
                    hierarchy: parts.next().unwrap().parse().unwrap(),
                    controllers: parts
                        .next()
                        .unwrap()
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    pathname: parts.next().unwrap().to_owned(),
                }
            })
            .collect()
    }

    #[test]
    fn picks_v2_path_when_placed_there() {
        let text = "12:memory:/\n0::/system.slice/app.service";
        assert_eq!(cgroup_path(&groups(text)), "/system.slice/app.service");
    }

    #[test]
    fn falls_back_to_v1_memory_then_cpu() {
        let text = "5:cpu,cpuacct:/cpu-group\n4:memory:/mem-group\n1:name=systemd:/x\n0::/";
        assert_eq!(cgroup_path(&groups(text)), "/mem-group");
        let text = "5:cpu,cpuacct:/cpu-group\n0::/";
        assert_eq!(cgroup_path(&groups(text)), "/cpu-group");
        assert_eq!(cgroup_path(&[]), "/");
    }

    #[test]
    fn this_process_has_a_cgroup() {
        assert!(of_process(std::process::id()).starts_with('/'));
    }

    #[test]
    fn recognises_runtimes() {
        for (path, runtime) in [
            (format!("/docker/{ID}"), "docker"),
            (format!("/system.slice/docker-{ID}.scope"), "docker"),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope"),
                "cri",
            ),
            (format!("/kubepods/burstable/pod1234/{ID}"), "cri"),
        ] {
            let found = container_from_cgroup(&path).expect(&path);
            assert_eq!(found.runtime, runtime, "{path}");
            assert_eq!(found.id, ID);
        }
        assert_eq!(container_from_cgroup("/user.slice/session-1.scope"), None);
        assert_eq!(container_from_cgroup("/docker/short"), None);
    }
}
