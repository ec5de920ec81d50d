//! A real terminal for the UI's end-to-end tests: a tmux session running one command, its
//! screen read back, keys sent to it.
use std::{
    process::Command,
    time::{Duration, Instant},
};

/// How long `wait_for` waits for the screen.
pub const WAIT: Duration = Duration::from_secs(30);

/// A tmux session running one command; killed (with what it runs) when dropped.
pub struct Tmux {
    session: String,
}

impl Tmux {
    pub fn start(session: &str, width: u16, height: u16, command: &str) -> Tmux {
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .expect("tmux runs (cargo xtask setup installs it)");
        assert!(status.success(), "tmux new-session failed: {status}");
        // Keep the pane after the command ends, so the exit can be inspected.
        let _ = Command::new("tmux")
            .args(["set-option", "-t", session, "remain-on-exit", "on"])
            .status();
        Tmux {
            session: session.to_owned(),
        }
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen and everything scrolled off it.
    pub fn history(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-S", "-", "-t", &self.session])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn format(&self, format: &str) -> String {
        let out = Command::new("tmux")
            .args(["display-message", "-p", "-t", &self.session, format])
            .output()
            .expect("tmux display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Sends keys one tmux argument at a time (`Enter`, `Escape`, `Tab` are key names).
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            let status = Command::new("tmux")
                .args(["send-keys", "-t", &self.session, key])
                .status()
                .expect("tmux send-keys");
            assert!(status.success());
        }
    }

    /// Types text literally.
    pub fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-l", "-t", &self.session, text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    /// Waits until the screen satisfies `check`; on timeout shows the screen.
    pub fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}
