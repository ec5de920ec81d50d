//! `cargo xtask …`: the project's own set-up, so both README commands work on a fresh machine.
//!
//! - `setup`: installs (idempotently) the Debian packages the agent and its tests use, the
//!   nightly `rust-src` component and `bpf-linker` built against nightly's LLVM.
//! - `build-ebpf`: builds the kernel programs alone (the agent's build script does it too).
//! - `test`: setup, starts the two local ZooKeeper ensembles the sync tests use, runs the whole
//!   test suite (unit and root/kernel tests), stops the ensembles.
//! - `zk start|stop|status`: the local ZooKeeper ensembles A and B on loopback.
//! - `up`: setup, then `orca up`: a master and a local agent with the terminal UI on them.
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

mod up;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent).
    Setup,
    /// Build the eBPF programs for the BPF target.
    BuildEbpf,
    /// Set up, then run every test (as root: eBPF, cgroups, containers, namespaces).
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Local ZooKeeper ensembles A and B (three servers each, on loopback).
    Zk {
        #[command(subcommand)]
        action: ZkAction,
    },
    /// Make a local CA and certificates for TLS in DIR: `ca.pem` (--tls-ca), `master.pem`
    /// and `.key` (the daemons' --tls-cert/--tls-key: localhost, 127.0.0.1, ::1 and each
    /// --name), `agent.pem`/`.key` (agents' client certificate), `client.pem`/`.key` (a
    /// client certificate for operators' tools).
    Certs {
        /// Where to write them (made if missing; existing files are replaced).
        #[arg(long, default_value = "target/orca-certs")]
        dir: std::path::PathBuf,
        /// Another name or IP the daemons are reached by (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// Set up, build, and run `orca up`: master and local agent with the terminal UI.
    Up {
        /// Extra arguments for `orca up` (e.g. `--grpc-addr 127.0.0.1:7071`, `--no-tasks`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ZkAction {
    /// Start both ensembles with empty data (stops earlier ones first).
    Start,
    /// Stop both ensembles.
    Stop,
    /// Print each ensemble's connect string and which servers serve.
    Status,
}

/// Debian packages used by the agent's tests and runtime integrations.
const APT_PACKAGES: &[&str] = &[
    // containerd-client compiles containerd's protos with the system protoc.
    "protobuf-compiler",
    "containerd",
    "runc",
    "busybox-static",
    "docker.io",
    "iproute2",
    // The conntrack test adds a rule inside a network namespace of its own.
    "iptables",
    "util-linux",
    "libcap2-bin",
    "procps",
    "curl",
    // The TUI's end-to-end test drives `orca up` in a real terminal.
    "tmux",
    // Real ZooKeeper servers (3.8, with a JRE) for the sync engine's tests and benchmarks.
    "zookeeper",
    // Prometheus and promtool: every daemon's /metrics is checked and scraped in the tests.
    "prometheus",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect()
}

fn setup() -> Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let has_rust_src = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|sysroot| sysroot.join("lib/rustlib/src/rust/library/core").is_dir());
    if !has_rust_src {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    // bpf-linker loads nightly's libLLVM, which `rustup run nightly` puts on the library path.
    if !succeeds(Command::new("rustup").args(["run", "nightly", "bpf-linker", "--version"])) {
        install_bpf_linker()?;
    }
    Ok(())
}

/// bpf-linker must link against the LLVM inside nightly rustc (the system LLVM is too old).
fn install_bpf_linker() -> Result<()> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("the nightly toolchain is needed to build eBPF programs")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        })
        .context("nightly's sysroot has no libLLVM shared library")?;
    let name = lib.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let major: String = name
        .trim_start_matches("libLLVM.so.")
        .trim_start_matches("libLLVM-")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let prefix = std::env::temp_dir().join(format!("orca-llvm{major}"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)?;
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix))
}

fn build_ebpf() -> Result<()> {
    run(Command::new("cargo")
        .current_dir(workspace_root())
        .args([
            "+nightly",
            "build",
            "-p",
            "orca-ebpf",
            "-Z",
            "build-std=core",
        ])
        .args(["--target", "bpfel-unknown-none", "--release"]))
}

/// Where the local ensembles keep their configuration, data and logs.
fn zk_state_dir() -> PathBuf {
    workspace_root().join("target").join("zk")
}

fn zk(action: ZkAction) -> Result<()> {
    let ensembles = orca_zk_local::shared_ensembles(&zk_state_dir());
    match action {
        ZkAction::Start => {
            for e in &ensembles {
                e.start(std::time::Duration::from_secs(60))?;
                println!("ensemble {}: {}", e.name, e.connect_string());
            }
        }
        ZkAction::Stop => ensembles.iter().for_each(|e| e.stop()),
        ZkAction::Status => {
            for e in &ensembles {
                let up: Vec<String> = (1..=e.size)
                    .filter(|n| orca_zk_local::serving(e.client_addr(*n)))
                    .map(|n| n.to_string())
                    .collect();
                println!(
                    "ensemble {}: {} (serving: {})",
                    e.name,
                    e.connect_string(),
                    if up.is_empty() {
                        "none".into()
                    } else {
                        up.join(",")
                    }
                );
            }
        }
    }
    Ok(())
}

/// Stops the shared ensembles when the test run ends, however it ends.
struct EnsemblesGuard([orca_zk_local::Ensemble; 2]);

impl Drop for EnsemblesGuard {
    fn drop(&mut self) {
        self.0.iter().for_each(|e| e.stop());
    }
}

fn test(args: &[String]) -> Result<()> {
    setup()?;
    let root = workspace_root();
    // Build everything first, once, so test binaries do not race over the build.
    run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--workspace",
        "--exclude",
        "orca-ebpf",
        "--all-targets",
        "--release",
    ]))?;
    // The guard first: an ensemble that started is stopped even if the next one fails.
    let ensembles = EnsemblesGuard(orca_zk_local::shared_ensembles(&zk_state_dir()));
    for e in &ensembles.0 {
        e.start(std::time::Duration::from_secs(60))
            .with_context(|| format!("starting ZooKeeper ensemble {}", e.name))?;
    }
    run(Command::new("cargo")
        .current_dir(&root)
        .env(orca_zk_local::ENV_STATE_DIR, zk_state_dir())
        .args(["test", "--workspace", "--exclude", "orca-ebpf", "--release"])
        .arg("--")
        .args(args))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup(),
        Cmd::BuildEbpf => setup().and_then(|()| build_ebpf()),
        Cmd::Test { args } => test(&args),
        Cmd::Zk { action } => match action {
            ZkAction::Start => setup().and_then(|()| zk(action)),
            action => zk(action),
        },
        Cmd::Up { args } => setup().and_then(|()| up::up(&args)),
        Cmd::Certs { dir, names } => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            orca_auth::tls::cert_gen::write_local_set(&dir, &names)
                .map(|written| {
                    for path in written {
                        println!("{}", path.display());
                    }
                })
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}
