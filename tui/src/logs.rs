//! The log view: a container's output as it streams in, followed or scrolled, searchable.
use std::collections::VecDeque;

use ratatui::crossterm::event::{KeyCode, KeyEvent};

/// Lines kept (the oldest go first).
pub const MAX_LINES: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct LogView {
    /// Which stream feeds it (chunks of an older stream are ignored).
    pub stream: u64,
    pub title: String,
    lines: VecDeque<String>,
    partial: String,
    /// Stick to the newest line.
    pub follow: bool,
    /// First line shown when not following.
    pub top: usize,
    /// The search being typed, then the one in force.
    pub typing: Option<String>,
    pub search: Option<String>,
    /// Set when the stream ended: why (empty when it simply ended).
    pub ended: Option<String>,
    /// Lines dropped from the front to stay under `MAX_LINES`.
    pub dropped: u64,
}

/// What a key asks of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKey {
    Stay,
    Close,
}

impl LogView {
    pub fn new(stream: u64, title: impl Into<String>) -> Self {
        Self {
            stream,
            title: title.into(),
            lines: VecDeque::new(),
            partial: String::new(),
            follow: true,
            top: 0,
            typing: None,
            search: None,
            ended: None,
            dropped: 0,
        }
    }

    pub fn lines(&self) -> impl ExactSizeIterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(!self.partial.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Line `i`, counting the unfinished last line.
    pub fn line(&self, i: usize) -> Option<&str> {
        self.lines.get(i).map(String::as_str).or_else(|| {
            (i == self.lines.len() && !self.partial.is_empty()).then_some(self.partial.as_str())
        })
    }

    /// Appends output; complete lines are kept, the unfinished rest waits for more.
    pub fn push(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                let line = std::mem::take(&mut self.partial);
                self.lines.push_back(line.trim_end_matches('\r').to_owned());
                if self.lines.len() > MAX_LINES {
                    self.lines.pop_front();
                    self.dropped += 1;
                    self.top = self.top.saturating_sub(1);
                }
            }
            self.partial.push_str(piece);
        }
    }

    pub fn end(&mut self, why: Option<String>) {
        self.ended = Some(why.unwrap_or_default());
    }

    /// The first line shown in a window of `height` lines.
    pub fn first_visible(&self, height: usize) -> usize {
        if self.follow {
            self.len().saturating_sub(height)
        } else {
            self.top.min(self.len().saturating_sub(1))
        }
    }

    /// Lines holding the search, in order.
    pub fn matches(&self) -> Vec<usize> {
        let Some(needle) = self.search.as_ref().filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let needle = needle.to_lowercase();
        (0..self.len())
            .filter(|i| {
                self.line(*i)
                    .is_some_and(|l| l.to_lowercase().contains(&needle))
            })
            .collect()
    }

    /// Moves to the next (or previous) line holding the search; stops following.
    pub fn jump(&mut self, forward: bool, height: usize) {
        let matches = self.matches();
        let from = self.first_visible(height);
        let target = if forward {
            matches.iter().find(|m| **m > from).or(matches.first())
        } else {
            matches.iter().rev().find(|m| **m < from).or(matches.last())
        };
        if let Some(t) = target {
            self.follow = false;
            self.top = *t;
        }
    }

    pub fn key(&mut self, key: KeyEvent, height: usize) -> LogKey {
        if let Some(mut typing) = self.typing.take() {
            match key.code {
                KeyCode::Enter => {
                    self.search = Some(typing);
                    self.jump(true, height);
                }
                KeyCode::Esc => {}
                KeyCode::Backspace => {
                    typing.pop();
                    self.typing = Some(typing);
                }
                KeyCode::Char(c) => {
                    typing.push(c);
                    self.typing = Some(typing);
                }
                _ => self.typing = Some(typing),
            }
            return LogKey::Stay;
        }
        let page = height.max(1);
        let at = self.first_visible(height);
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => return LogKey::Close,
            KeyCode::Char('f') => {
                self.follow = !self.follow;
                self.top = at;
            }
            KeyCode::Char('/') => self.typing = Some(String::new()),
            KeyCode::Char('n') => self.jump(true, height),
            KeyCode::Char('N') => self.jump(false, height),
            KeyCode::Up | KeyCode::Char('k') => self.scroll_to(at.saturating_sub(1)),
            KeyCode::Down | KeyCode::Char('j') => self.scroll_to(at + 1),
            KeyCode::PageUp => self.scroll_to(at.saturating_sub(page)),
            KeyCode::PageDown => self.scroll_to(at + page),
            KeyCode::Home | KeyCode::Char('g') => self.scroll_to(0),
            KeyCode::End | KeyCode::Char('G') => self.follow = true,
            _ => {}
        }
        LogKey::Stay
    }

    fn scroll_to(&mut self, line: usize) {
        self.follow = false;
        self.top = line.min(self.len().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyModifiers;

    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn chunks_become_lines_and_the_oldest_go() {
        let mut v = LogView::new(1, "web");
        v.push(b"one\ntw");
        v.push(b"o\r\nthree");
        assert_eq!(v.lines().collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(v.line(2), Some("three"), "the unfinished line shows too");
        for i in 0..MAX_LINES {
            v.push(format!("{i}\n").as_bytes());
        }
        assert_eq!(v.lines().len(), MAX_LINES);
        assert!(v.dropped > 0);
    }

    #[test]
    fn follow_scroll_and_search() {
        let mut v = LogView::new(1, "web");
        for i in 0..100 {
            v.push(format!("line {i}{}\n", if i % 30 == 7 { " ERROR" } else { "" }).as_bytes());
        }
        assert_eq!(v.first_visible(10), 90, "following shows the end");
        v.key(key(KeyCode::PageUp), 10);
        assert!(!v.follow);
        assert_eq!(v.first_visible(10), 80);
        v.key(key(KeyCode::Char('/')), 10);
        for c in "error".chars() {
            v.key(key(KeyCode::Char(c)), 10);
        }
        v.key(key(KeyCode::Enter), 10);
        assert_eq!(v.matches(), [7, 37, 67, 97]);
        assert_eq!(v.first_visible(10), 97, "the next match after the view");
        v.key(key(KeyCode::Char('n')), 10);
        assert_eq!(v.first_visible(10), 7, "wraps around");
        v.key(key(KeyCode::Char('N')), 10);
        assert_eq!(v.first_visible(10), 97);
        v.key(key(KeyCode::Char('G')), 10);
        assert!(v.follow);
        assert_eq!(v.key(key(KeyCode::Esc), 10), LogKey::Close);
    }
}
