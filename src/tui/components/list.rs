//! Cursor movement, scrolling and the selectable table shared by every list
//! view: the views keep their own cursor and offset and build only the
//! visible rows.

use std::cell::Cell;
use std::ops::Range;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{HighlightSpacing, Table, TableState};

use crate::tui::text::selected_style;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
}

impl Nav {
    pub fn of(key: KeyEvent) -> Option<Nav> {
        if key.modifiers.contains(KeyModifiers::CONTROL) {
            return match key.code {
                KeyCode::Char('f') => Some(Nav::PageDown),
                KeyCode::Char('b') => Some(Nav::PageUp),
                _ => None,
            };
        }
        Some(match key.code {
            KeyCode::Up | KeyCode::Char('k') => Nav::Up,
            KeyCode::Down | KeyCode::Char('j') => Nav::Down,
            KeyCode::PageUp => Nav::PageUp,
            KeyCode::PageDown => Nav::PageDown,
            KeyCode::Home | KeyCode::Char('g') => Nav::First,
            KeyCode::End | KeyCode::Char('G') => Nav::Last,
            _ => return None,
        })
    }
}

/// The cursor after `nav` in a list of `len` with pages of `page` rows.
pub fn navigate(nav: Nav, cursor: usize, len: usize, page: usize) -> usize {
    let last = len.saturating_sub(1);
    match nav {
        Nav::Up => cursor.saturating_sub(1),
        Nav::Down => (cursor + 1).min(last),
        Nav::PageUp => cursor.saturating_sub(page.max(1)),
        Nav::PageDown => (cursor + page.max(1)).min(last),
        Nav::First => 0,
        Nav::Last => last,
    }
}

/// The first visible row so that `cursor` is on screen, moving as little
/// as possible from `offset`.
pub fn scroll(offset: usize, cursor: usize, page: usize, len: usize) -> usize {
    let page = page.max(1);
    let mut offset = offset.min(len.saturating_sub(page));
    if cursor < offset {
        offset = cursor;
    } else if cursor >= offset + page {
        offset = cursor + 1 - page;
    }
    offset
}

/// The rows of a `len`-row table that fit in `inner` below its header, so
/// that `cursor` is on screen; remembers the page (for PgUp/PgDn) and the
/// offset (so the view moves as little as possible) across frames.
pub fn visible(
    offset: &Cell<usize>,
    page: &Cell<usize>,
    cursor: usize,
    len: usize,
    inner: Rect,
) -> Range<usize> {
    let rows = (inner.height as usize).saturating_sub(1).max(1);
    page.set(rows);
    let first = scroll(offset.get(), cursor, rows, len);
    offset.set(first);
    first..(first + rows).min(len)
}

/// Draw `table` (the visible rows only) with the selection look every view
/// shares, the cursor's row highlighted.
pub fn draw_table(frame: &mut Frame, table: Table<'_>, inner: Rect, cursor: usize, first: usize) {
    let table = table
        .column_spacing(1)
        .highlight_symbol("> ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(selected_style());
    let mut state = TableState::default().with_selected(Some(cursor.saturating_sub(first)));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// What a list view knows about its rows before it draws them.
pub struct ListState<'a> {
    /// What the rows come from, for the error line ("the run store").
    pub source: &'a str,
    pub error: Option<&'a str>,
    pub loaded: bool,
    pub is_empty: bool,
    /// What to say when there is nothing (and what makes something).
    pub empty: &'a str,
}

/// The one line a list view shows in place of its rows: why its source
/// could not be read, that it is still loading, or that there is nothing.
/// `None` when there are rows to show.
pub fn placeholder(state: ListState<'_>, width: usize) -> Option<ratatui::text::Line<'static>> {
    use crate::tui::text::{dim, fit};
    if let Some(e) = state.error {
        return Some(ratatui::text::Line::from(fit(
            &format!("{} could not be read: {e}", state.source),
            width,
        )));
    }
    if !state.is_empty {
        return None;
    }
    Some(ratatui::text::Line::styled(
        if state.loaded {
            state.empty.to_string()
        } else {
            "loading…".to_string()
        },
        dim(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrolling_keeps_the_cursor_visible() {
        assert_eq!(scroll(0, 5, 10, 100), 0);
        assert_eq!(scroll(0, 10, 10, 100), 1);
        assert_eq!(scroll(50, 20, 10, 100), 20);
        assert_eq!(
            scroll(95, 99, 10, 100),
            90,
            "no empty space below the last row"
        );
        assert_eq!(navigate(Nav::PageDown, 95, 100, 10), 99);
        assert_eq!(navigate(Nav::Up, 0, 0, 10), 0);
    }
}
