//! The agents view (`:agents`): each agent of the registry with its current
//! version, how many nodes run each version, their health and the kill
//! switch; Enter shows the agent per node. The data is an `agent status`
//! job run by the event loop (`r` runs it again); drawing never waits.

use std::cell::Cell;
use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell as TableCell, Paragraph, Row, Table, Wrap};

use super::Loadable;
use super::list::{Nav, navigate};
use crate::agent::AgentOnNode;
use crate::sot::Sot;
use crate::tui::action::{Action, AgentJob};
use crate::tui::text::header_style;

/// One registry entry as the view lists it.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    current: String,
    autonomy: String,
}

pub struct AgentsView {
    agents: Vec<Entry>,
    status: Loadable<Vec<AgentOnNode>>,
    cursor: usize,
    /// The agent whose nodes are shown (Enter), with the node cursor.
    detail: Option<String>,
    node_cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
}

impl AgentsView {
    pub fn new(sot: &Sot) -> AgentsView {
        AgentsView {
            agents: sot
                .agents
                .values()
                .map(|a| Entry {
                    name: a.name.clone(),
                    current: a.current.clone().unwrap_or_else(|| "-".into()),
                    autonomy: a.autonomy.to_string(),
                })
                .collect(),
            status: Loadable::Loading,
            cursor: 0,
            detail: None,
            node_cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
        }
    }

