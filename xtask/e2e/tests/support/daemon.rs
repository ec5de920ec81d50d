//! A daemon of the workspace run as a process for a test, its output in a log file, stopped
//! with SIGTERM when dropped.
use std::{
    path::Path,
    process::{Child, Command},
};

pub struct Daemon(pub Child);

impl Daemon {
    pub fn start(bin: &str, args: &[String], log: &Path) -> Self {
        let log = std::fs::File::create(log).unwrap();
        Self(
            Command::new(super::bin(bin))
                .args(args)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}")),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}
