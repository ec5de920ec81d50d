//! The TUI as a benchmark watches a live collector: `orca`'s own feed and run loop drawing to
//! an off-screen terminal whose frames are timed, and a tap that dates each topology delta
//! from the moment its agent sent the report, so `App::latency` measures agent report →
//! screen.
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use orca_proto::topology::v1 as pb;
use orca_tui::{feed::Event, run::Effects};
use ratatui::{
    backend::{Backend, ClearType, TestBackend, WindowSize},
    buffer::Cell as BufferCell,
    layout::{Position, Size},
};
use tokio::sync::mpsc;

/// What the watching TUI does about actions: nothing (no keys are pressed).
pub struct NoEffects;

impl Effects for NoEffects {
    fn kill(&self, _: String, _: String) {}
    fn launch(&self, _: orca_tui::app::LaunchRequest) {}
    fn fetch_series(&self, _: String) {}
    fn container_action(
        &self,
        _: orca_tui::app::ContainerTarget,
        _: orca_proto::cluster::v1::ContainerAction,
    ) {
    }
    fn agent_action(&self, _: String, _: String, _: orca_tui::app::AgentAction) {}
    fn open_logs(&self, _: orca_tui::app::ContainerTarget, _: u64) {}
    fn close_logs(&self) {}
    fn copy(&self, _: &str) {}
    fn export_dir(&self) -> std::path::PathBuf {
        std::env::temp_dir()
    }
    fn migration(&self, _: orca_tui::migration::MigrationCommand) {}
}

/// A `TestBackend` that times every frame: from the terminal asking its size (the first
/// thing `Terminal::draw` does) to the flush that ends it, so the rows' upkeep, layout,
/// rendering and the diff are all inside.
pub struct TimedBackend {
    inner: TestBackend,
    started: Cell<Option<Instant>>,
    pub frames: Histogram<u64>,
}

impl TimedBackend {
    pub fn new(width: u16, height: u16) -> Self {
        Self {
            inner: TestBackend::new(width, height),
            started: Cell::new(None),
            frames: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Backend for TimedBackend {
    type Error = <TestBackend as Backend>::Error;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a BufferCell)>,
    {
        self.inner.draw(content)
    }

    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.inner.show_cursor()
    }

    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(position)
    }

    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> Result<Size, Self::Error> {
        if self.started.get().is_none() {
            self.started.set(Some(Instant::now()));
        }
        self.inner.size()
    }

    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        if let Some(started) = self.started.take() {
            let _ = self
                .frames
                .record((started.elapsed().as_micros() as u64).max(1));
        }
        self.inner.flush()
    }
}

/// Passes `events` on, each topology delta dated from the earliest report send time
/// `sent_of` finds in it (wall clock, µs since the epoch). A delta without one (another view
/// whose nodes carry no send time) is dated from the newest send time seen so far, which can
/// only make the figure larger.
pub fn date_from_send(
    mut events: mpsc::Receiver<Event>,
    sent_of: fn(&pb::TopologyDelta) -> Option<u64>,
) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel::<Event>(4096);
    tokio::spawn(async move {
        let mut newest_sent: Option<Instant> = None;
        while let Some(event) = events.recv().await {
            let event = match event {
                Event::Topology(view, delta, received) => {
                    let sent = sent_of(&delta).and_then(|us| {
                        let ago = Duration::from_micros(wall_us().saturating_sub(us));
                        Instant::now().checked_sub(ago)
                    });
                    if let Some(sent) = sent {
                        newest_sent = Some(newest_sent.map_or(sent, |n| n.max(sent)));
                    }
                    let from = sent.or(newest_sent).map_or(received, |s| s.min(received));
                    Event::Topology(view, delta, from)
                }
                event => event,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Microseconds since the epoch.
pub fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A latency histogram (µs) as JSON: samples, p50, p99 and max in milliseconds.
pub fn figures(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| us as f64 / 1000.0;
    serde_json::json!({
        "samples": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
    })
}
