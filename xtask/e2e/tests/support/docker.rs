//! Container runtimes for tests: a scratch folder, a busybox-static root filesystem, and a
//! Docker engine of the test's own (no bridge, no iptables, cgroupfs naming `/docker/<id>`).
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::agent::wait_for;

/// Runs `cmd`, asserts it succeeded, returns its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch folder removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        // Short: unix socket paths inside it must stay under 108 bytes.
        let dir = PathBuf::from(format!("/tmp/orca-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Runtimes may leave mounts behind (dockerd keeps a bind mount of its network
        // namespace): detach everything under the folder, deepest first, then remove it.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.0))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A busybox-static root filesystem, and a tarball of it.
pub fn busybox_rootfs(dir: &Path) -> (PathBuf, PathBuf) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "nc", "cat", "head"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tarball = dir.join("rootfs.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    (rootfs, tarball)
}

/// Waits until `cmd` succeeds (a daemon answering on its socket).
pub fn wait_socket(what: &str, cmd: impl Fn() -> Command) {
    wait_for(Duration::from_secs(60), what, || {
        cmd()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success()
            .then_some(())
    });
}

/// A Docker engine with its data, exec root and socket in `dir`; stopped on drop.
pub struct Dockerd {
    child: Child,
    pub socket: PathBuf,
}

impl Dockerd {
    /// Starts it and waits until it serves.
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("d.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        // No bridge and no iptables: the tests need neither, and leave the host's network as
        // they found it. cgroupfs naming: /docker/<id>.
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args([
                "-H",
                &format!("unix://{}", socket.display()),
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .args(["--exec-opt", "native.cgroupdriver=cgroupfs"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd is installed by `cargo xtask setup`");
        let dockerd = Self { child, socket };
        wait_socket("dockerd to serve", || {
            let mut c = dockerd.docker();
            c.arg("version");
            c
        });
        dockerd
    }

    /// The engine's own client (a newer one may come first in PATH) on this engine.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.args(["-H", &format!("unix://{}", self.socket.display())]);
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        // The cgroupfs driver leaves its (now empty) parent cgroup in every hierarchy;
        // rmdir fails harmlessly if another engine still has containers there.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(hierarchy.path().join("docker"));
        }
    }
}

/// A container removed (`rm -f`) on drop.
pub struct Container<'a> {
    pub dockerd: &'a Dockerd,
    pub id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .dockerd
            .docker()
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
