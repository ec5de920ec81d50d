//! The TUI's state and what every input does to it. No terminal here: tests drive `App` with
//! events and read its state; the run loop draws it.
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use orca_proto::{operator::v1 as opb, topology::v1 as pb};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use orca_proto::{cluster::v1::ContainerAction, topology::v1::ContainerState};

use crate::{
    filter::{Query, Scratch},
    logs::{LogKey, LogView},
    migration::{MigrationCommand, MigrationView, Polled},
    model::{Model, topology::TopoView},
    rows::{self, Rows, Shape, Sort},
    saved::SavedFilters,
    views::{self, Item, Scope, Tab},
};

/// Something the run loop must do outside the state (network, files).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Quit,
    KillTask {
        framework_id: String,
        task_id: String,
    },
    Launch(LaunchRequest),
    /// Write `json` to a file named after `id` and copy it to the clipboard.
    Export {
        id: String,
        json: String,
    },
    SaveFilters,
    /// Stop, start, pause, unpause, restart or remove a container (through its agent).
    ContainerAction {
        target: ContainerTarget,
        action: ContainerAction,
    },
    /// Stream a container's output into the log view (`stream` tags its chunks).
    OpenLogs {
        target: ContainerTarget,
        stream: u64,
    },
    CloseLogs,
    /// Drain or reactivate an agent (the operator API's DRAIN_AGENT / REACTIVATE_AGENT).
    AgentAction {
        agent_id: String,
        hostname: String,
        action: AgentAction,
    },
    /// Advance, roll back or resolve a conflict (the migration service's API).
    Migration(MigrationCommand),
}

/// What an operator does to an agent from the Agents tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAction {
    /// Kill its tasks (each with its own grace period) and offer nothing of it.
    Drain,
    /// Offer it again once it was deactivated or drained.
    Reactivate,
}

impl AgentAction {
    pub fn word(self) -> &'static str {
        match self {
            AgentAction::Drain => "drain",
            AgentAction::Reactivate => "reactivate",
        }
    }
}

/// A container as actions name it: where it runs, its id, and its name for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerTarget {
    pub hostname: String,
    pub id: String,
    pub name: String,
}

