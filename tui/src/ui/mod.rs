//! Drawing: the tab bar, the breadcrumb/filter line, the table, the details panel, the status
//! line and the dialogs. Only visible rows are formatted, so a frame costs the same at 1,000
//! or 50,000 nodes once rows are built.
mod details;
mod dialogs;
mod logs;
mod migration;

use std::time::Instant;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table, Tabs},
};

use crate::{
    app::{App, Level, LinkState, Mode},
    format,
    views::{self, Health, Tab},
};

/// Draws the whole screen. Rebuilds the current tab's rows first if their data moved.
pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    app.prepare();
    let area = frame.area();
    let [tabs, crumbs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tabs(frame, app, tabs);
    draw_crumbs(frame, app, crumbs);
    let (table, details) = split_body(app, body);
    draw_table(frame, app, table);
    if let Some(details) = details {
        details::draw(frame, app, details);
    }
    if app.logs.is_some() {
        app.log_height = logs::height(body);
    }
    if let Some(view) = &app.logs {
        logs::draw(frame, view, body);
    }
    if app.show_migration
        && app.logs.is_none()
        && let Some(view) = &app.migration
    {
        migration::draw(frame, view, body, Instant::now());
    }
    draw_status(frame, app, status);
    dialogs::draw(frame, app, area);
}

/// The table and, when shown, the details panel: beside it on wide screens, under it on
/// narrow ones (80 columns).
fn split_body(app: &App, body: Rect) -> (Rect, Option<Rect>) {
    if !app.details {
        return (body, None);
    }
    if body.width >= 140 {
        let [table, details] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(60)]).areas(body);
        (table, Some(details))
    } else {
        let [table, details] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(body);
        (table, Some(details))
    }
}

fn draw_tabs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut titles: Vec<Line<'_>> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| Line::from(format!("{} {}", i + 1, t.title())))
        .collect();
    if app.migration.is_some() {
        titles.push(Line::from("M Migration"));
    }
    let selected = if app.show_migration {
        Tab::ALL.len()
    } else {
        app.tab.index()
    };
    let tabs = Tabs::new(titles)
        .select(selected)
        .divider(" ")
        .padding("", "")
        .style(Style::default())
        .highlight_style(
            Style::default()
                .add_modifier(Modifier::REVERSED)
                .add_modifier(Modifier::BOLD),
        );
    frame.render_widget(tabs, area);
}

