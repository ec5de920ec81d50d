//! What this host offers to the cluster, as Mesos agents compute it: every CPU, memory less a
//! reserve for the system, the size of the work directory's filesystem less a reserve (its
//! total size, as Mesos's `fs::size`, not its free space, which changes from run to run), the
//! ports 31000-32000, and GPUs when NVIDIA devices are present. `--resources` text overrides
//! any of them and adds custom kinds (e.g. `net_bw:10000`).
use std::path::Path;

use orca_resources::{Resource, ResourceError, Resources};

/// Memory kept back for the OS and the agent: half of memory, at most 1 GiB (Mesos's rule).
fn memory_reserve_mb(total_mb: f64) -> f64 {
    (total_mb / 2.0).min(1024.0)
}

/// Disk kept back: half the filesystem, at most 5 GiB (Mesos's rule).
fn disk_reserve_mb(size_mb: f64) -> f64 {
    (size_mb / 2.0).min(5120.0)
}

fn gpu_count() -> usize {
    std::fs::read_dir("/dev")
        .map(|dir| {
            dir.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("nvidia")
                        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Discovers the host's resources, then applies `overrides` (Mesos text form): a kind named
/// there replaces the discovered amount.
pub fn discover(work_dir: &Path, overrides: Option<&str>) -> Result<Resources, ResourceError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mem_total_mb = procfs::Current::current()
        .map(|m: procfs::Meminfo| m.mem_total as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    let disk_mb = nix::sys::statvfs::statvfs(work_dir)
        .map(|s| s.blocks() as f64 * s.fragment_size() as f64 / (1024.0 * 1024.0))
        .unwrap_or(0.0);
    let mut discovered = vec![
        Resource::scalar("cpus", cpus),
        Resource::scalar(
            "mem",
            (mem_total_mb - memory_reserve_mb(mem_total_mb)).floor(),
        ),
        Resource::scalar("disk", (disk_mb - disk_reserve_mb(disk_mb)).floor()),
        Resource::ranges("ports", [(31000, 32000)]),
    ];
    let gpus = gpu_count();
    if gpus > 0 {
        discovered.push(Resource::scalar("gpus", gpus as f64));
    }
    let overrides = match overrides {
        Some(text) => Resources::parse(text)?,
        None => Resources::new(),
    };
    let mut out: Resources = discovered
        .into_iter()
        .filter(|r| !overrides.iter().any(|o| o.name == r.name))
        .collect();
    out.add(&overrides);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_finds_this_host_and_overrides_win() {
        let r = discover(Path::new("/"), None).unwrap();
        assert!(r.scalar("cpus").as_f64() >= 1.0);
        assert!(r.scalar("mem").as_f64() > 0.0);
        let r = discover(
            Path::new("/"),
            Some("cpus:2.5;net_bw:1000;ports:[5000-5010]"),
        )
        .unwrap();
        assert_eq!(r.scalar("cpus").as_f64(), 2.5);
        assert_eq!(r.scalar("net_bw").as_f64(), 1000.0);
        assert!(r.to_string().contains("ports:[5000-5010]"), "{r}");
        assert!(discover(Path::new("/"), Some("cpus:lots")).is_err());
    }
}
