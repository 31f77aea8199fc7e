//! The confirmation dialog: shows the plan of a [`Pending`] action (what
//! runs, on exactly which nodes, and what the operations layer's check mode
//! says would change on each, with the admission gate's answer) and answers
//! `Confirmed(the same plan)` or `Dismiss`. It is modal: every key is its.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::Loadable;
use crate::tui::action::{Action, ExecPlan, Pending};
use crate::tui::app::Planned;
use crate::tui::text::{count, dim, header_style, selected_style};

/// Node names shown before "… and N more".
const NAMES_SHOWN: usize = 40;
/// Per-node plan lines shown before "… and N more".
const PLAN_LINES: usize = 12;

pub struct ConfirmDialog {
    pub pending: Pending,
    /// How the work will run (forks, timeouts, where it is recorded).
    details: Vec<String>,
    /// The plan of an exec, as it arrives from the operations layer.
    planned: Loadable<Planned>,
    yes_focused: bool,
}

impl ConfirmDialog {
    pub fn new(pending: Pending, details: Vec<String>) -> ConfirmDialog {
        ConfirmDialog {
            pending,
            details,
            planned: Loadable::Loading,
            yes_focused: false,
        }
    }

    /// The plan of `plan`; ignored unless it is the plan this dialog shows.
    pub fn set_plan(&mut self, plan: &ExecPlan, result: Result<Planned, String>) {
        if matches!(&self.pending, Pending::Exec(p) if p == plan) {
            self.planned = match result {
                Ok(p) => Loadable::Loaded(p),
                Err(e) => Loadable::Failed(e),
            };
        }
    }

    /// Why `y` cannot be pressed yet, if it cannot.
    fn not_ready(&self) -> Option<String> {
        if !matches!(self.pending, Pending::Exec(_)) {
            return None;
        }
        match &self.planned {
            Loadable::Loading => {
                Some("the plan is still being made (check mode); y works once it is shown".into())
            }
            Loadable::Failed(e) => Some(format!("no plan, so nothing can run: {e}")),
            Loadable::Loaded(Planned {
                refusal: Some(r), ..
            }) => Some(format!(
                "the gate refuses this: {}",
                r.reasons.first().cloned().unwrap_or_default()
            )),
            Loadable::Loaded(_) => None,
        }
    }

