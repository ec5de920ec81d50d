//! The Migration view drawn over the body: the six phases as a timeline, the last gate's
//! checks with their figures, the sync's lag and throughput sparklines, both ensembles
//! (servers, sessions, masters), agents and tasks, held conflicts and the recent timeline.
use std::time::Instant;

use orca_migrate::{
    MigrationState, Status,
    overview::{EnsembleView, Overview},
    state::{PHASES, phase_name},
};
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Sparkline, Wrap},
};

use crate::migration::{MigrationView, status_word};

const HINT: &str =
    " a advance · r roll back a phase · R roll back all · j k A B resolve · Esc back ";

fn ok_style(ok: bool) -> Style {
    if ok {
        Style::default().fg(Color::Green)
    } else {
        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
    }
}

fn mark(ok: bool) -> Span<'static> {
    Span::styled(if ok { "✓ " } else { "✗ " }, ok_style(ok))
}

fn boxed(title: impl Into<String>) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", title.into()))
}

pub fn draw(frame: &mut Frame<'_>, view: &MigrationView, area: Rect, now: Instant) {
    frame.render_widget(Clear, area);
    let title = match &view.state {
        Some(s) => {
            let age = view.age(now).map_or(String::new(), |a| {
                format!(" · updated {:.1} s ago", a.as_secs_f64())
            });
            format!(
                " Migration {} · {}{age} · {} ",
                s.id,
                status_word(&s.status),
                view.api
            )
        }
        None => format!(" Migration · {} ", view.api),
    };
    let outer = Block::default()
        .borders(Borders::ALL)
        .title(title)
        .title_bottom(Line::from(HINT).right_aligned());
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let Some(state) = &view.state else {
        let why = view
            .problem
            .clone()
            .unwrap_or_else(|| "asking the migration service…".into());
        frame.render_widget(Paragraph::new(why).wrap(Wrap { trim: true }), inner);
        return;
    };
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let [phases, gate] =
        Layout::horizontal([Constraint::Length(46), Constraint::Fill(1)]).areas(top);
    draw_phases(frame, state, phases);
    draw_gate(frame, state, view.problem.as_deref(), gate);
    let [sync, cluster] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(middle);
    draw_sync(frame, view, sync);
    draw_cluster(frame, view.overview.as_ref(), state, cluster);
    let [ensembles, lists] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(bottom);
    draw_ensembles(frame, view.overview.as_ref(), ensembles);
    let [conflicts, timeline] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(lists);
    draw_conflicts(frame, view, conflicts);
    draw_timeline(frame, state, timeline);
}

/// How long a phase took, from its first to its last event in the timeline.
fn phase_took(state: &MigrationState, phase: u8) -> Option<f64> {
    let mut times = state
        .timeline
        .iter()
        .filter(|e| e.phase == phase)
        .map(|e| e.at_unix_ms);
    let first = times.next()?;
    let last = times.next_back().unwrap_or(first);
    Some((last - first) as f64 / 1000.0)
}

fn draw_phases(frame: &mut Frame<'_>, state: &MigrationState, area: Rect) {
    let mut lines = Vec::new();
    for (i, name) in PHASES.iter().enumerate() {
        let phase = i as u8 + 1;
        let (glyph, style, note) = match &state.status {
            Status::Halted { phase: p, .. } if *p == phase => {
                ("✗", ok_style(false), "halted".to_owned())
            }
            Status::Running { phase: p } if *p == phase => (
                "▶",
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
                "running".to_owned(),
            ),
            Status::RollingBack { from, to } if phase <= *from && phase > *to => (
                "↶",
                Style::default().fg(Color::Magenta),
                "undoing".to_owned(),
            ),
            Status::RolledBack => ("↶", Style::default().fg(Color::DarkGray), "undone".into()),
            _ if phase <= state.completed => (
                "✓",
                ok_style(true),
                phase_took(state, phase).map_or(String::new(), |s| format!("{s:.1} s")),
            ),
            _ => ("·", Style::default().fg(Color::DarkGray), String::new()),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{glyph} {phase} "), style),
            Span::styled(format!("{name:<28}"), style),
            Span::raw(format!(" {note}")),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).block(boxed("phases")), area);
}

