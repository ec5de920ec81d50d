//! CPU and memory of another process, and BPF programs' kernel run time.
use std::time::Instant;

/// CPU ticks of a process (user space and kernel) at an instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    user: u64,
    system: u64,
    at: Instant,
}

pub fn cpu_mark(pid: u32) -> anyhow::Result<CpuMark> {
    let stat = procfs::process::Process::new(pid as i32)?.stat()?;
    Ok(CpuMark {
        user: stat.utime,
        system: stat.stime,
        at: Instant::now(),
    })
}

/// Percent of one core a process used between two marks, in user space and in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    pub user: f64,
    pub system: f64,
}

impl CpuUse {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

pub fn cpu_use(from: CpuMark, to: CpuMark) -> CpuUse {
    let secs = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
    let percent = |a: u64, b: u64| {
        100.0 * b.saturating_sub(a) as f64 / procfs::ticks_per_second() as f64 / secs
    };
    CpuUse {
        user: percent(from.user, to.user),
        system: percent(from.system, to.system),
    }
}

/// Peak resident set size (VmHWM) in bytes.
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    let status = procfs::process::Process::new(pid as i32)?.status()?;
    Ok(status.vmhwm.unwrap_or(0) * 1024)
}

/// The ids of every BPF program loaded now (to tell a process's programs by the ids that
/// appeared after it started: names alone would also match another agent's).
pub fn bpf_program_ids() -> std::collections::HashSet<u32> {
    aya::programs::loaded_programs()
        .flatten()
        .map(|p| p.id())
        .collect()
}

/// Run time (ns) and run count of each BPF program loaded since `before` was taken.
pub fn bpf_programs_since(before: &std::collections::HashSet<u32>) -> Vec<(String, u64, u64)> {
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| !before.contains(&p.id()))
        .map(|p| {
            (
                p.name_as_str().unwrap_or("").to_string(),
                p.run_time().as_nanos() as u64,
                p.run_count(),
            )
        })
        .collect()
}

/// Turns `kernel.bpf_stats_enabled` on for as long as it lives, then restores it.
pub struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> anyhow::Result<Self> {
        let previous = std::fs::read_to_string(BPF_STATS)?.trim().to_string();
        std::fs::write(BPF_STATS, "1")?;
        Ok(Self { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.previous);
    }
}
