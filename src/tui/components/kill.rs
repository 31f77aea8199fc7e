//! The kill-switch panel (`K`, `:kill AGENT REASON`): the agent, the scope,
//! the reason and the nodes are pinned when it opens; the operator types
//! the agent's name to confirm; then it shows each node's stop confirmation
//! live (`stopped`, `already stopped`, `unreachable`) as the kill run
//! reports them. Modal: every key is its. A pure function of its state.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use crate::fleet::Event;
use crate::killswitch::{NodeKill, confirmation};
use crate::tui::action::{Action, KillPlan};
use crate::tui::text::{count, dim, header_style};

/// Node lines shown before "… and N more".
const NODE_LINES: usize = 14;

/// Where one node is in the kill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeState {
    Waiting,
    Connecting,
    Stopping,
    Done {
        state: NodeKill,
        pids: Vec<u32>,
        detail: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Waiting for the agent's name to be typed.
    Confirming { typed: String },
    /// Confirmed: the engaged state is being committed, then the nodes stopped.
    Running {
        /// The commit of the engaged state, once made.
        committed: Option<Result<String, String>>,
        /// Why the run could not start, if it could not.
        error: Option<String>,
        nodes: BTreeMap<String, NodeState>,
        finished: bool,
    },
}

pub struct KillPanel {
    pub plan: KillPlan,
    stage: Stage,
}

impl KillPanel {
    pub fn new(plan: KillPlan) -> KillPanel {
        KillPanel {
            plan,
            stage: Stage::Confirming {
                typed: String::new(),
            },
        }
    }

    /// The id of the kill run this panel follows, once confirmed.
    pub fn follows(&self) -> Option<&str> {
        match self.stage {
            Stage::Running { .. } => Some(&self.plan.run_id),
            Stage::Confirming { .. } => None,
        }
    }

    /// The operator confirmed: from now on the panel shows the nodes.
    pub fn started(&mut self) {
        self.stage = Stage::Running {
            committed: None,
            error: None,
            nodes: self
                .plan
                .nodes
                .iter()
                .map(|n| (n.clone(), NodeState::Waiting))
                .collect(),
            finished: false,
        };
    }

    pub fn set_committed(&mut self, result: Result<String, String>) {
        if let Stage::Running { committed, .. } = &mut self.stage {
            *committed = Some(result);
        }
    }

    pub fn failed_to_start(&mut self, why: String) {
        if let Stage::Running { error, .. } = &mut self.stage {
            *error = Some(why);
        }
    }

    /// An event of the kill run.
    pub fn apply(&mut self, event: &Event) {
        let Stage::Running {
            nodes, finished, ..
        } = &mut self.stage
        else {
            return;
        };
        // Only the pinned nodes are shown; nothing else can join.
        let mut set = |node: &str, state: NodeState| {
            if let Some(s) = nodes.get_mut(node) {
                *s = state;
            }
        };
        match event {
            Event::NodeConnecting { node } => set(node, NodeState::Connecting),
            Event::NodeRunning { node } => set(node, NodeState::Stopping),
            Event::NodeFinished { result } => {
                let c = confirmation(result);
                set(
                    &c.node,
                    NodeState::Done {
                        state: c.state,
                        pids: c.pids,
                        detail: c.detail,
                    },
                );
            }
            Event::RunFinished { .. } => *finished = true,
            _ => {}
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let Stage::Confirming { typed } = &mut self.stage else {
            return Some(match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Action::CloseKill,
                _ => Action::Unavailable(
                    "the kill runs on; Esc closes this panel (the header keeps the kill switch shown)"
                        .into(),
                ),
            });
        };
        Some(match key.code {
            KeyCode::Esc => Action::CloseKill,
            KeyCode::Backspace => {
                typed.pop();
                Action::Redraw
            }
            KeyCode::Enter if *typed == self.plan.agent => Action::KillConfirmed(self.plan.clone()),
            KeyCode::Enter => Action::Unavailable(format!(
                "type `{}` exactly to confirm; Esc cancels",
                self.plan.agent
            )),
            KeyCode::Char(c) => {
                typed.push(c);
                Action::Redraw
            }
            _ => Action::Unavailable(format!(
                "type `{}` and Enter to kill; Esc cancels",
                self.plan.agent
            )),
        })
    }

    fn what(&self) -> String {
        if self.plan.agent == crate::killswitch::ALL {
            "every agent".into()
        } else {
            format!("agent `{}`", self.plan.agent)
        }
    }

