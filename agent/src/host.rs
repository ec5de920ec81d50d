//! The host's identity and resources.
use std::{collections::BTreeSet, fs, net::IpAddr};

use orca_proto::topology::v1 as pb;
use procfs::{Current as _, CurrentSI as _};

/// CPU counters kept between two collections to compute utilisation.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuSample {
    busy: u64,
    total: u64,
}

/// Collects host facts; keeps the previous CPU sample for utilisation.
#[derive(Debug, Default)]
pub struct HostCollector {
    previous_cpu: Option<CpuSample>,
    os: Option<String>,
}

impl HostCollector {
    pub fn collect(&mut self) -> pb::Host {
        let uname = nix::sys::utsname::uname().ok();
        let hostname = hostname();
        let mem = procfs::Meminfo::current().ok();
        let load = procfs::LoadAverage::current().ok();
        let uptime = procfs::Uptime::current().ok();
        let (disk_total, disk_free) = disk_usage("/");
        let (rx, tx) = procfs::net::dev_status()
            .map(|devs| {
                devs.values()
                    .filter(|d| d.name != "lo")
                    .fold((0, 0), |(rx, tx), d| (rx + d.recv_bytes, tx + d.sent_bytes))
            })
            .unwrap_or((0, 0));
        let os = self.os.get_or_insert_with(os_name).clone();
        let (cpu_percent, cpu_seconds_total) = self.cpu();
        pb::Host {
            hostname,
            ips: ip_addresses().into_iter().map(pb::ip_to_bytes).collect(),
            os,
            kernel: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            arch: uname
                .as_ref()
                .map(|u| u.machine().to_string_lossy().into_owned())
                .unwrap_or_default(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_total_bytes: mem.as_ref().map(|m| m.mem_total).unwrap_or(0),
            memory_available_bytes: mem.as_ref().and_then(|m| m.mem_available).unwrap_or(0),
            disk_total_bytes: disk_total,
            disk_free_bytes: disk_free,
            load1: load.as_ref().map(|l| hundredths(l.one)).unwrap_or(0.0),
            load5: load.as_ref().map(|l| hundredths(l.five)).unwrap_or(0.0),
            load15: load.as_ref().map(|l| hundredths(l.fifteen)).unwrap_or(0.0),
            uptime_seconds: uptime.map(|u| u.uptime as u64).unwrap_or(0),
            cpu_percent,
            net_rx_bytes: rx,
            net_tx_bytes: tx,
            cpu_seconds_total,
        }
    }

    /// Percent of all cores busy since the previous collection, and busy CPU seconds since
    /// boot.
    fn cpu(&mut self) -> (f64, f64) {
        let Ok(stats) = procfs::KernelStats::current() else {
            return (0.0, 0.0);
        };
        let t = stats.total;
        let idle = t.idle + t.iowait.unwrap_or(0);
        let busy = t.user
            + t.nice
            + t.system
            + t.irq.unwrap_or(0)
            + t.softirq.unwrap_or(0)
            + t.steal.unwrap_or(0);
        let now = CpuSample {
            busy,
            total: busy + idle,
        };
        let percent = match self.previous_cpu {
            Some(prev) if now.total > prev.total => {
                100.0 * (now.busy.saturating_sub(prev.busy)) as f64
                    / (now.total - prev.total) as f64
            }
            _ => 0.0,
        };
        self.previous_cpu = Some(now);
        (percent, busy as f64 / procfs::ticks_per_second() as f64)
    }
}

/// A load average as /proc/loadavg writes it (two decimals), without f32's noise.
fn hundredths(load: f32) -> f64 {
    (load as f64 * 100.0).round() / 100.0
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// All addresses of all interfaces, loopback included (connections on loopback are real).
pub fn ip_addresses() -> Vec<IpAddr> {
    let mut ips = BTreeSet::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifa in addrs {
            let Some(addr) = ifa.address else { continue };
            let ip: Option<IpAddr> = if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            };
            if let Some(ip) = ip {
                ips.insert(ip);
            }
        }
    }
    ips.into_iter().collect()
}

fn disk_usage(path: &str) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => {
            let frag = s.fragment_size();
            (s.blocks() * frag, s.blocks_available() * frag)
        }
        Err(_) => (0, 0),
    }
}

fn os_name() -> String {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_this_host() {
        let mut c = HostCollector::default();
        let first = c.collect();
        assert!(!first.hostname.is_empty());
        assert!(first.cores >= 1);
        assert!(first.memory_total_bytes > 0);
        assert!(
            first
                .ip_addrs()
                .any(|ip| ip == IpAddr::from([127, 0, 0, 1])),
            "{:?}",
            first.ips
        );
        assert!(!first.kernel.is_empty());
        let second = c.collect();
        assert!((0.0..=100.0).contains(&second.cpu_percent));
    }
}
