//! The agent's own CPU and memory, as it reports them about itself.
use std::time::Instant;

#[derive(Debug, Default)]
pub struct SelfStat {
    previous: Option<(u64, Instant)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct OwnUsage {
    /// Percent of one core since the previous sample.
    pub cpu_percent: f64,
    /// User + system CPU time since the agent started.
    pub cpu_seconds_total: f64,
    pub rss_bytes: u64,
}

impl SelfStat {
    pub fn sample(&mut self) -> OwnUsage {
        let Ok(me) = procfs::process::Process::myself() else {
            return OwnUsage::default();
        };
        let Ok(stat) = me.stat() else {
            return OwnUsage::default();
        };
        let ticks = stat.utime + stat.stime;
        let now = Instant::now();
        let cpu_percent = match self.previous {
            Some((prev, at)) if ticks >= prev => {
                let secs = now.duration_since(at).as_secs_f64().max(1e-6);
                100.0 * (ticks - prev) as f64 / procfs::ticks_per_second() as f64 / secs
            }
            _ => 0.0,
        };
        self.previous = Some((ticks, now));
        OwnUsage {
            cpu_percent,
            cpu_seconds_total: ticks as f64 / procfs::ticks_per_second() as f64,
            rss_bytes: stat.rss * procfs::page_size(),
        }
    }
}
