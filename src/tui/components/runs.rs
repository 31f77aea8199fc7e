//! The runs view: run history from the store, newest first.

use std::cell::Cell;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell as TableCell, Paragraph, Row, Table, Wrap};

use super::Loadable;
use super::list::{Nav, navigate};
use crate::store::RunRow;
use crate::tui::action::Action;
use crate::tui::text::{age, header_style};

pub struct RunsView {
    runs: Loadable<Vec<RunRow>>,
    /// Where the runs come from, for the empty and error states.
    store: String,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
    now_ms: i64,
}

/// Runs listed (the store keeps them all; `maestro runs -n` shows more).
pub const RUNS_SHOWN: usize = 500;

impl RunsView {
    pub fn new(store: String) -> RunsView {
        RunsView {
            runs: Loadable::Loading,
            store,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
            now_ms: 0,
        }
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn set_runs(&mut self, runs: Loadable<Vec<RunRow>>) {
        // Stay on the same run across reloads.
        let current = self.current().map(|r| r.id.clone());
        self.runs = runs;
        if let Loadable::Loaded(runs) = &self.runs {
            self.cursor = current
                .and_then(|id| runs.iter().position(|r| r.id == id))
                .unwrap_or(0);
        }
    }

    fn current(&self) -> Option<&RunRow> {
        match &self.runs {
            Loadable::Loaded(runs) => runs.get(self.cursor),
            _ => None,
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let len = match &self.runs {
            Loadable::Loaded(r) => r.len(),
            _ => 0,
        };
        if let Some(nav) = Nav::of(key) {
            self.cursor = navigate(nav, self.cursor, len, self.page.get());
            return Some(Action::Redraw);
        }
        Some(match key.code {
            KeyCode::Enter => match self.current() {
                Some(r) => Action::OpenRun(r.id.clone()),
                None => Action::Unavailable("no run to open".into()),
            },
            KeyCode::Char('r') => Action::Show(crate::tui::action::ViewId::Runs),
            _ => return None,
        })
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let count = match &self.runs {
            Loadable::Loaded(r) => format!(" {}", r.len()),
            _ => String::new(),
        };
        let block = Block::bordered().title(Line::styled(format!(" runs{count} "), header_style()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let runs = match &self.runs {
            Loadable::Loading => {
                frame.render_widget(Paragraph::new("reading the run store…"), inner);
                return;
            }
            Loadable::Failed(e) => {
                frame.render_widget(
                    Paragraph::new(format!("Cannot read the run store {}:\n{e}", self.store))
                        .style(Style::new().fg(Color::Red))
                        .wrap(Wrap { trim: false }),
                    inner,
                );
                return;
            }
            Loadable::Loaded(r) if r.is_empty() => {
                frame.render_widget(
                    Paragraph::new(format!(
                        "No runs recorded yet in {}.\nMark nodes in :nodes with Space and press x to run a command.",
                        self.store
                    ))
                    .wrap(Wrap { trim: false }),
                    inner,
                );
                return;
            }
            Loadable::Loaded(r) => r,
        };
        let visible =
            super::list::visible(&self.offset, &self.page, self.cursor, runs.len(), inner);
        let (offset, end) = (visible.start, visible.end);
        let rows = runs[offset..end].iter().map(|r| {
            let failed = r.failed + r.timed_out + r.cancelled;
            let state_style = match r.state.as_str() {
                "running" => Style::new().fg(Color::Yellow),
                "cancelled" => Style::new().fg(Color::DarkGray),
                _ if failed + r.unreachable > 0 => Style::new().fg(Color::Red),
                _ => Style::new().fg(Color::Green),
            };
            Row::new(vec![
                TableCell::from(r.id.clone()),
                TableCell::from(r.kind.as_str()),
                TableCell::from(r.state.as_str()).style(state_style),
                TableCell::from(r.node_count.to_string()),
                TableCell::from(r.ok.to_string()),
                TableCell::from(failed.to_string()),
                TableCell::from(r.unreachable.to_string()),
                TableCell::from(age(self.now_ms, r.started_ms)),
                TableCell::from(
                    crate::terminal_text::sanitize(r.command.as_bytes()).replace('\n', " "),
                ),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(20),
                Constraint::Length(5),
                Constraint::Length(9),
                Constraint::Length(5),
                Constraint::Length(4),
                Constraint::Length(4),
                Constraint::Length(5),
                Constraint::Length(4),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(vec![
                "RUN", "KIND", "STATE", "NODES", "OK", "FAIL", "UNRCH", "AGE", "COMMAND",
            ])
            .style(header_style()),
        );
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }
}
