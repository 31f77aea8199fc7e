//! The Approvals view (`:approvals`): jobs the two-person rule holds, each
//! with who asked, how long ago, how many valid approvals of how many it
//! needs, and below the selected one its reasons and every signature (and
//! why one does not count). `a` approves the selected request with the
//! operator's SSH key through the confirmation, as `maestro approve ID`.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::approval::Pending as Request;
use crate::terminal_text::sanitize;
use crate::tui::action::{Action, ApprovePlan, Pending};
use crate::tui::text::{age, dim, fit};

#[derive(Default)]
pub struct ApprovalsView {
    items: Vec<Request>,
    loaded: bool,
    error: Option<String>,
    selected: usize,
    now_ms: i64,
}

impl ApprovalsView {
    pub fn new() -> ApprovalsView {
        ApprovalsView::default()
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn set(&mut self, result: Result<Vec<Request>, String>) {
        self.loaded = true;
        match result {
            Ok(items) => {
                self.items = items;
                self.error = None;
                self.selected = self.selected.min(self.items.len().saturating_sub(1));
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.items.len().saturating_sub(1));
                Some(Action::Redraw)
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Some(Action::Redraw)
            }
            KeyCode::Char('a') => Some(match self.items.get(self.selected) {
                None => Action::Unavailable("no approval request is pending".into()),
                Some(r) => Action::Confirm(Pending::Approve(ApprovePlan {
                    id: r.approval.id.clone(),
                    summary: r.approval.summary.clone(),
                    requested_by: r.approval.requested_by.clone(),
                    plan: r.approval.fingerprint.clone(),
                    valid: r.valid,
                    quorum: r.quorum,
                })),
            }),
            _ => None,
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let rows = (self.items.len() as u16 + 2).clamp(3, area.height / 2 + 2);
        let [list, detail] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
        let width = list.width.saturating_sub(2) as usize;
        let mut lines: Vec<Line> = super::list::placeholder(
            super::list::ListState {
                source: "the run store",
                error: self.error.as_deref(),
                loaded: self.loaded,
                is_empty: self.items.is_empty(),
                empty: "no job is waiting for approval",
            },
            width,
        )
        .into_iter()
        .collect();
        for (i, r) in self.items.iter().enumerate() {
            let a = &r.approval;
            let text = format!(
                "{} {}  {:>8}  {:14} {}/{} approvals  {}",
                if i == self.selected { "▶" } else { " " },
                a.id,
                age(self.now_ms, a.requested_ms),
                sanitize(a.requested_by.as_bytes()),
                r.valid,
                r.quorum,
                sanitize(a.summary.as_bytes())
            );
            let style = if r.valid >= r.quorum {
                Style::new().fg(Color::Green)
            } else {
                Style::new().fg(Color::Yellow)
            };
            lines.push(Line::styled(fit(&text, width), style));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(" approvals  a approve with your key ")),
            list,
        );
        let Some(r) = self.items.get(self.selected) else {
            frame.render_widget(Block::bordered(), detail);
            return;
        };
        let a = &r.approval;
        let mut lines = vec![
            Line::from(format!("{} · {}", a.id, sanitize(a.summary.as_bytes()))),
            Line::styled(format!("plan {}", a.fingerprint), dim()),
            Line::from(format!(
                "requested by {} {} ago; the requester's own approval never counts",
                sanitize(a.requested_by.as_bytes()),
                age(self.now_ms, a.requested_ms)
            )),
        ];
        for reason in &a.reasons {
            lines.push(Line::styled(sanitize(reason.as_bytes()), dim()));
        }
        if r.signatures.is_empty() {
            lines.push(Line::styled("no signatures yet", dim()));
        }
        for s in &r.signatures {
            lines.push(match &s.rejected {
                None => Line::styled(
                    format!(
                        "  ✓ {} ({}), {} ago",
                        s.person,
                        s.key,
                        age(self.now_ms, s.signed_ms)
                    ),
                    Style::new().fg(Color::Green),
                ),
                Some(why) => Line::styled(
                    format!("  ✗ {}: not counted ({why})", s.person),
                    Style::new().fg(Color::Red),
                ),
            });
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" request ")),
            detail,
        );
    }
}
