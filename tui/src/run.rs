//! The run loop (generic over the ratatui backend, so tests drive it with `TestBackend`), the
//! terminal's set-up and its restoration on every exit, panics included.
use std::{
    io::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use base64::Engine as _;
use orca_proto::cluster::v1::ContainerAction;
use ratatui::{
    Terminal,
    backend::Backend,
    crossterm::{
        event::{self as ct, DisableMouseCapture, EnableMouseCapture, KeyEventKind},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
};
use tokio::sync::mpsc;

use crate::{
    actions::Actions,
    app::{AgentAction, App, Command, ContainerTarget, Level},
    feed::Event,
    migration::MigrationCommand,
    ui,
};

/// Where the loop sends what it cannot do itself.
pub trait Effects {
    fn kill(&self, framework_id: String, task_id: String);
    fn launch(&self, request: crate::app::LaunchRequest);
    /// Asks the collector for a node's hour of series (answered with `Event::Series`).
    fn fetch_series(&self, node_id: String);
    fn container_action(&self, target: ContainerTarget, action: ContainerAction);
    /// Drains or reactivates an agent through the operator API.
    fn agent_action(&self, agent_id: String, hostname: String, action: AgentAction);
    /// Streams a container's output as `Event::Log(stream, …)` until `close_logs`.
    fn open_logs(&self, target: ContainerTarget, stream: u64);
    fn close_logs(&self);
    /// Copies text to the user's clipboard (OSC 52 in a real terminal).
    fn copy(&self, text: &str);
    /// The directory exports are written to.
    fn export_dir(&self) -> PathBuf;
    /// Asks the migration service to advance, roll back or resolve (outcome as a notice).
    fn migration(&self, command: MigrationCommand);
}

/// The real effects: the master's APIs, the terminal's clipboard, the working directory.
#[derive(Debug)]
pub struct Live {
    pub actions: Actions,
    /// The migration service's address and where its outcomes go (with `--migration`).
    pub migration: Option<(String, mpsc::Sender<Event>)>,
}

impl Effects for Live {
    fn kill(&self, framework_id: String, task_id: String) {
        self.actions.kill(framework_id, task_id);
    }

    fn launch(&self, request: crate::app::LaunchRequest) {
        self.actions.launch(request);
    }

    fn fetch_series(&self, node_id: String) {
        self.actions.fetch_series(node_id);
    }

    fn container_action(&self, target: ContainerTarget, action: ContainerAction) {
        self.actions.container_action(target, action);
    }

    fn agent_action(&self, agent_id: String, hostname: String, action: AgentAction) {
        self.actions.agent_action(agent_id, hostname, action);
    }

    fn open_logs(&self, target: ContainerTarget, stream: u64) {
        self.actions.open_logs(target, stream);
    }

    fn close_logs(&self) {
        self.actions.close_logs();
    }

    fn copy(&self, text: &str) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        let mut out = std::io::stdout();
        let _ = write!(out, "\x1b]52;c;{encoded}\x07");
        let _ = out.flush();
    }

    fn export_dir(&self) -> PathBuf {
        std::env::current_dir().unwrap_or_else(|_| std::env::temp_dir())
    }

    fn migration(&self, command: MigrationCommand) {
        if let Some((api, events)) = &self.migration {
            crate::migration::poll::execute(api, command, events.clone());
        }
    }
}

/// Frames are drawn at most this often; events in between are applied together.
const FRAME: Duration = Duration::from_millis(16);
/// Redraw at least this often (ages, "updated … ago", lingering connections).
const TICK: Duration = Duration::from_millis(250);

/// Applies events and draws until the user quits or `events` closes.
pub async fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut mpsc::Receiver<Event>,
    effects: &dyn Effects,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    terminal.draw(|f| ui::draw(f, app))?;
    app.frame_drawn(Instant::now());
    let mut last_frame = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => return Ok(()),
            },
            _ = tick.tick() => Event::Tick,
        };
        if handle(app, event, effects) {
            return Ok(());
        }
        // Apply whatever else is already here, then draw once (no frame per delta).
        let pace_until = last_frame + FRAME;
        loop {
            match events.try_recv() {
                Ok(event) => {
                    if handle(app, event, effects) {
                        return Ok(());
                    }
                }
                Err(_) if Instant::now() >= pace_until => break,
                Err(_) => {
                    tokio::select! {
                        event = events.recv() => match event {
                            Some(event) => if handle(app, event, effects) { return Ok(()) },
                            None => return Ok(()),
                        },
                        _ = tokio::time::sleep_until(pace_until.into()) => break,
                    }
                }
            }
        }
        terminal.draw(|f| ui::draw(f, app))?;
        last_frame = Instant::now();
        app.frame_drawn(last_frame);
        if let Some(node) = app.take_series_request() {
            effects.fetch_series(node);
        }
    }
}

