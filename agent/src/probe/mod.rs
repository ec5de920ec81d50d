//! Choosing how the agent observes the host: eBPF, or /proc scanning when eBPF cannot load.
pub mod ebpf;
pub mod offsets;

use orca_proto::topology::v1::ProbeMode;

/// What the operator asked for (`--probe`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeChoice {
    /// eBPF when it loads, else /proc (the reason is logged and reported).
    #[default]
    Auto,
    /// eBPF or fail.
    Ebpf,
    /// /proc scanning and sock_diag only.
    Proc,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("--probe ebpf was asked for, but eBPF is unavailable: {0}")]
    EbpfRequired(#[source] Box<ebpf::EbpfError>),
}

/// The network namespace the agent runs in (inode number of /proc/self/ns/net).
pub fn own_netns_inum() -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| m.ino() as u32)
}

/// Said in the probe's reason when accepted connections are attributed to the process that
/// listens rather than the one that accepted them (pre-forked workers show as their parent).
pub const LISTENER_OWNS_ACCEPTED: &str =
    "accepted connections are attributed to the listening process";

/// Loads the probe the operator asked for.
pub fn select(
    choice: ProbeChoice,
    netns_filter: bool,
    ebpf_log: Option<log::Level>,
) -> Result<(Option<ebpf::EbpfProbe>, ProbeMode, String), ProbeError> {
    if choice == ProbeChoice::Proc {
        return Ok((
            None,
            ProbeMode::Proc,
            "/proc mode chosen with --probe proc".into(),
        ));
    }
    let netns = if netns_filter { own_netns_inum() } else { None };
    match ebpf::EbpfProbe::load(netns, ebpf_log) {
        Ok(probe) => {
            let reason = match probe.listener_owns_accepted() {
                None => "eBPF programs attached".to_string(),
                Some(why) => format!("eBPF programs attached; {LISTENER_OWNS_ACCEPTED} ({why})"),
            };
            Ok((Some(probe), ProbeMode::Ebpf, reason))
        }
        Err(err) if choice == ProbeChoice::Auto => {
            let reason = format!("eBPF unavailable, using /proc and sock_diag: {err}");
            tracing::warn!("{reason}");
            Ok((None, ProbeMode::Proc, reason))
        }
        Err(err) => Err(ProbeError::EbpfRequired(Box::new(err))),
    }
}
