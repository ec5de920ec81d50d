//! The log view drawn over the whole body: lines, search matches marked, and where it is.
use ratatui::{
    Frame,
    layout::Rect,
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph},
};

use crate::logs::LogView;

/// Lines of text the view shows in `area` (its border taken off).
pub fn height(area: Rect) -> usize {
    area.height.saturating_sub(2) as usize
}

pub fn draw(frame: &mut Frame<'_>, view: &LogView, area: Rect) {
    frame.render_widget(Clear, area);
    let rows = height(area);
    let first = view.first_visible(rows);
    let needle = view
        .search
        .as_ref()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase());
    let mut lines = Vec::with_capacity(rows);
    for i in first..(first + rows).min(view.len()) {
        let text = view.line(i).unwrap_or_default();
        lines.push(marked(text, needle.as_deref()));
    }
    let state = match (&view.ended, view.follow) {
        (Some(why), _) if !why.is_empty() => format!("ended: {why}"),
        (Some(_), _) => "ended".to_owned(),
        (None, true) => "following".to_owned(),
        (None, false) => format!("line {} of {}", first + 1, view.len()),
    };
    let bottom = match &view.typing {
        Some(t) => format!(" /{t}▏ "),
        None => match &view.search {
            Some(s) => format!(
                " /{s}: {} matches · n N · f follow · Esc close ",
                view.matches().len()
            ),
            None => " / search · f follow · ↑↓ PgUp PgDn · Esc close ".to_owned(),
        },
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} · {state} ", view.title))
        .title_bottom(Line::from(bottom).right_aligned());
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A line with every occurrence of the search shown reversed.
fn marked<'a>(text: &'a str, needle: Option<&str>) -> Line<'a> {
    let Some(needle) = needle else {
        return Line::from(text);
    };
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        // Case folding changed byte offsets: show the line unmarked rather than cut it wrongly.
        return Line::from(text);
    }
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(needle) {
        let start = at + found;
        let end = start + needle.len();
        if start > at {
            spans.push(Span::raw(&text[at..start]));
        }
        spans.push(Span::styled(
            &text[start..end],
            Style::default().add_modifier(Modifier::REVERSED),
        ));
        at = end;
    }
    spans.push(Span::raw(&text[at..]));
    Line::from(spans)
}
