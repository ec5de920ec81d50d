//! `cargo xtask up`: installs what is missing, builds `orca`, and runs `orca up` — a master
//! and a local agent in one process with the terminal UI on them (headless when there is no
//! terminal). State (the master's registry, task sandboxes, the log) goes under
//! `target/orca-up`.
use std::{io::IsTerminal as _, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::workspace_root;

pub fn up(extra: &[String]) -> Result<()> {
    let root = workspace_root();
    crate::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "orca-tui",
        "--bin",
        "orca",
    ]))?;
    let mut orca = Command::new(root.join("target/release/orca"));
    orca.arg("up")
        .arg("--state-dir")
        .arg(root.join("target/orca-up"));
    if !std::io::stdout().is_terminal() {
        eprintln!("xtask: no terminal: running orca up --headless (Ctrl-C stops)");
        orca.arg("--headless");
    }
    let status = orca.args(extra).status().context("starting orca up")?;
    if !status.success() {
        bail!("orca up exited with {status}");
    }
    Ok(())
}
