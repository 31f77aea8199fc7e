//! The Ledger view (`:ledger`): the evidence ledger's entries, newest
//! first (who, verified or not; what; the decision and the policies that
//! made it; how many nodes ended ok), with `ledger verify`'s answer in the
//! title, and the selected entry in full below (hashes, inputs, per-node
//! outcomes, the refusal's reasons). The data is a [`LedgerData`] the
//! event loop reads from the ledger file; drawing reads only it.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::ledger::{Entry, Report};
use crate::terminal_text::sanitize;
use crate::tui::action::Action;
use crate::tui::text::{dim, fit};

/// What the view shows: the newest entries and the verify report.
#[derive(Debug, Clone)]
pub struct LedgerData {
    /// Newest first.
    pub entries: Vec<Entry>,
    pub verify: Result<Report, String>,
}

#[derive(Default)]
pub struct LedgerView {
    data: Option<LedgerData>,
    error: Option<String>,
    selected: usize,
}

fn who(e: &Entry) -> String {
    let a = &e.body.actor;
    if a.verified {
        a.name.clone()
    } else {
        format!("{} (unverified)", a.name)
    }
}

fn nodes_ok(e: &Entry) -> String {
    if e.body.nodes.is_empty() {
        return String::new();
    }
    let ok = e.body.nodes.iter().filter(|n| n.outcome == "ok").count();
    format!("{ok}/{} ok", e.body.nodes.len())
}

impl LedgerView {
    pub fn new() -> LedgerView {
        LedgerView::default()
    }

    pub fn set(&mut self, result: Result<LedgerData, String>) {
        match result {
            Ok(d) => {
                self.selected = self.selected.min(d.entries.len().saturating_sub(1));
                self.data = Some(d);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let n = self.data.as_ref().map_or(0, |d| d.entries.len());
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(n.saturating_sub(1));
                Some(Action::Redraw)
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Some(Action::Redraw)
            }
            _ => None,
        }
    }

    fn title(&self) -> (String, Style) {
        match self.data.as_ref().map(|d| &d.verify) {
            None => (" ledger ".into(), dim()),
            Some(Ok(r)) => match &r.problem {
                None => (
                    format!(
                        " ledger · verified: {} entries, {} signed checkpoints ",
                        r.entries, r.checkpoints_checked
                    ),
                    Style::new().fg(Color::Green),
                ),
                Some(p) => (
                    format!(" ledger · NOT VERIFIED: {p} "),
                    Style::new().fg(Color::Red),
                ),
            },
            Some(Err(e)) => (
                format!(" ledger · cannot be verified: {e} "),
                Style::new().fg(Color::Red),
            ),
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let entries = self.data.as_ref().map_or(&[][..], |d| &d.entries[..]);
        let rows = (entries.len() as u16 + 2).clamp(3, area.height / 2 + 2);
        let [list, detail] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
        let width = list.width.saturating_sub(2) as usize;
        let mut lines: Vec<Line> = super::list::placeholder(
            super::list::ListState {
                source: "the ledger",
                error: self.error.as_deref(),
                loaded: self.data.is_some(),
                is_empty: entries.is_empty(),
                empty: "no entries yet: every job the gate decides is recorded here",
            },
            width,
        )
        .into_iter()
        .collect();
        // Keep the selection in view.
        let visible = list.height.saturating_sub(2) as usize;
        let first = self.selected.saturating_sub(visible.saturating_sub(1));
        for (i, e) in entries.iter().enumerate().skip(first).take(visible.max(1)) {
            let b = &e.body;
            let policies: Vec<&str> = b.policy.iter().map(|p| p.policy.as_str()).collect();
            let text = format!(
                "{} #{:<5} {} {:8} {:20} {:17} {:9} {}  {}",
                if i == self.selected { "▶" } else { " " },
                e.seq,
                &e.time[..19.min(e.time.len())],
                b.action,
                who(e),
                b.decision,
                nodes_ok(e),
                sanitize(b.description.as_bytes()),
                policies.join(" ")
            );
            let style = match b.decision.as_str() {
                "denied" | "invalid" => Style::new().fg(Color::Red),
                "blocked" | "awaiting_approval" => Style::new().fg(Color::Yellow),
                _ => Style::new(),
            };
            lines.push(Line::styled(fit(&text, width), style));
        }
        let (title, title_style) = self.title();
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(Line::styled(fit(&title, width), title_style))),
            list,
        );
        let Some(e) = entries.get(self.selected) else {
            frame.render_widget(Block::bordered(), detail);
            return;
        };
        let b = &e.body;
        let mut lines = vec![
            Line::from(format!(
                "entry {} · {} · run {}",
                e.seq,
                e.time,
                b.run.as_deref().unwrap_or("-")
            )),
            Line::styled(format!("hash {}", e.hash), dim()),
            Line::styled(format!("prev {}", e.prev), dim()),
            Line::from(format!(
                "{} {} on {} — {}",
                who(e),
                b.action,
                sanitize(b.target.as_bytes()),
                b.decision
            )),
        ];
        if let Some(c) = &b.inputs.sot_commit {
            lines.push(Line::styled(format!("SoT commit {c}"), dim()));
        }
        for (k, v) in &b.inputs.digests {
            lines.push(Line::styled(format!("{k} {v}"), dim()));
        }
        for p in &b.policy {
            lines.push(Line::from(format!(
                "policy {} {} ({})",
                p.decision, p.policy, p.effect
            )));
        }
        if !b.approvals.is_empty() {
            lines.push(Line::from(format!("approval {}", b.approvals.join(", "))));
        }
        if let Some(note) = &b.note {
            for l in note.lines() {
                lines.push(Line::from(sanitize(l.as_bytes())));
            }
        }
        for n in &b.nodes {
            lines.push(Line::from(format!("  {:24} {}", n.node, n.outcome)));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" entry ")),
            detail,
        );
    }
}