    fn lines(&self) -> Vec<Line<'_>> {
        let red = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
        let mut lines = vec![
            Line::styled(
                format!(
                    "Stop {} on {} and keep it stopped.",
                    self.what(),
                    count(self.plan.nodes.len(), "node")
                ),
                red,
            ),
            Line::from(""),
            Line::from(vec![
                Span::styled("agent   ", dim()),
                Span::raw(self.plan.agent.clone()),
            ]),
            Line::from(vec![
                Span::styled("scope   ", dim()),
                Span::raw(format!(
                    "{} ({}, pinned)",
                    self.plan.scope,
                    count(self.plan.nodes.len(), "node")
                )),
            ]),
            Line::from(vec![
                Span::styled("reason  ", dim()),
                Span::raw(crate::terminal_text::sanitize(self.plan.reason.as_bytes())),
            ]),
            Line::from(""),
        ];
        match &self.stage {
            Stage::Confirming { typed } => {
                lines.push(Line::styled(
                    "The engaged state is committed to the SoT, then every node is stopped",
                    dim(),
                ));
                lines.push(Line::styled(
                    "in parallel and confirms that no process of the agent is left.",
                    dim(),
                ));
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::raw(format!("Type `{}` to confirm: ", self.plan.agent)),
                    Span::styled(format!("{typed}█"), header_style()),
                ]));
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::styled("[ Enter: kill ]", red),
                    Span::raw("   [ Esc: cancel ]"),
                ]));
            }
            Stage::Running {
                committed,
                error,
                nodes,
                finished,
            } => {
                lines.push(match committed {
                    None => Line::styled("committing the engaged state to the SoT…", dim()),
                    Some(Ok(c)) => Line::styled(format!("engaged in the SoT: {c}"), dim()),
                    Some(Err(e)) => Line::styled(
                        format!(
                            "not engaged: {}",
                            crate::terminal_text::sanitize(e.as_bytes())
                        ),
                        red,
                    ),
                });
                if let Some(e) = error {
                    lines.push(Line::styled(
                        format!(
                            "the kill could not start: {}",
                            crate::terminal_text::sanitize(e.as_bytes())
                        ),
                        red,
                    ));
                }
                lines.push(self.summary(nodes, *finished));
                let w = nodes.keys().map(String::len).max().unwrap_or(0);
                // Nodes that need attention first: unreachable and failed.
                let mut shown: Vec<(&String, &NodeState)> = nodes.iter().collect();
                shown.sort_by_key(|(_, s)| match s {
                    NodeState::Done { state, .. } if !state.confirmed() => 0,
                    NodeState::Done { .. } => 2,
                    _ => 1,
                });
                for (node, state) in shown.iter().take(NODE_LINES) {
                    lines.push(node_line(node, state, w));
                }
                if shown.len() > NODE_LINES {
                    lines.push(Line::styled(
                        format!("  … and {} more", shown.len() - NODE_LINES),
                        dim(),
                    ));
                }
                lines.push(Line::from(""));
                lines.push(Line::styled("[ Esc: close ]", dim()));
            }
        }
        lines
    }

    fn summary(&self, nodes: &BTreeMap<String, NodeState>, finished: bool) -> Line<'static> {
        let mut confirmed = 0;
        let mut unreachable = 0;
        let mut failed = 0;
        for s in nodes.values() {
            if let NodeState::Done { state, .. } = s {
                match state {
                    NodeKill::Unreachable => unreachable += 1,
                    s if s.confirmed() => confirmed += 1,
                    _ => failed += 1,
                }
            }
        }
        let pending = nodes.len() - confirmed - unreachable - failed;
        let mut text = format!("{confirmed}/{} confirmed stopped", nodes.len());
        if unreachable > 0 {
            text.push_str(&format!(" · {unreachable} unreachable"));
        }
        if failed > 0 {
            text.push_str(&format!(" · {failed} failed"));
        }
        if pending > 0 {
            text.push_str(&format!(" · {pending} in progress"));
        }
        let style = if finished && confirmed == nodes.len() {
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
        } else if finished {
            text.push_str(" — not every node is confirmed: :kill again once they are back");
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            header_style()
        };
        Line::styled(text, style)
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let lines = self.lines();
        let width = area.width.saturating_sub(4).min(90);
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
                    .border_style(Style::new().fg(Color::Red))
                    .title(Line::styled(
                        " KILL SWITCH ",
                        Style::new()
                            .fg(Color::White)
                            .bg(Color::Red)
                            .add_modifier(Modifier::BOLD),
                    )),
            ),
            popup,
        );
    }
}

fn node_line(node: &str, state: &NodeState, w: usize) -> Line<'static> {
    let (text, style) = match state {
        NodeState::Waiting => ("waiting".to_string(), dim()),
        NodeState::Connecting => ("connecting…".to_string(), dim()),
        NodeState::Stopping => ("stopping…".to_string(), Style::new().fg(Color::Yellow)),
        NodeState::Done {
            state,
            pids,
            detail,
        } => {
            let mut t = state.as_str().to_string();
            if *state == NodeKill::Stopped && !pids.is_empty() {
                t.push_str(&format!(
                    " (pid {})",
                    pids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(d) = detail
                && !state.confirmed()
            {
                t.push_str(": ");
                t.push_str(&crate::terminal_text::sanitize(
                    d.lines().next().unwrap_or("").as_bytes(),
                ));
            }
            let style = match state {
                NodeKill::Unreachable | NodeKill::Failed => {
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                }
                _ => Style::new().fg(Color::Green),
            };
            (t, style)
        }
    };
    Line::from(vec![
        Span::styled(format!("  {node:w$}  "), dim()),
        Span::styled(text, style),
    ])
}