    pub fn set_status(&mut self, status: Loadable<Vec<AgentOnNode>>) {
        self.status = status;
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.status, Loadable::Loading)
    }

    /// Esc closes the per-node detail first.
    pub fn back(&mut self) -> bool {
        self.detail.take().is_some()
    }

    fn selected(&self) -> Option<&Entry> {
        self.agents.get(self.cursor)
    }

    fn nodes_of(&self, agent: &str) -> Vec<&AgentOnNode> {
        match &self.status {
            Loadable::Loaded(s) => s
                .iter()
                .filter(|a| a.agent == agent && (!a.state.version.is_empty() || a.error.is_some()))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let len = match &self.detail {
            Some(a) => self.nodes_of(a).len(),
            None => self.agents.len(),
        };
        if let Some(nav) = Nav::of(key) {
            let c = if self.detail.is_some() {
                &mut self.node_cursor
            } else {
                &mut self.cursor
            };
            *c = navigate(nav, *c, len, self.page.get());
            return Some(Action::Redraw);
        }
        let agent = self.selected().map(|e| e.name.clone());
        Some(match key.code {
            KeyCode::Enter if self.detail.is_none() => match agent {
                Some(a) => {
                    self.detail = Some(a);
                    self.node_cursor = 0;
                    Action::Redraw
                }
                None => Action::Unavailable("the registry has no agents".into()),
            },
            KeyCode::Char('r') => Action::LoadAgents,
            KeyCode::Char('d') => match agent {
                Some(a) => Action::AgentJob(AgentJob::Deploy, a),
                None => Action::Unavailable("no agent to deploy".into()),
            },
            KeyCode::Char('e') => match agent {
                Some(a) => Action::AgentJob(AgentJob::Enable, a),
                None => Action::Unavailable("no agent to enable".into()),
            },
            _ => return None,
        })
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        match &self.detail {
            Some(a) => self.draw_nodes(frame, area, a),
            None => self.draw_agents(frame, area),
        }
    }

    fn draw_agents(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(Line::styled(
            format!(" agents {} ", self.agents.len()),
            header_style(),
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if self.agents.is_empty() {
            frame.render_widget(
                Paragraph::new("The registry (agents.toml) has no agents.")
                    .wrap(Wrap { trim: false }),
                inner,
            );
            return;
        }
        let note = match &self.status {
            Loadable::Loading => Some("asking the nodes what they run…".to_string()),
            Loadable::Failed(e) => Some(format!("cannot ask the nodes: {e}")),
            Loadable::Loaded(_) => None,
        };
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.agents.len(),
            inner,
        );
        let rows = self.agents[visible.clone()].iter().map(|e| {
            let nodes = self.nodes_of(&e.name);
            let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
            for n in &nodes {
                let v = if n.error.is_some() {
                    "?"
                } else {
                    n.state.version.as_str()
                };
                *versions.entry(v).or_default() += 1;
            }
            let spread = if note.is_some() {
                "…".to_string()
            } else if versions.is_empty() {
                "not deployed".to_string()
            } else {
                versions
                    .iter()
                    .map(|(v, n)| format!("{v}×{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let healthy = nodes
                .iter()
                .filter(|n| n.state.running && n.state.healthy != Some(false))
                .count();
            let differs = nodes.iter().any(|n| n.differs || n.error.is_some());
            let killed = nodes.iter().filter(|n| n.state.killed).count();
            let health = if nodes.is_empty() {
                "-".to_string()
            } else {
                format!("{healthy}/{}", nodes.len())
            };
            let health_style = if nodes.is_empty() || healthy == nodes.len() {
                Style::new().fg(Color::Green)
            } else {
                Style::new().fg(Color::Red)
            };
            let kill = if killed > 0 {
                TableCell::from(format!("ENGAGED on {killed}"))
                    .style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
            } else {
                TableCell::from("off")
            };
            Row::new(vec![
                TableCell::from(e.name.clone()),
                TableCell::from(e.current.clone()),
                TableCell::from(e.autonomy.clone()),
                TableCell::from(spread).style(if differs {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                }),
                TableCell::from(health).style(health_style),
                kill,
            ])
        });
        let header = Row::new([
            "AGENT",
            "CURRENT",
            "AUTONOMY",
            "RUNNING",
            "HEALTHY",
            "KILL SWITCH",
        ])
        .style(header_style());
        let table = Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Fill(1),
                Constraint::Length(8),
                Constraint::Length(14),
            ],
        )
        .header(header);
        let table_area = match &note {
            Some(_) if inner.height > 2 => Rect {
                height: inner.height - 1,
                ..inner
            },
            _ => inner,
        };
        super::list::draw_table(frame, table, table_area, self.cursor, visible.start);
        if let Some(n) = note {
            let y = inner.y + inner.height.saturating_sub(1);
            frame.render_widget(
                Paragraph::new(n).style(Style::new().fg(Color::DarkGray)),
                Rect {
                    y,
                    height: 1,
                    ..inner
                },
            );
        }
    }

    fn draw_nodes(&self, frame: &mut Frame, area: Rect, agent: &str) {
        let nodes = self.nodes_of(agent);
        let current = self
            .agents
            .iter()
            .find(|e| e.name == agent)
            .map(|e| e.current.clone())
            .unwrap_or_default();
        let block = Block::bordered().title(Line::styled(
            format!(" {agent} (current {current}) on {} nodes ", nodes.len()),
            header_style(),
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if nodes.is_empty() {
            let text = match &self.status {
                Loadable::Loading => "asking the nodes what they run…".to_string(),
                Loadable::Failed(e) => format!("cannot ask the nodes: {e}"),
                Loadable::Loaded(_) => format!(
                    "{agent} runs nowhere. Mark nodes in :nodes, come back and press e to enable it."
                ),
            };
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
            return;
        }
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.node_cursor,
            nodes.len(),
            inner,
        );
        let rows = nodes[visible.clone()].iter().map(|n| {
            let s = &n.state;
            let (health, style) = match (&n.error, s.killed, s.running, s.healthy) {
                (Some(_), _, _, _) => ("unknown", Style::new().fg(Color::Red)),
                (None, true, _, _) => ("killed", Style::new().fg(Color::Red)),
                (None, false, false, _) => ("stopped", Style::new().fg(Color::Red)),
                (None, false, true, Some(false)) => ("unhealthy", Style::new().fg(Color::Red)),
                (None, false, true, Some(true)) => ("healthy", Style::new().fg(Color::Green)),
                (None, false, true, None) => ("running", Style::new()),
            };
            let version_style = if n.differs {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            let detail = match &n.error {
                Some(e) => crate::terminal_text::sanitize(e.as_bytes()),
                None => n.summary(),
            };
            Row::new(vec![
                TableCell::from(n.node.clone()),
                TableCell::from(s.version.clone()).style(version_style),
                TableCell::from(s.digest.chars().take(12).collect::<String>()),
                TableCell::from(health).style(style),
                TableCell::from(detail),
            ])
        });
        let header =
            Row::new(["NODE", "VERSION", "SHA256", "HEALTH", "STATE"]).style(header_style());
        let table = Table::new(
            rows,
            [
                Constraint::Min(12),
                Constraint::Length(9),
                Constraint::Length(12),
                Constraint::Length(9),
                Constraint::Fill(2),
            ],
        )
        .header(header);
        super::list::draw_table(frame, table, inner, self.node_cursor, visible.start);
    }
}