    fn confirm(&self) -> Action {
        match self.not_ready() {
            Some(why) => Action::Unavailable(why),
            None => Action::Confirmed(self.pending.clone()),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        Some(match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => self.confirm(),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Action::Dismiss,
            KeyCode::Enter if self.yes_focused => self.confirm(),
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
                lines.push(Line::from(""));
                lines.extend(self.plan_lines());
                for d in &self.details {
                    lines.push(Line::styled(d.clone(), dim()));
                }
                (" confirm: exec ".to_string(), lines)
            }
            Pending::Rollout(plan) => {
                let mut names = plan.nodes[..plan.nodes.len().min(NAMES_SHOWN)].join(", ");
                if plan.nodes.len() > NAMES_SHOWN {
                    names.push_str(&format!(", … and {} more", plan.nodes.len() - NAMES_SHOWN));
                }
                let lines = vec![
                    Line::from(format!("Rollout {} of {}:", plan.verb.as_str(), plan.agent)),
                    Line::from(""),
                    Line::styled(
                        format!(
                            "  {}",
                            crate::terminal_text::sanitize(plan.summary.as_bytes())
                        ),
                        header_style(),
                    ),
                    Line::from(""),
                    Line::from(vec![Span::styled("nodes  ", dim()), Span::raw(names)]),
                    Line::from(""),
                    Line::styled(
                        "promote passes the admission gate (kill switch, freeze windows) first",
                        dim(),
                    ),
                ];
                (format!(" confirm: rollout {} ", plan.verb.as_str()), lines)
            }
            Pending::Approve(plan) => (
                " confirm: approve ".to_string(),
                vec![
                    Line::from(format!("Approve {} with your SSH key?", plan.id)),
                    Line::from(""),
                    Line::styled(
                        format!(
                            "  {}",
                            crate::terminal_text::sanitize(plan.summary.as_bytes())
                        ),
                        header_style(),
                    ),
                    Line::from(""),
                    Line::from(vec![
                        Span::styled("requested by  ", dim()),
                        Span::raw(crate::terminal_text::sanitize(plan.requested_by.as_bytes())),
                    ]),
                    Line::from(vec![
                        Span::styled("plan          ", dim()),
                        Span::raw(plan.plan.clone()),
                    ]),
                    Line::from(vec![
                        Span::styled("approvals     ", dim()),
                        Span::raw(format!("{} of {} so far", plan.valid, plan.quorum)),
                    ]),
                    Line::from(""),
                    Line::styled(
                        "your signature covers exactly this plan: MAESTRO_IDENTITY's key, else ssh-agent's",
                        dim(),
                    ),
                ],
            ),
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

    /// The plan per node and the gate's answer.
    fn plan_lines(&self) -> Vec<Line<'_>> {
        let planned = match &self.planned {
            Loadable::Loading => {
                return vec![Line::styled(
                    "planning: running check mode on the nodes…",
                    dim(),
                )];
            }
            Loadable::Failed(e) => {
                return vec![Line::styled(
                    format!("no plan: {}", crate::terminal_text::sanitize(e.as_bytes())),
                    Style::new().fg(Color::Red),
                )];
            }
            Loadable::Loaded(p) => p,
        };
        let mut lines = Vec::new();
        if let Some(plan) = &planned.plan {
            let predicted = plan
                .nodes
                .iter()
                .any(|n| !matches!(n.outcome, crate::ops::NodeOutcome::WouldRun { .. }));
            lines.push(Line::styled(
                if predicted {
                    format!(
                        "plan (check mode): {} of {} would change",
                        count(plan.changing(), "node"),
                        plan.nodes.len()
                    )
                } else {
                    format!(
                        "plan: runs on {} (what it does is not predicted)",
                        count(plan.nodes.len(), "node")
                    )
                },
                header_style(),
            ));
            let w = plan.nodes.iter().map(|n| n.node.len()).max().unwrap_or(0);
            for n in plan.nodes.iter().take(PLAN_LINES) {
                lines.push(Line::from(vec![
                    Span::styled(format!("  {:w$}  ", n.node), dim()),
                    Span::raw(crate::terminal_text::sanitize(
                        n.outcome.summary().as_bytes(),
                    )),
                ]));
            }
            if plan.nodes.len() > PLAN_LINES {
                lines.push(Line::styled(
                    format!("  … and {} more", plan.nodes.len() - PLAN_LINES),
                    dim(),
                ));
            }
        }
        for l in &planned.lessons {
            lines.push(Line::styled(
                crate::terminal_text::sanitize(l.as_bytes()),
                Style::new().fg(Color::Cyan),
            ));
        }
        if let Some(p) = &planned.policy {
            let denied = p.starts_with("denied") || p.starts_with("cannot");
            lines.push(Line::styled(
                format!("policy: {}", crate::terminal_text::sanitize(p.as_bytes())),
                if denied {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new().fg(Color::Green)
                },
            ));
        }
        lines.push(match &planned.refusal {
            None => Line::styled("gate: admitted", dim()),
            Some(r) => Line::styled(
                format!(
                    "gate: {}",
                    crate::terminal_text::sanitize(r.to_string().as_bytes()).replace('\n', " ·")
                ),
                Style::new().fg(Color::Red),
            ),
        });
        lines
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
            Pending::Exec(_) | Pending::Rollout(_) => "[ y: run ]",
            Pending::QuitDuringRun => "[ y: quit ]",
            Pending::Approve(_) => "[ y: sign ]",
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
