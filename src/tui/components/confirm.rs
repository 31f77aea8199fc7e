//! The confirmation dialog: shows the plan of a [`Pending`] action (what
//! runs, on exactly which nodes) and answers `Confirmed(the same plan)` or
//! `Dismiss`. It is modal: every key is its.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::tui::action::{Action, Pending};
use crate::tui::text::{count, dim, header_style, selected_style};

/// Node names shown before "… and N more".
const NAMES_SHOWN: usize = 40;

pub struct ConfirmDialog {
    pub pending: Pending,
    /// How the work will run (forks, timeouts, where it is recorded).
    details: Vec<String>,
    yes_focused: bool,
}

impl ConfirmDialog {
    pub fn new(pending: Pending, details: Vec<String>) -> ConfirmDialog {
        ConfirmDialog {
            pending,
            details,
            yes_focused: false,
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        Some(match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => Action::Confirmed(self.pending.clone()),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Action::Dismiss,
            KeyCode::Enter if self.yes_focused => Action::Confirmed(self.pending.clone()),
            KeyCode::Enter => Action::Dismiss,
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right => {
                self.yes_focused = !self.yes_focused;
                Action::Redraw
            }
            _ => Action::Unavailable("y runs exactly what is shown; n or Esc cancels".into()),
        })
    }

    fn lines(&self) -> (String, Vec<Line<'_>>) {
        match &self.pending {
            Pending::Exec(plan) => {
                let what = match plan.job {
                    crate::tui::action::Job::Command => "this command",
                    crate::tui::action::Job::HardenAudit(_) => "this audit (it changes nothing)",
                    _ => "this (it changes the nodes)",
                };
                let mut lines = vec![
                    Line::from(format!(
                        "Run {what} on {}:",
                        count(plan.nodes.len(), "node")
                    )),
                    Line::from(""),
                    Line::styled(
                        format!(
                            "  {}",
                            crate::terminal_text::sanitize(plan.command.as_bytes())
                        ),
                        header_style(),
                    ),
                    Line::from(""),
                ];
                let mut names = plan.nodes[..plan.nodes.len().min(NAMES_SHOWN)].join(", ");
                if plan.nodes.len() > NAMES_SHOWN {
                    names.push_str(&format!(", … and {} more", plan.nodes.len() - NAMES_SHOWN));
                }
                lines.push(Line::from(vec![
                    Span::styled("nodes  ", dim()),
                    Span::raw(names),
                ]));
                for d in &self.details {
                    lines.push(Line::styled(d.clone(), dim()));
                }
                (" confirm: exec ".to_string(), lines)
            }
            Pending::QuitDuringRun => (
                " confirm: quit ".to_string(),
                vec![
                    Line::from("A run is still in flight."),
                    Line::from("Quit and cancel it? Nodes that finished keep their results;"),
                    Line::from("the run is recorded as cancelled."),
                ],
            ),
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let (title, mut lines) = self.lines();
        lines.push(Line::from(""));
        let button = |label: &'static str, focused: bool| {
            if focused {
                Span::styled(label, selected_style())
            } else {
                Span::raw(label)
            }
        };
        let yes = match self.pending {
            Pending::Exec(_) => "[ y: run ]",
            Pending::QuitDuringRun => "[ y: quit ]",
        };
        lines.push(Line::from(vec![
            button(yes, self.yes_focused),
            Span::raw("   "),
            button("[ n: cancel ]", !self.yes_focused),
        ]));
        let width = area.width.saturating_sub(4).min(90);
        // Wrapped height, roughly: long lines take several rows.
        let inner_width = width.saturating_sub(2).max(1) as usize;
        let height: usize = lines
            .iter()
            .map(|l| l.width().max(1).div_ceil(inner_width))
            .sum::<usize>()
            + 2;
        let popup = area.centered(
            Constraint::Length(width),
            Constraint::Length((height as u16).min(area.height)),
        );
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::bordered()
                    .border_style(Style::new().fg(Color::Yellow))
                    .title(Line::styled(title, header_style())),
            ),
            popup,
        );
    }
}
