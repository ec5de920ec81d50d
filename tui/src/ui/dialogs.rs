//! Pop-ups over the main screen: key help, confirmations, the launch form, saved filters.
use ratatui::{
    Frame,
    layout::{Constraint, Flex, Layout, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Wrap},
};

use crate::app::{App, LaunchForm, Mode};

/// Every key, as `?` shows it.
pub const KEYS: &[(&str, &str)] = &[
    ("1-7 Tab S-Tab", "switch view (hosts … tasks)"),
    ("↑↓ j k PgUp PgDn g G", "move"),
    (
        "Enter → l",
        "drill down: host → containers → processes → conns",
    ),
    ("Esc ← h Bksp", "clear the filter, then back up"),
    (
        "/",
        "filter: words kind: label:k=v ns: host: state: cpu>50%",
    ),
    ("f  F", "saved filters  ·  save the current filter"),
    ("s  S", "sort by the next column  ·  reverse"),
    ("d", "details: metadata, usage sparklines, connections"),
    ("n", "neighbourhood graph of the selected node"),
    ("e y", "export the details as JSON (file + clipboard)"),
    ("L", "launch a command task"),
    ("x", "kill the selected task (asks first)"),
    ("D  R", "agent: drain · reactivate (asks first)"),
    (
        "a  o",
        "container: stop/start/pause/restart/remove · output",
    ),
    (
        "M",
        "migration view (with --migration); its keys are shown there",
    ),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
];

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

pub fn draw(frame: &mut Frame<'_>, app: &App, area: Rect) {
    match &app.mode {
        Mode::Help => help(frame, area),
        Mode::Confirm { prompt, .. } => {
            let popup = centred(area, (prompt.chars().count() as u16 + 4).max(30), 3);
            frame.render_widget(Clear, popup);
            frame.render_widget(
                Paragraph::new(prompt.as_str())
                    .wrap(Wrap { trim: true })
                    .block(Block::default().borders(Borders::ALL).title(" confirm ")),
                popup,
            );
        }
        Mode::Launch(form) => launch(frame, form, area),
        Mode::SavedFilters { selected } => {
            let items: Vec<String> = app
                .saved
                .filters
                .iter()
                .map(|f| format!("{:<12} {}", f.tab, f.query))
                .collect();
            let popup = centred(area, 70, items.len() as u16 + 3);
            choice(
                frame,
                popup,
                " saved filters ",
                &items,
                *selected,
                "Enter apply · D delete · Esc close",
            );
        }
        Mode::ContainerMenu {
            target,
            actions,
            selected,
        } => {
            let items: Vec<String> = actions.iter().map(|a| format!(" {}", a.word())).collect();
            let popup = centred(area, 44, items.len() as u16 + 3);
            let title = format!(" {} ", target.name);
            choice(
                frame,
                popup,
                &title,
                &items,
                *selected,
                "Enter choose · Esc close",
            );
        }
        Mode::Normal | Mode::Filter { .. } | Mode::Logs => {}
    }
}

/// A list to choose from, the selected item reversed, a hint under it.
fn choice(
    frame: &mut Frame<'_>,
    popup: Rect,
    title: &str,
    items: &[String],
    selected: usize,
    hint: &'static str,
) {
    frame.render_widget(Clear, popup);
    let mut lines: Vec<Line<'_>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let line = Line::from(item.as_str());
            if i == selected {
                line.style(Style::default().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    lines.push(Line::from(Span::styled(
        hint,
        Style::default().add_modifier(Modifier::DIM),
    )));
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(title)),
        popup,
    );
}

fn help(frame: &mut Frame<'_>, area: Rect) {
    let popup = centred(area, 78, KEYS.len() as u16 + 4);
    frame.render_widget(Clear, popup);
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{keys:<21}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(Span::styled(
        "●/▲/✖/· healthy, degraded, failed, ended · Esc closes",
        Style::default().add_modifier(Modifier::DIM),
    )));
    frame.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")),
        popup,
    );
}

fn launch(frame: &mut Frame<'_>, form: &LaunchForm, area: Rect) {
    let popup = centred(area, 64, LaunchForm::LABELS.len() as u16 + 5);
    frame.render_widget(Clear, popup);
    let mut lines: Vec<Line<'_>> = LaunchForm::LABELS
        .iter()
        .zip(&form.fields)
        .enumerate()
        .map(|(i, (label, value))| {
            let focused = i == form.focus;
            let cursor = if focused { "▏" } else { "" };
            let style = if focused {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                Style::default()
            };
            Line::from(vec![
                Span::styled(
                    format!("{label:>12} "),
                    Style::default().add_modifier(Modifier::DIM),
                ),
                Span::styled(format!("{value}{cursor}"), style),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    match &form.error {
        Some(error) => lines.push(Line::from(Span::styled(
            error.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        ))),
        None => lines.push(Line::from(Span::styled(
            "Tab next field · Enter launch · Esc cancel",
            Style::default().add_modifier(Modifier::DIM),
        ))),
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" launch a task "),
        ),
        popup,
    );
}