/// Applies one event; true when the user asked to quit.
pub fn handle(app: &mut App, event: Event, effects: &dyn Effects) -> bool {
    let command = match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => app.on_key(key),
        Event::Key(_) | Event::Resize => None,
        Event::Mouse(mouse) => {
            app.on_mouse(mouse);
            None
        }
        Event::Topology(view, delta, at) => {
            app.on_topology(view, *delta, at);
            None
        }
        Event::Cluster(delta, at) => {
            app.on_cluster(*delta, at);
            None
        }
        Event::Series(node, at) => {
            app.on_series(*node, at);
            None
        }
        Event::Log(stream, bytes) => {
            app.on_log(stream, &bytes);
            None
        }
        Event::LogEnd(stream, why) => {
            app.on_log_end(stream, why);
            None
        }
        Event::Link(state) => {
            app.on_link(state);
            None
        }
        Event::Notice(text, level) => {
            app.notify(text, level);
            None
        }
        Event::Migration(polled, at) => {
            app.on_migration(*polled, at);
            None
        }
        Event::Tick => {
            app.on_tick(Instant::now());
            None
        }
    };
    match command {
        None => false,
        Some(Command::Quit) => true,
        Some(Command::KillTask {
            framework_id,
            task_id,
        }) => {
            app.notify(format!("killing {task_id}…"), Level::Info);
            effects.kill(framework_id, task_id);
            false
        }
        Some(Command::Launch(request)) => {
            effects.launch(request);
            false
        }
        Some(Command::Export { id, json }) => {
            let name: String = id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = effects.export_dir().join(format!("orca-{name}.json"));
            match std::fs::write(&path, &json) {
                Ok(()) => {
                    effects.copy(&json);
                    app.notify(
                        format!("details written to {} and copied", path.display()),
                        Level::Info,
                    );
                }
                Err(e) => app.notify(
                    format!("cannot write {}: {e}", path.display()),
                    Level::Error,
                ),
            }
            false
        }
        Some(Command::AgentAction {
            agent_id,
            hostname,
            action,
        }) => {
            app.notify(format!("{} {hostname}…", action.word()), Level::Info);
            effects.agent_action(agent_id, hostname, action);
            false
        }
        Some(Command::ContainerAction { target, action }) => {
            app.notify(
                format!("{} {} on {}…", action.word(), target.name, target.hostname),
                Level::Info,
            );
            effects.container_action(target, action);
            false
        }
        Some(Command::Migration(command)) => {
            app.notify("asking the migration service…", Level::Info);
            effects.migration(command);
            false
        }
        Some(Command::OpenLogs { target, stream }) => {
            effects.open_logs(target, stream);
            false
        }
        Some(Command::CloseLogs) => {
            effects.close_logs();
            false
        }
        Some(Command::SaveFilters) => {
            match app.saved.save() {
                Ok(()) => {
                    let path = app
                        .saved
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    app.notify(format!("filters saved in {path}"), Level::Info);
                }
                Err(e) => app.notify(e.to_string(), Level::Error),
            }
            false
        }
    }
}

/// Puts the terminal in raw mode on the alternate screen with mouse reporting, and makes sure
/// any panic restores it before the message is printed.
pub fn enter_terminal() -> anyhow::Result<()> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave_terminal();
        previous(info);
    }));
    enable_raw_mode()
        .map_err(|e| anyhow::anyhow!("cannot use this terminal ({e}); run orca in a terminal"))?;
    execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    Ok(())
}

/// Restores the terminal (safe to call more than once).
pub fn leave_terminal() {
    let _ = execute!(std::io::stdout(), DisableMouseCapture, LeaveAlternateScreen);
    let _ = disable_raw_mode();
}

/// Reads keys, mouse and resizes on a thread of its own (crossterm's read blocks).
pub fn spawn_input(events: mpsc::Sender<Event>) {
    std::thread::Builder::new()
        .name("orca-input".into())
        .spawn(move || {
            loop {
                let event = match ct::read() {
                    Ok(ct::Event::Key(key)) => Event::Key(key),
                    Ok(ct::Event::Mouse(mouse)) => Event::Mouse(mouse),
                    Ok(ct::Event::Resize(..)) => Event::Resize,
                    Ok(_) => continue,
                    Err(_) => return,
                };
                if events.blocking_send(event).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the input thread");
}