fn draw_gate(frame: &mut Frame<'_>, state: &MigrationState, problem: Option<&str>, area: Rect) {
    let mut lines = Vec::new();
    if let Status::Halted { phase, reason } = &state.status {
        lines.push(Line::from(Span::styled(
            format!("HALTED in phase {phase} ({}): {reason}", phase_name(*phase)),
            ok_style(false),
        )));
    }
    let title = match state.gates.last() {
        Some(g) => {
            for c in &g.checks {
                lines.push(Line::from(vec![
                    mark(c.ok),
                    Span::styled(
                        format!("{}: ", c.name),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(c.detail.clone()),
                ]));
            }
            format!(
                "gate: phase {} {} · {} · {} ms",
                g.phase,
                g.stage,
                if g.passed { "passed" } else { "FAILED" },
                g.took_ms
            )
        }
        None => "gate".to_owned(),
    };
    if let Some(problem) = problem {
        lines.push(Line::from(Span::styled(
            problem.to_owned(),
            Style::default().fg(Color::Yellow),
        )));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(boxed(title)),
        area,
    );
}

fn draw_sync(frame: &mut Frame<'_>, view: &MigrationView, area: Rect) {
    let sync = view.overview.as_ref().and_then(|o| o.sync.as_ref());
    let title = match sync {
        None => "sync: not running".to_owned(),
        Some(s) => {
            let mut t = format!(
                "sync · p99 A→B {:.1} · B→A {:.1} ms · queue {} · conflicts {}",
                s.recent_lag_a_to_b_ms.p99, s.recent_lag_b_to_a_ms.p99, s.queue_depth, s.conflicts
            );
            if s.stalled_ms >= 1000 {
                t.push_str(&format!(" · STALLED {:.0} s", s.stalled_ms as f64 / 1000.0));
            }
            t
        }
    };
    let block = boxed(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [lag_caption, lag, put_caption, put] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(inner);
    let last = |series: &std::collections::VecDeque<u64>| series.back().copied().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(format!(
            "lag (mean per second): {:.1} ms",
            last(&view.lag_us) as f64 / 1000.0
        )),
        lag_caption,
    );
    let tail = |series: &std::collections::VecDeque<u64>, width: u16| -> Vec<u64> {
        let skip = series.len().saturating_sub(width as usize);
        series.iter().skip(skip).copied().collect()
    };
    frame.render_widget(
        Sparkline::default()
            .data(tail(&view.lag_us, lag.width))
            .style(Style::default().fg(Color::Yellow)),
        lag,
    );
    frame.render_widget(
        Paragraph::new(format!("throughput: {} writes/s", last(&view.throughput))),
        put_caption,
    );
    frame.render_widget(
        Sparkline::default()
            .data(tail(&view.throughput, put.width))
            .style(Style::default().fg(Color::Cyan)),
        put,
    );
}

fn draw_cluster(
    frame: &mut Frame<'_>,
    overview: Option<&Overview>,
    state: &MigrationState,
    area: Rect,
) {
    let mut lines = Vec::new();
    match overview {
        None => lines.push(Line::from("no view of the cluster (see the gate panel)")),
        Some(o) => {
            let leader = match &o.leader {
                Some(l) => format!(
                    "leader {} on {} for {:.0} s",
                    l.http.map_or(l.contender.clone(), |h| h.to_string()),
                    if l.on_b { "B" } else { "A" },
                    l.for_ms as f64 / 1000.0
                ),
                None => "no leader".to_owned(),
            };
            lines.push(Line::from(vec![
                mark(o.leader.is_some() && o.watching),
                Span::raw(leader),
            ]));
            let a = &o.agents;
            lines.push(Line::from(format!(
                "agents {} ({} active): on A {} · on B {} · drained {}",
                a.total, a.active, a.on_a, a.on_b, a.drained
            )));
            lines.push(Line::from(vec![
                mark(o.frameworks_disconnected.is_empty()),
                Span::raw(format!(
                    "frameworks {} · disconnected {}",
                    o.frameworks,
                    o.frameworks_disconnected.len()
                )),
            ]));
            let t = &state.tasks;
            let opt = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            lines.push(Line::from(format!(
                "tasks running {} · before {} · min {} · max {}",
                o.tasks_running,
                opt(t.before),
                opt(t.min_during),
                opt(t.max_during)
            )));
            lines.push(Line::from(vec![
                mark(o.interruptions.is_empty()),
                Span::raw(format!("task interruptions {}", o.interruptions.len())),
                Span::styled(
                    o.interruptions
                        .last()
                        .map_or(String::new(), |i| format!(" · {i}")),
                    Style::default().fg(Color::Red),
                ),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(boxed("cluster")), area);
}

fn ensemble_lines(e: &EnsembleView) -> Vec<Line<'static>> {
    let sessions: usize = e.servers.iter().filter_map(|s| s.sessions).sum();
    let mut lines = vec![Line::from(vec![
        mark(e.quorum),
        Span::styled(
            format!("{} · {} sessions", e.name, sessions),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(if e.quorum { "" } else { " · NO QUORUM" }),
    ])];
    for s in &e.servers {
        lines.push(Line::from(vec![
            Span::raw(format!("  {:<22}", s.server)),
            Span::styled(
                format!("{:<10}", s.mode.as_deref().unwrap_or("down")),
                ok_style(s.mode.is_some()),
            ),
            Span::raw(
                s.sessions
                    .map_or(String::new(), |n| format!(" {n} sessions")),
            ),
        ]));
    }
    if e.masters.is_empty() {
        lines.push(Line::from("  no master"));
    }
    for m in &e.masters {
        lines.push(Line::from(format!(
            "  master {}{}",
            m.http.map_or(m.id.clone(), |h| h.to_string()),
            if m.leader { " (leader)" } else { "" }
        )));
    }
    lines
}

fn draw_ensembles(frame: &mut Frame<'_>, overview: Option<&Overview>, area: Rect) {
    let lines: Vec<Line<'_>> = overview
        .map(|o| o.ensembles.iter().flat_map(ensemble_lines).collect())
        .unwrap_or_default();
    frame.render_widget(Paragraph::new(lines).block(boxed("ensembles")), area);
}

fn draw_conflicts(frame: &mut Frame<'_>, view: &MigrationView, area: Rect) {
    let conflicts = view
        .overview
        .as_ref()
        .map(|o| o.conflicts.as_slice())
        .unwrap_or_default();
    let lines: Vec<Line<'_>> = if conflicts.is_empty() {
        vec![Line::from("none held")]
    } else {
        conflicts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let text = format!(
                    "{} · A {} · B {}",
                    c.path,
                    c.a.as_deref().unwrap_or("absent"),
                    c.b.as_deref().unwrap_or("absent")
                );
                if i == view.conflict {
                    Line::from(Span::styled(
                        text,
                        Style::default().add_modifier(Modifier::REVERSED),
                    ))
                } else {
                    Line::from(text)
                }
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(boxed(format!("conflicts ({})", conflicts.len()))),
        area,
    );
}

fn draw_timeline(frame: &mut Frame<'_>, state: &MigrationState, area: Rect) {
    let rows = area.height.saturating_sub(2) as usize;
    let skip = state.timeline.len().saturating_sub(rows);
    let lines: Vec<Line<'_>> = state
        .timeline
        .iter()
        .skip(skip)
        .map(|e| {
            let took = e.took_ms.map_or(String::new(), |ms| format!(" ({ms} ms)"));
            Line::from(format!("[{}] {}{took}", e.phase, e.what))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).block(boxed("timeline")), area);
}