fn draw_crumbs(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let state = app.state();
    let mut spans = vec![Span::styled(
        app.tab.title(),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for crumb in &state.scopes {
        spans.push(Span::raw(" › "));
        spans.push(Span::raw(crumb.label.clone()));
    }
    let rows = state.rows();
    spans.push(Span::raw(format!("  {}/{}", rows.keys.len(), rows.total)));
    if let Some(col) = state.sort.column {
        let column = &app.tab.columns()[col];
        let arrow = match (column.numeric, state.sort.reverse) {
            (true, false) | (false, true) => "↓",
            _ => "↑",
        };
        spans.push(Span::raw(format!("  sort {}{arrow}", column.title)));
    } else if app.tab == Tab::Processes && state.query.is_empty() {
        spans.push(Span::raw("  tree"));
    }
    match &app.mode {
        Mode::Filter { input, error, .. } => {
            spans.push(Span::raw("  /"));
            spans.push(Span::styled(
                format!("{input}▏"),
                Style::default().add_modifier(Modifier::BOLD),
            ));
            if let Some(error) = error {
                spans.push(Span::styled(
                    format!(" {error}"),
                    Style::default().fg(Color::Red),
                ));
            }
        }
        _ if !state.query.is_empty() => {
            spans.push(Span::raw(format!("  filter: {}", state.query.text())));
        }
        _ => {}
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn health_style(health: Health) -> Style {
    match health {
        Health::Healthy => Style::default().fg(Color::Green),
        Health::Degraded => Style::default().fg(Color::Yellow),
        Health::Failed => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Health::Gone => Style::default()
            .fg(Color::DarkGray)
            .add_modifier(Modifier::DIM),
    }
}

/// Which columns fit: all that fit in order, the first text column taking what is left.
fn fitting_columns(tab: Tab, width: u16) -> Vec<usize> {
    let columns = tab.columns();
    let mut used = 2; // the health glyph
    let mut out = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let need = c.width + 1;
        if used + need > width && !out.is_empty() {
            break;
        }
        used += need;
        out.push(i);
    }
    out
}

fn draw_table(frame: &mut Frame<'_>, app: &mut App, area: Rect) {
    let tab = app.tab;
    let block = Block::default().borders(Borders::TOP);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 2 {
        return;
    }
    let page = (inner.height - 1) as usize;
    app.page = page;
    app.table_top = inner.y + 1;
    // Keep the selection on screen.
    let (selected, len) = (app.state().selected, app.state().rows().keys.len());
    let mut offset = app.tab_offset();
    if selected < offset {
        offset = selected;
    } else if selected >= offset + page {
        offset = selected + 1 - page;
    }
    offset = offset.min(len.saturating_sub(page));
    app.set_tab_offset(offset);

    let app = &*app;
    let state = app.state();
    let shown = fitting_columns(tab, inner.width);
    let columns = tab.columns();
    let header = Row::new(
        std::iter::once(Cell::from(" ")).chain(shown.iter().map(|i| {
            let title = columns[*i].title;
            if state.sort.column == Some(*i) {
                Cell::from(format!("{title}*"))
            } else {
                Cell::from(title)
            }
        })),
    )
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = state.rows();
    let end = (offset + page).min(rows.keys.len());
    let mut body = Vec::with_capacity(end - offset);
    for index in offset..end {
        let key = &rows.keys[index];
        let Some(item) = views::item(&app.model, tab, key) else {
            continue;
        };
        let health = item.health();
        let mut cells = views::cells(&item, tab, &app.model);
        if tab == Tab::Processes && !rows.tree.is_empty() {
            cells[1] = format!("{}{}", rows.tree_prefix(index), cells[1]);
        }
        let mut row_cells =
            vec![Cell::from(health.glyph().to_string()).style(health_style(health))];
        row_cells.extend(
            shown
                .iter()
                .map(|i| Cell::from(std::mem::take(&mut cells[*i]))),
        );
        let mut row = Row::new(row_cells);
        if health == Health::Gone {
            row = row.style(health_style(Health::Gone));
        }
        if index == state.selected {
            row = row.style(Style::default().add_modifier(Modifier::REVERSED));
        }
        body.push(row);
    }
    let widths: Vec<Constraint> = std::iter::once(Constraint::Length(1))
        .chain(shown.iter().enumerate().map(|(n, i)| {
            // The name column stretches; the rest keep their width.
            if n == name_column(tab) {
                Constraint::Min(columns[*i].width)
            } else {
                Constraint::Length(columns[*i].width)
            }
        }))
        .collect();
    let empty = body.is_empty();
    frame.render_widget(
        Table::new(body, widths).header(header).column_spacing(1),
        inner,
    );
    if empty {
        let text = empty_text(app);
        let area = Rect {
            y: inner.y + 2,
            height: 1,
            ..inner
        };
        frame.render_widget(
            Paragraph::new(text).style(Style::default().add_modifier(Modifier::DIM)),
            area,
        );
    }
}

fn name_column(tab: Tab) -> usize {
    match tab {
        Tab::Processes => 1,
        Tab::Connections => 2,
        _ => 0,
    }
}

fn empty_text(app: &App) -> String {
    let state = app.state();
    let loaded = match app.tab.topology() {
        Some(view) => app.model.topology.view(view).loaded,
        None => app.model.cluster.loaded,
    };
    if !loaded {
        match &app.link {
            LinkState::Down { .. } => {
                "  no data: the master is unreachable (see the status line)".into()
            }
            _ => "  waiting for the master…".into(),
        }
    } else if !state.query.is_empty() {
        format!(
            "  nothing matches {:?} (Esc clears the filter)",
            state.query.text()
        )
    } else {
        match app.tab {
            Tab::Frameworks => "  no frameworks subscribed".into(),
            Tab::Tasks => "  no tasks (L launches one)".into(),
            Tab::Containers => "  no containers here".into(),
            _ => "  nothing here yet".into(),
        }
    }
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let now = Instant::now();
    let mut spans = Vec::new();
    match &app.link {
        LinkState::Connected => {
            spans.push(Span::styled("● ", Style::default().fg(Color::Green)));
            spans.push(Span::raw(format!("connected {}", app.master)));
        }
        LinkState::Connecting => {
            spans.push(Span::styled("◌ ", Style::default().fg(Color::Yellow)));
            spans.push(Span::raw(format!("connecting to {}", app.master)));
        }
        LinkState::Down { reason, retry_at } => {
            spans.push(Span::styled(
                "✖ ",
                Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
            let wait = retry_at.saturating_duration_since(now).as_secs_f32();
            spans.push(Span::raw(format!(
                "master {} unreachable: {reason}; retrying in {wait:.0}s",
                app.master
            )));
        }
    }
    if let Some(at) = app.last_update {
        let ago = now.saturating_duration_since(at).as_secs_f32();
        spans.push(Span::raw(format!(" │ updated {ago:.1}s ago")));
    }
    if let Some(latency) = app.last_latency {
        spans.push(Span::raw(format!(
            " │ delta→screen {}ms p99 {}ms",
            latency.as_millis(),
            app.latency.value_at_quantile(0.99) / 1000
        )));
    }
    let mut line = Line::from(spans);
    if let Some((text, level, _)) = &app.message {
        let style = match level {
            Level::Info => Style::default().add_modifier(Modifier::BOLD),
            Level::Error => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        };
        line = Line::from(vec![Span::styled(text.clone(), style)]);
    }
    let help = Span::styled(" ? help", Style::default().add_modifier(Modifier::DIM));
    let help_width = help.width() as u16;
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(help_width)]).areas(area);
    frame.render_widget(Paragraph::new(line), left);
    frame.render_widget(Paragraph::new(Line::from(help)), right);
}

/// Bytes per second or percent for a sparkline's caption.
fn caption(metric: crate::model::topology::Metric, value: Option<f32>) -> String {
    use crate::model::topology::Metric;
    let Some(v) = value else {
        return "–".into();
    };
    match metric {
        Metric::Cpu => format::percent(v as f64),
        Metric::Memory => format::bytes(v as f64),
        Metric::NetOut | Metric::NetIn => {
            let r = format::rate(v as f64);
            if r.is_empty() { "0/s".into() } else { r }
        }
    }
}

#[cfg(test)]
mod tests;