/// What can be done to a container in `state`.
pub fn container_actions(state: ContainerState) -> Vec<ContainerAction> {
    use ContainerAction as A;
    match state {
        ContainerState::Running | ContainerState::Restarting => {
            vec![A::Stop, A::Restart, A::Pause, A::Remove]
        }
        ContainerState::Paused => vec![A::Unpause, A::Stop, A::Remove],
        _ => vec![A::Start, A::Remove],
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    pub name: String,
    pub command: String,
    pub cpus: f64,
    pub mem_mb: f64,
    pub role: String,
}

/// The master link as the status line shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    Connecting,
    Connected,
    /// Unreachable: why, and when the next attempt is.
    Down {
        reason: String,
        retry_at: Instant,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

/// The launch dialog's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchForm {
    pub fields: [String; 5],
    pub focus: usize,
    pub error: Option<String>,
}

impl LaunchForm {
    pub const LABELS: [&'static str; 5] = ["Name", "Command", "CPUs", "Memory (MB)", "Role"];

    fn new() -> Self {
        Self {
            fields: [
                String::new(),
                String::new(),
                "0.1".into(),
                "64".into(),
                "*".into(),
            ],
            focus: 0,
            error: None,
        }
    }

    fn request(&self) -> Result<LaunchRequest, FormError> {
        let [name, command, cpus, mem, role] = &self.fields;
        if command.trim().is_empty() {
            return Err(FormError::NoCommand);
        }
        let cpus: f64 = cpus
            .trim()
            .parse()
            .ok()
            .filter(|c: &f64| *c > 0.0)
            .ok_or_else(|| FormError::Cpus(cpus.clone()))?;
        let mem_mb: f64 = mem
            .trim()
            .parse()
            .ok()
            .filter(|m: &f64| *m > 0.0)
            .ok_or_else(|| FormError::Memory(mem.clone()))?;
        let name = if name.trim().is_empty() {
            command
                .split_whitespace()
                .next()
                .unwrap_or("task")
                .to_owned()
        } else {
            name.trim().to_owned()
        };
        Ok(LaunchRequest {
            name,
            command: command.trim().to_owned(),
            cpus,
            mem_mb,
            role: if role.trim().is_empty() {
                "*".into()
            } else {
                role.trim().to_owned()
            },
        })
    }
}

/// What is wrong with the launch form, shown under it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FormError {
    #[error("a command is required (e.g. `sleep 60`)")]
    NoCommand,
    #[error("CPUs {0:?} is not a positive number (e.g. 0.5)")]
    Cpus(String),
    #[error("Memory {0:?} is not a positive number of MB (e.g. 128)")]
    Memory(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing a filter; the tab's query follows the input as it is typed.
    Filter {
        input: String,
        before: String,
        error: Option<String>,
    },
    Help,
    Confirm {
        prompt: String,
        command: Command,
    },
    Launch(LaunchForm),
    SavedFilters {
        selected: usize,
    },
    /// The actions a container allows, one to choose (then confirm).
    ContainerMenu {
        target: ContainerTarget,
        actions: Vec<ContainerAction>,
        selected: usize,
    },
    /// The log view (`App::logs`) takes the keys.
    Logs,
}

/// One tab's own state: where it is drilled to, its filter, order and selection.
#[derive(Debug, Default)]
pub struct TabState {
    /// Drill-down stack, outermost first.
    pub scopes: Vec<Crumb>,
    pub query: Query,
    pub sort: Sort,
    pub selected: usize,
    pub offset: usize,
    selected_key: Option<String>,
    rows: Rows,
    /// The filter, order and scope the rows follow.
    built: Option<BuildKey>,
    /// When the rows were last built whole, and how long that took.
    built_at: Option<Instant>,
    build_cost: Duration,
    /// The data's version (every change) and membership version the rows are current with.
    built_version: u64,
    built_members: u64,
}

/// One step of a drill-down: what the rows are narrowed to, its label in the breadcrumb, and
/// the tab to return to.
#[derive(Debug, Clone, PartialEq)]
pub struct Crumb {
    pub scope: Scope,
    pub label: String,
    pub from: Tab,
}

impl TabState {
    /// Keeps the selection on its item when the rows moved (the first row after a new filter,
    /// the same place when the item left).
    fn follow_selection(&mut self, restart: bool) {
        let keep = if restart {
            Some(0)
        } else if let Some(key) = &self.selected_key
            && self.rows.keys.get(self.selected) == Some(key)
        {
            Some(self.selected)
        } else {
            self.selected_key
                .as_ref()
                .and_then(|k| self.rows.keys.iter().position(|r| r == k))
        };
        self.selected = keep.unwrap_or(self.selected.min(self.rows.keys.len().saturating_sub(1)));
        self.selected_key = self.rows.keys.get(self.selected).cloned();
    }

    fn shape(&self) -> Shape<'_> {
        Shape {
            scope: self.scope(),
            query: &self.query,
            sort: self.sort,
        }
    }

    pub fn scope(&self) -> &Scope {
        self.scopes.last().map_or(&Scope::All, |c| &c.scope)
    }

    pub fn rows(&self) -> &Rows {
        &self.rows
    }
}

#[derive(Debug, Clone, PartialEq)]
struct BuildKey {
    query: String,
    sort: Sort,
    scope: Scope,
}

/// Rows ordered or filtered by values whose last build took `SLOW_BUILD` or more follow the
/// values at most this often (as `top` does), so big tables keep a smooth frame rate; members
/// coming and going are placed at once either way.
const RESORT: Duration = Duration::from_secs(1);
const SLOW_BUILD: Duration = Duration::from_millis(4);

/// Delta-to-screen latencies kept for the status line and the benchmark.
const LATENCY_MAX_US: u64 = 60_000_000;

pub struct App {
    pub model: Model,
    pub tab: Tab,
    tabs: Vec<TabState>,
    pub mode: Mode,
    pub link: LinkState,
    pub master: String,
    pub details: bool,
    pub neighbourhood: bool,
    pub message: Option<(String, Level, Instant)>,
    pub saved: SavedFilters,
    /// Time from a change arriving to the frame that shows it.
    pub latency: Histogram<u64>,
    pub last_latency: Option<Duration>,
    pending_since: Option<Instant>,
    pub last_update: Option<Instant>,
    /// Visible table rows at the last draw (page size).
    pub page: usize,
    /// The screen row of the first table row at the last draw (for mouse clicks).
    pub table_top: u16,
    scratch: Scratch,
    /// The node whose history was last asked for, and a request not yet sent.
    series_asked: Option<String>,
    series_request: Option<String>,
    /// The open log view, and the tag of the next log stream.
    pub logs: Option<LogView>,
    next_stream: u64,
    /// Lines the log view showed at the last draw (its page).
    pub log_height: usize,
    /// The migration service's view (with `--migration`), and whether it is on screen.
    pub migration: Option<MigrationView>,
    pub show_migration: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("tab", &self.tab)
            .field("mode", &self.mode)
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl App {
    pub fn new(master: impl Into<String>, saved: SavedFilters) -> Self {
        Self {
            model: Model::default(),
            tab: Tab::Hosts,
            tabs: Tab::ALL.iter().map(|_| TabState::default()).collect(),
            mode: Mode::Normal,
            link: LinkState::Connecting,
            master: master.into(),
            details: false,
            neighbourhood: false,
            message: None,
            saved,
            latency: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid bounds"),
            last_latency: None,
            pending_since: None,
            last_update: None,
            page: 20,
            table_top: 0,
            scratch: Scratch::default(),
            series_asked: None,
            series_request: None,
            logs: None,
            next_stream: 0,
            log_height: 20,
            migration: None,
            show_migration: false,
        }
    }

    /// Follows the migration service at `api` (`host:port`) in the Migration view (`M`).
    pub fn with_migration(mut self, api: impl Into<String>) -> Self {
        self.migration = Some(MigrationView::new(api));
        self
    }

    pub fn state(&self) -> &TabState {
        &self.tabs[self.tab.index()]
    }

    fn state_mut(&mut self) -> &mut TabState {
        &mut self.tabs[self.tab.index()]
    }

    pub fn tab_state(&self, tab: Tab) -> &TabState {
        &self.tabs[tab.index()]
    }

    // ---- data from the master ----

    pub fn on_topology(&mut self, view: TopoView, delta: pb::TopologyDelta, received: Instant) {
        if delta.full {
            // A new snapshot replaced the nodes: histories are asked for again.
            self.series_asked = None;
        }
        self.model.topology.apply(view, delta, received);
        self.changed(received);
    }

    /// A node's hour-long history arrived (asked for when its details opened).
    pub fn on_series(&mut self, node: pb::TopologyNode, received: Instant) {
        if self.model.topology.set_history(node) {
            self.changed(received);
        }
    }

    /// The node whose history the details panel needs, once per selection.
    pub fn take_series_request(&mut self) -> Option<String> {
        self.series_request.take()
    }

    pub fn on_cluster(&mut self, delta: opb::ClusterDelta, received: Instant) {
        self.model.cluster.apply(delta);
        self.changed(received);
    }

    /// The migration service answered a poll (or could not be asked).
    pub fn on_migration(&mut self, polled: Result<Polled, String>, received: Instant) {
        if let Some(view) = self.migration.as_mut() {
            view.apply(polled, received);
            if self.show_migration {
                self.changed(received);
            }
        }
    }

    /// Output of the container in the log view.
    pub fn on_log(&mut self, stream: u64, bytes: &[u8]) {
        if let Some(view) = self.logs.as_mut().filter(|v| v.stream == stream) {
            view.push(bytes);
        }
    }

    /// The log stream ended (`why` when it failed).
    pub fn on_log_end(&mut self, stream: u64, why: Option<String>) {
        if let Some(view) = self.logs.as_mut().filter(|v| v.stream == stream) {
            view.end(why);
        }
    }

    /// The selected container, in the Containers tab.
    fn selected_container(&self) -> Option<(ContainerTarget, ContainerState)> {
        match self.selected() {
            Some(Item::Node(n)) => n.container().map(|c| {
                (
                    ContainerTarget {
                        hostname: n.hostname.clone(),
                        id: c.id.clone(),
                        name: n.name().to_owned(),
                    },
                    c.state,
                )
            }),
            _ => None,
        }
    }

    fn open_container_menu(&mut self) {
        match self.selected_container() {
            Some((target, state)) => {
                self.mode = Mode::ContainerMenu {
                    target,
                    actions: container_actions(state),
                    selected: 0,
                };
            }
            None => self.notify(
                "a acts on a container: select one in the Containers tab (2)",
                Level::Info,
            ),
        }
    }

    fn open_logs(&mut self) -> Option<Command> {
        let Some((target, _)) = self.selected_container() else {
            self.notify(
                "o shows a container's output: select one in the Containers tab (2)",
                Level::Info,
            );
            return None;
        };
        self.next_stream += 1;
        let stream = self.next_stream;
        self.logs = Some(LogView::new(
            stream,
            format!("{} on {}", target.name, target.hostname),
        ));
        self.mode = Mode::Logs;
        Some(Command::OpenLogs { target, stream })
    }

    fn container_menu_key(
        &mut self,
        key: KeyEvent,
        target: ContainerTarget,
        actions: Vec<ContainerAction>,
        selected: usize,
    ) -> Option<Command> {
        let selected = match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return None,
            KeyCode::Down | KeyCode::Char('j') => {
                (selected + 1).min(actions.len().saturating_sub(1))
            }
            KeyCode::Up | KeyCode::Char('k') => selected.saturating_sub(1),
            KeyCode::Enter => {
                if let Some(action) = actions.get(selected).copied() {
                    self.mode = Mode::Confirm {
                        prompt: format!(
                            "{} container {} on {}? (y/n)",
                            capitalised(action.word()),
                            target.name,
                            target.hostname
                        ),
                        command: Command::ContainerAction { target, action },
                    };
                }
                return None;
            }
            _ => selected,
        };
        self.mode = Mode::ContainerMenu {
            target,
            actions,
            selected,
        };
        None
    }

    pub fn on_link(&mut self, state: LinkState) {
        if let LinkState::Down { .. } = state {
            self.model.topology.mark_stale();
        }
        self.link = state;
    }

    /// Time passes: closed connections whose linger is over go, old messages fade.
    pub fn on_tick(&mut self, now: Instant) {
        if self.model.topology.expire(now) {
            self.changed(now);
        }
        if self
            .message
            .as_ref()
            .is_some_and(|(_, _, at)| now.duration_since(*at) > Duration::from_secs(6))
        {
            self.message = None;
        }
    }

    fn changed(&mut self, received: Instant) {
        self.last_update = Some(received);
        self.pending_since = Some(self.pending_since.map_or(received, |p| p.min(received)));
    }

    /// A frame was drawn at `now`: what was pending is on screen.
    pub fn frame_drawn(&mut self, now: Instant) {
        if let Some(since) = self.pending_since.take() {
            let latency = now.saturating_duration_since(since);
            let _ = self
                .latency
                .record((latency.as_micros() as u64).clamp(1, LATENCY_MAX_US));
            self.last_latency = Some(latency);
        }
    }

    pub fn notify(&mut self, text: impl Into<String>, level: Level) {
        self.message = Some((text.into(), level, Instant::now()));
    }

    // ---- rows ----

    /// The versions of a tab's data: any change, and nodes or connections coming, going or
    /// changing what their rows read (the same for cluster tabs).
    fn data_versions(&self, tab: Tab) -> (u64, u64) {
        match tab.topology() {
            Some(view) => {
                let data = self.model.topology.view(view);
                (data.version, data.members)
            }
            None => (self.model.cluster.version, self.model.cluster.version),
        }
    }

    /// Brings the current tab's rows up to date: rebuilt when the filter, order or scope moved;
    /// otherwise joined and left in place, and re-sorted when values they are ordered or
    /// filtered by moved. The selection stays on the same item while it is there.
    pub fn prepare(&mut self) {
        self.build_rows();
        self.want_history();
    }

    /// Asks for the selected node's history when its details are shown without one.
    fn want_history(&mut self) {
        if !self.details || self.tab == Tab::Connections || self.tab.topology().is_none() {
            return;
        }
        let wanted = match self.selected() {
            Some(Item::Node(n)) if n.history().is_none() && !n.is_pseudo() => n.id().to_owned(),
            _ => return,
        };
        if self.series_asked.as_deref() != Some(wanted.as_str()) {
            self.series_asked = Some(wanted.clone());
            self.series_request = Some(wanted);
        }
    }

    fn build_rows(&mut self) {
        let tab = self.tab;
        let key = BuildKey {
            query: self.state().query.text().to_owned(),
            sort: self.state().sort,
            scope: self.state().scope().clone(),
        };
        let (version, members) = self.data_versions(tab);
        let state = &self.tabs[tab.index()];
        if state.built.as_ref() == Some(&key) {
            let by_values = state.sort.column.is_some() || state.query.depends_on_values();
            let values_moved = by_values && state.built_version != version;
            let resort = values_moved
                && (state.build_cost < SLOW_BUILD
                    || state.built_at.is_none_or(|at| at.elapsed() >= RESORT));
            if !resort {
                if state.built_members == members {
                    return;
                }
                if self.update_rows(tab, members) {
                    return;
                }
            }
        }
        let started = Instant::now();
        let state = &self.tabs[tab.index()];
        let rows = rows::build_rows(&self.model, tab, state.shape(), &mut self.scratch);
        let state = &mut self.tabs[tab.index()];
        // A new filter starts from its best match; otherwise the selection follows its item.
        let query_changed = state.built.as_ref().is_some_and(|b| b.query != key.query);
        state.rows = rows;
        state.built = Some(key);
        state.built_at = Some(Instant::now());
        state.build_cost = started.elapsed();
        state.built_version = version;
        state.built_members = members;
        state.follow_selection(query_changed);
    }

    /// Places the nodes or connections the view's journal names since the rows were last
    /// current; false when the rows must be rebuilt instead.
    fn update_rows(&mut self, tab: Tab, members: u64) -> bool {
        let Some(view) = tab.topology() else {
            return false;
        };
        let state = &mut self.tabs[tab.index()];
        let data = self.model.topology.view(view);
        let Some(changed) = data.changed_since(state.built_members) else {
            return false;
        };
        let shape = Shape {
            scope: state.scopes.last().map_or(&Scope::All, |c| &c.scope),
            query: &state.query,
            sort: state.sort,
        };
        if !rows::update_rows(
            &self.model,
            tab,
            shape,
            &mut state.rows,
            changed,
            &mut self.scratch,
        ) {
            return false;
        }
        state.built_members = members;
        state.follow_selection(false);
        true
    }

    pub fn tab_offset(&self) -> usize {
        self.state().offset
    }

    pub fn set_tab_offset(&mut self, offset: usize) {
        self.state_mut().offset = offset;
    }

    pub fn selected_key(&self) -> Option<&str> {
        self.state().selected_key.as_deref()
    }

    pub fn selected(&self) -> Option<Item<'_>> {
        views::item(&self.model, self.tab, self.selected_key()?)
    }

    fn select(&mut self, index: usize) {
        let state = self.state_mut();
        let len = state.rows.keys.len();
        state.selected = if len == 0 { 0 } else { index.min(len - 1) };
        state.selected_key = state.rows.keys.get(state.selected).cloned();
    }

    fn move_by(&mut self, delta: isize) {
        let at = self.state().selected as isize + delta;
        self.select(at.max(0) as usize);
    }

    // ---- input ----

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        // Esc then a key typed quickly (or sent over a slow link) arrives as Alt+key: treat it
        // as the two keys it was.
        if key.modifiers.contains(KeyModifiers::ALT)
            && let KeyCode::Char(_) = key.code
        {
            self.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
            return self.on_key(KeyEvent::new(key.code, key.modifiers - KeyModifiers::ALT));
        }
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.normal_key(key),
            Mode::Help => {
                if !matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    self.mode = Mode::Help;
                }
                None
            }
            Mode::Filter {
                input,
                before,
                error,
            } => self.filter_key(key, input, before, error),
            Mode::Confirm { prompt, command } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Some(command),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => None,
                _ => {
                    self.mode = Mode::Confirm { prompt, command };
                    None
                }
            },
            Mode::Launch(form) => self.launch_key(key, form),
            Mode::SavedFilters { selected } => self.saved_key(key, selected),
            Mode::ContainerMenu {
                target,
                actions,
                selected,
            } => self.container_menu_key(key, target, actions, selected),
            Mode::Logs => {
                let height = self.log_height;
                match self.logs.as_mut().map(|v| v.key(key, height)) {
                    Some(LogKey::Stay) => {
                        self.mode = Mode::Logs;
                        None
                    }
                    _ => {
                        self.logs = None;
                        Some(Command::CloseLogs)
                    }
                }
            }
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.code == KeyCode::Char('M') {
            self.toggle_migration();
            return None;
        }
        if self.show_migration {
            return self.migration_key(key);
        }
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char(c @ '1'..='7') => {
                self.switch(Tab::ALL[c as usize - '1' as usize]);
            }
            KeyCode::Tab => self.switch(Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()]),
            KeyCode::BackTab => {
                self.switch(Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()])
            }
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(self.page.max(1) as isize),
            KeyCode::PageUp => self.move_by(-(self.page.max(1) as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.select(0),
            KeyCode::End | KeyCode::Char('G') => self.select(usize::MAX),
            KeyCode::Enter | KeyCode::Right | KeyCode::Char('l') => self.drill_down(),
            KeyCode::Esc if !self.state().query.is_empty() => {
                self.state_mut().query = Query::default();
            }
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left | KeyCode::Char('h') => {
                self.drill_up()
            }
            KeyCode::Char('/') => {
                let before = self.state().query.text().to_owned();
                self.mode = Mode::Filter {
                    input: before.clone(),
                    before,
                    error: None,
                };
            }
            KeyCode::Char('s') => {
                let columns = self.tab.columns().len();
                let sort = &mut self.state_mut().sort;
                sort.column = match sort.column {
                    None => Some(0),
                    Some(c) if c + 1 < columns => Some(c + 1),
                    Some(_) => None,
                };
                sort.reverse = false;
            }
            KeyCode::Char('S') => {
                let sort = &mut self.state_mut().sort;
                sort.reverse = !sort.reverse;
            }
            KeyCode::Char('d') => self.details = !self.details,
            KeyCode::Char('n') => {
                self.neighbourhood = !self.neighbourhood;
                if self.neighbourhood {
                    self.details = true;
                }
            }
            KeyCode::Char('e') | KeyCode::Char('y') => return self.export(),
            KeyCode::Char('x') => self.ask_kill(),
            KeyCode::Char('D') => self.ask_agent_action(AgentAction::Drain),
            KeyCode::Char('R') => self.ask_agent_action(AgentAction::Reactivate),
            KeyCode::Char('a') => self.open_container_menu(),
            KeyCode::Char('o') => return self.open_logs(),
            KeyCode::Char('L') => self.mode = Mode::Launch(LaunchForm::new()),
            KeyCode::Char('f') => {
                if self.saved.filters.is_empty() {
                    self.notify(
                        "no saved filters yet: type one with / and save it with F",
                        Level::Info,
                    );
                } else {
                    self.mode = Mode::SavedFilters { selected: 0 };
                }
            }
            KeyCode::Char('F') => {
                let text = self.state().query.text().to_owned();
                if text.is_empty() {
                    self.notify("nothing to save: type a filter with / first", Level::Info);
                } else {
                    self.saved.add(self.tab.title(), &text);
                    return Some(Command::SaveFilters);
                }
            }
            _ => {}
        }
        None
    }

    pub fn on_mouse(&mut self, mouse: MouseEvent) {
        match mouse.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            MouseEventKind::Down(MouseButton::Left) if mouse.row >= self.table_top => {
                let index = self.state().offset + (mouse.row - self.table_top) as usize;
                if index < self.state().rows.keys.len() {
                    self.select(index);
                }
            }
            _ => {}
        }
    }

    pub fn switch(&mut self, tab: Tab) {
        self.tab = tab;
    }

    fn drill_down(&mut self) {
        let Some(item) = self.selected() else {
            return;
        };
        let target = match item {
            Item::Node(n) => match self.tab {
                Tab::Hosts => {
                    let host = n.name().to_owned();
                    let has_containers = self
                        .model
                        .topology
                        .view(TopoView::Containers)
                        .nodes
                        .values()
                        .any(|c| c.hostname == host && !c.is_pseudo());
                    let tab = if has_containers {
                        Tab::Containers
                    } else {
                        Tab::Processes
                    };
                    Some((tab, Scope::Host(host.clone()), host))
                }
                Tab::Containers => n.container().map(|c| {
                    (
                        Tab::Processes,
                        Scope::Container(c.id.clone()),
                        n.name().to_owned(),
                    )
                }),
                _ => n.process().map(|p| {
                    (
                        Tab::Connections,
                        Scope::Process(n.id().to_owned()),
                        format!("{} {}", p.comm, p.pid),
                    )
                }),
            },
            Item::Agent(a) => Some((Tab::Tasks, Scope::Agent(a.id.clone()), a.hostname.clone())),
            Item::Framework(f) => {
                Some((Tab::Tasks, Scope::Framework(f.id.clone()), f.name.clone()))
            }
            Item::Connection(_) | Item::Task(_) => None,
        };
        let Some((tab, scope, label)) = target else {
            self.details = true;
            return;
        };
        let from = self.tab;
        let mut scopes = self.state().scopes.clone();
        scopes.push(Crumb { scope, label, from });
        self.tab = tab;
        let state = self.state_mut();
        state.scopes = scopes;
        state.query = Query::default();
        state.selected = 0;
        state.selected_key = None;
    }

    fn drill_up(&mut self) {
        if let Some(crumb) = self.state_mut().scopes.pop() {
            self.tab = crumb.from;
        }
    }

    fn filter_key(
        &mut self,
        key: KeyEvent,
        mut input: String,
        before: String,
        mut error: Option<String>,
    ) -> Option<Command> {
        match key.code {
            KeyCode::Enter => {
                if error.is_some() {
                    self.mode = Mode::Filter {
                        input,
                        before,
                        error,
                    };
                }
                return None;
            }
            KeyCode::Esc => {
                self.state_mut().query = Query::parse(&before).unwrap_or_default();
                return None;
            }
            KeyCode::Backspace => {
                input.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => input.clear(),
            KeyCode::Char(c) => input.push(c),
            _ => {}
        }
        match Query::parse(&input) {
            Ok(query) => {
                self.state_mut().query = query;
                error = None;
            }
            Err(e) => error = Some(e.to_string()),
        }
        self.mode = Mode::Filter {
            input,
            before,
            error,
        };
        None
    }

    fn launch_key(&mut self, key: KeyEvent, mut form: LaunchForm) -> Option<Command> {
        match key.code {
            KeyCode::Esc => return None,
            KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % form.fields.len(),
            KeyCode::BackTab | KeyCode::Up => {
                form.focus = (form.focus + form.fields.len() - 1) % form.fields.len()
            }
            KeyCode::Enter => match form.request() {
                Ok(request) => {
                    self.notify(
                        format!("launching {} ({})…", request.name, request.command),
                        Level::Info,
                    );
                    return Some(Command::Launch(request));
                }
                Err(e) => form.error = Some(e.to_string()),
            },
            KeyCode::Backspace => {
                form.fields[form.focus].pop();
            }
            KeyCode::Char(c) => form.fields[form.focus].push(c),
            _ => {}
        }
        self.mode = Mode::Launch(form);
        None
    }

    fn saved_key(&mut self, key: KeyEvent, selected: usize) -> Option<Command> {
        let len = self.saved.filters.len();
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => None,
            KeyCode::Down | KeyCode::Char('j') => {
                self.mode = Mode::SavedFilters {
                    selected: (selected + 1).min(len.saturating_sub(1)),
                };
                None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.mode = Mode::SavedFilters {
                    selected: selected.saturating_sub(1),
                };
                None
            }
            KeyCode::Char('D') | KeyCode::Delete => {
                self.saved.remove(selected);
                if !self.saved.filters.is_empty() {
                    self.mode = Mode::SavedFilters {
                        selected: selected.min(self.saved.filters.len() - 1),
                    };
                }
                Some(Command::SaveFilters)
            }
            KeyCode::Enter => {
                if let Some(saved) = self.saved.filters.get(selected).cloned() {
                    if let Some(tab) = Tab::ALL.iter().find(|t| t.title() == saved.tab) {
                        self.tab = *tab;
                    }
                    match Query::parse(&saved.query) {
                        Ok(q) => self.state_mut().query = q,
                        Err(e) => self.notify(format!("saved filter: {e}"), Level::Error),
                    }
                }
                None
            }
            _ => {
                self.mode = Mode::SavedFilters { selected };
                None
            }
        }
    }

    fn ask_kill(&mut self) {
        match self.selected() {
            Some(Item::Task(t)) if !t.state.is_terminal() => {
                self.mode = Mode::Confirm {
                    prompt: format!(
                        "Kill task {} of {} on {}? (y/n)",
                        t.name,
                        self.model.cluster.framework_name(&t.framework_id),
                        t.hostname
                    ),
                    command: Command::KillTask {
                        framework_id: t.framework_id.clone(),
                        task_id: t.id.clone(),
                    },
                };
            }
            Some(Item::Task(t)) => {
                let state = t.state.mesos_name();
                self.notify(format!("the task already ended ({state})"), Level::Info);
            }
            _ => self.notify(
                "x kills a task: select one in the Tasks tab (7)",
                Level::Info,
            ),
        }
    }

    /// Drain or reactivate the selected agent, once the operator confirms; refused at once
    /// where the master would refuse it (a drain of a draining agent, a reactivation of an
    /// active one).
    fn toggle_migration(&mut self) {
        if self.migration.is_none() {
            self.notify(
                "no migration service: start orca with --migration HOST:PORT \
                 (what `zk-migrate serve --listen` serves)",
                Level::Info,
            );
            return;
        }
        self.show_migration = !self.show_migration;
    }

    /// Keys of the Migration view: `a` advance, `r`/`R` roll back one phase/all, `j`/`k`
    /// choose a held conflict and `A`/`B` resolve it; each asks for confirmation first.
    fn migration_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Some(view) = self.migration.as_mut() else {
            self.show_migration = false;
            return None;
        };
        let asked = match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') => {
                self.mode = Mode::Help;
                return None;
            }
            KeyCode::Esc | KeyCode::Char('h') | KeyCode::Left => {
                self.show_migration = false;
                return None;
            }
            KeyCode::Char(c @ '1'..='7') => {
                self.show_migration = false;
                self.switch(Tab::ALL[c as usize - '1' as usize]);
                return None;
            }
            KeyCode::Down | KeyCode::Char('j') => {
                view.select_conflict(1);
                return None;
            }
            KeyCode::Up | KeyCode::Char('k') => {
                view.select_conflict(-1);
                return None;
            }
            KeyCode::Char('a') => view.ask_advance(),
            KeyCode::Char('r') => view.ask_rollback(false),
            KeyCode::Char('R') => view.ask_rollback(true),
            KeyCode::Char(c @ ('A' | 'B')) => view.ask_resolve(c),
            _ => return None,
        };
        match asked {
            Ok((prompt, command)) => {
                self.mode = Mode::Confirm {
                    prompt,
                    command: Command::Migration(command),
                }
            }
            Err(why) => self.notify(why, Level::Info),
        }
        None
    }

    fn ask_agent_action(&mut self, action: AgentAction) {
        let Some(Item::Agent(a)) = self.selected() else {
            let key = if action == AgentAction::Drain {
                'D'
            } else {
                'R'
            };
            self.notify(
                format!(
                    "{key} {}s an agent: select one in the Agents tab (5)",
                    action.word()
                ),
                Level::Info,
            );
            return;
        };
        let (agent_id, hostname) = (a.id.clone(), a.hostname.clone());
        let prompt = match action {
            AgentAction::Drain if a.drain == opb::AgentDrainState::Draining => {
                let left = a.drain_tasks_left;
                self.notify(
                    format!("{hostname} is already draining ({left} tasks left)"),
                    Level::Info,
                );
                return;
            }
            AgentAction::Drain => format!(
                "Drain agent {hostname}: kill its {} tasks (each with its own grace period) \
                 and offer nothing of it until reactivated? (y/n)",
                a.running_tasks
            ),
            AgentAction::Reactivate if a.drain == opb::AgentDrainState::Draining => {
                self.notify(
                    format!("{hostname} is still draining: reactivate it once it is drained"),
                    Level::Info,
                );
                return;
            }
            AgentAction::Reactivate if !a.deactivated => {
                self.notify(
                    format!("{hostname} is active: nothing to reactivate"),
                    Level::Info,
                );
                return;
            }
            AgentAction::Reactivate => {
                format!("Reactivate agent {hostname}: offer its resources again? (y/n)")
            }
        };
        self.mode = Mode::Confirm {
            prompt,
            command: Command::AgentAction {
                agent_id,
                hostname,
                action,
            },
        };
    }

    /// The selected item's details as JSON.
    pub fn details_json(&self) -> Option<(String, serde_json::Value)> {
        let item = self.selected()?;
        let value = match item {
            Item::Node(n) => {
                use crate::model::topology::Metric;
                // The whole hour when it was fetched, else the latest values.
                let series = |m: Metric| match n.history() {
                    Some(h) => h.series(m).values().collect::<Vec<_>>(),
                    None => n.latest(m).into_iter().collect(),
                };
                serde_json::json!({
                    "node": n.node,
                    "hostname": n.hostname,
                    "series": {
                        "resolutionSeconds": 15,
                        "cpuPercent": series(Metric::Cpu),
                        "memoryBytes": series(Metric::Memory),
                        "netOutBytesPerSecond": series(Metric::NetOut),
                        "netInBytesPerSecond": series(Metric::NetIn),
                    },
                    "edges": self.tab.topology().map(|v| self.model.topology.view(v)
                        .neighbours(n.id()).map(|(e, _, _)| e.clone()).collect::<Vec<_>>()),
                })
            }
            Item::Connection(c) => serde_json::json!({
                "connection": c.conn,
                "sentBytesPerSecond": c.sent_per_second,
                "receivedBytesPerSecond": c.received_per_second,
            }),
            Item::Agent(a) => serde_json::to_value(a).unwrap_or_default(),
            Item::Framework(f) => serde_json::to_value(f).unwrap_or_default(),
            Item::Task(t) => serde_json::to_value(t).unwrap_or_default(),
        };
        Some((item.key().to_owned(), value))
    }

    fn export(&mut self) -> Option<Command> {
        match self.details_json() {
            Some((id, value)) => Some(Command::Export {
                id,
                json: serde_json::to_string_pretty(&value).unwrap_or_default(),
            }),
            None => {
                self.notify("nothing selected to export", Level::Info);
                None
            }
        }
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}
