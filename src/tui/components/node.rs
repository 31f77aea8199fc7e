//! The node view: the node's SoT entry (address, groups, tags, vars), what
//! maestro knows from running things on it (its hardening compliance and the
//! rules it fails, from the store), and its recent runs.

use std::cell::Cell;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell as TableCell, Paragraph, Row, Table, Wrap};

use super::Loadable;
use super::list::{Nav, navigate};
use crate::fleet::NodeResult;
use crate::sot::Node;
use crate::store::{ComplianceRecord, RunRow};
use crate::tui::action::{Action, PromptKind};
use crate::tui::text::{age, dim, fit, header_style, status_style};

/// A node's recorded hardening audits, newest first, and its first one (the
/// first-boot baseline).
#[derive(Debug, Clone, Default)]
pub struct NodeCompliance {
    pub history: Vec<ComplianceRecord>,
    pub first: Option<ComplianceRecord>,
}

/// Failing rule ids shown before "+N more".
const FAILING_SHOWN: usize = 12;

pub struct NodeView {
    node: Node,
    history: Loadable<Vec<(RunRow, NodeResult)>>,
    compliance: Loadable<NodeCompliance>,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
    now_ms: i64,
}

impl NodeView {
    pub fn new(node: Node, now_ms: i64) -> NodeView {
        NodeView {
            node,
            history: Loadable::Loading,
            compliance: Loadable::Loading,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(5),
            now_ms,
        }
    }

    pub fn name(&self) -> &str {
        &self.node.name
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn set_history(&mut self, history: Loadable<Vec<(RunRow, NodeResult)>>) {
        self.history = history;
        self.cursor = 0;
    }

    pub fn set_compliance(&mut self, compliance: Loadable<NodeCompliance>) {
        self.compliance = compliance;
    }

    /// The compliance lines: the latest audit, the first-boot one, and the
    /// rules the latest audit found not passing.
    fn compliance_lines(&self) -> Vec<(&'static str, String)> {
        let c = match &self.compliance {
            Loadable::Loading => return vec![("audit", "reading the run store…".into())],
            Loadable::Failed(_) => {
                return vec![("audit", "unknown (the run store cannot be read)".into())];
            }
            Loadable::Loaded(c) => c,
        };
        let Some(latest) = c.history.first() else {
            return vec![(
                "audit",
                "never audited (harden --audit, or an install of a profile with a baseline)".into(),
            )];
        };
        let mut lines = vec![(
            "audit",
            format!(
                "{:.1}% {} ({} passing, {} failing, {} unknown; audited {} ago)",
                latest.percent,
                crate::terminal_text::sanitize(latest.baseline.as_bytes()),
                latest.passing,
                latest.failing,
                latest.unknown,
                age(self.now_ms, latest.at_ms)
            ),
        )];
        let rules = &latest.failing_rules;
        lines.push((
            "failing",
            if rules.is_empty() {
                "none".into()
            } else {
                let shown: Vec<&str> = rules
                    .iter()
                    .take(FAILING_SHOWN)
                    .map(String::as_str)
                    .collect();
                let more = rules.len().saturating_sub(FAILING_SHOWN);
                format!(
                    "{}{}",
                    crate::terminal_text::sanitize(shown.join(", ").as_bytes()),
                    if more > 0 {
                        format!(" +{more} more")
                    } else {
                        String::new()
                    }
                )
            },
        ));
        if let Some(first) = c.first.as_ref().filter(|f| f.run_id != latest.run_id) {
            lines.push((
                "first",
                format!(
                    "{:.1}% {} at the first-boot audit, {} ago",
                    first.percent,
                    crate::terminal_text::sanitize(first.baseline.as_bytes()),
                    age(self.now_ms, first.at_ms)
                ),
            ));
        }
        lines
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let len = match &self.history {
            Loadable::Loaded(h) => h.len(),
            _ => 0,
        };
        if let Some(nav) = Nav::of(key) {
            self.cursor = navigate(nav, self.cursor, len, self.page.get());
            return Some(Action::Redraw);
        }
        Some(match key.code {
            KeyCode::Enter => match &self.history {
                Loadable::Loaded(h) if !h.is_empty() => {
                    Action::OpenRun(h[self.cursor].0.id.clone())
                }
                _ => Action::Unavailable(format!("{} has no recorded run to open", self.node.name)),
            },
            KeyCode::Char('x') => Action::OpenPrompt(PromptKind::Exec {
                nodes: vec![self.node.name.clone()],
            }),
            _ => return None,
        })
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let [entry_area, runs_area] = if area.width >= 120 {
            Layout::horizontal([Constraint::Percentage(45), Constraint::Fill(1)]).areas(area)
        } else {
            let entry_height = (self.entry_lines().len() as u16 + 2).min(area.height / 2 + 2);
            Layout::vertical([Constraint::Length(entry_height), Constraint::Fill(1)]).areas(area)
        };
        let entry = Paragraph::new(self.entry_lines())
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Line::styled(
                format!(" node {} ", self.node.name),
                header_style(),
            )));
        frame.render_widget(entry, entry_area);
        self.draw_runs(frame, runs_area);
    }

    fn entry_lines(&self) -> Vec<Line<'_>> {
        let n = &self.node;
        let field = |k: &'static str, v: String| {
            Line::from(vec![Span::styled(format!("{k:<9}"), dim()), Span::raw(v)])
        };
        let none = || "-".to_string();
        let mut lines = vec![
            field("address", format!("{}:{}", n.address, n.port)),
            field("user", n.user.clone()),
            field(
                "groups",
                if n.groups.is_empty() {
                    none()
                } else {
                    n.groups.join(", ")
                },
            ),
            field("profile", n.profile.clone().unwrap_or_else(none)),
            field("file", n.file.display().to_string()),
        ];
        let tags: Vec<String> = n.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        lines.push(field(
            "tags",
            if tags.is_empty() {
                none()
            } else {
                tags.join("  ")
            },
        ));
        let vars: Vec<String> = n.vars.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        lines.push(field(
            "vars",
            if vars.is_empty() {
                none()
            } else {
                vars.join(", ")
            },
        ));
        let last = match &self.history {
            Loadable::Loaded(h) => match h.first() {
                Some((run, r)) => format!(
                    "{} {} ago ({} {})",
                    r.status,
                    age(self.now_ms, run.finished_ms.unwrap_or(run.started_ms)),
                    run.kind,
                    run.id
                ),
                None => "never run from maestro".to_string(),
            },
            Loadable::Loading => "reading the run store…".to_string(),
            Loadable::Failed(_) => "unknown (the run store cannot be read)".to_string(),
        };
        lines.push(field("last run", last));
        for (k, v) in self.compliance_lines() {
            lines.push(field(k, v));
        }
        lines.push(Line::from(vec![
            Span::styled(format!("{:<9}", "facts"), dim()),
            Span::styled(
                "gathered facts appear here after the first playbook run on this node",
                dim(),
            ),
        ]));
        lines
    }

    fn draw_runs(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(Line::styled(" recent runs ", header_style()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let history = match &self.history {
            Loadable::Loading => {
                frame.render_widget(Paragraph::new("reading the run store…"), inner);
                return;
            }
            Loadable::Failed(e) => {
                frame.render_widget(
                    Paragraph::new(format!("cannot read the run store: {e}"))
                        .wrap(Wrap { trim: false }),
                    inner,
                );
                return;
            }
            Loadable::Loaded(h) if h.is_empty() => {
                frame.render_widget(
                    Paragraph::new(format!(
                        "No run has touched {} yet. x runs a command on it.",
                        self.node.name
                    ))
                    .wrap(Wrap { trim: false }),
                    inner,
                );
                return;
            }
            Loadable::Loaded(h) => h,
        };
        let visible =
            super::list::visible(&self.offset, &self.page, self.cursor, history.len(), inner);
        let (offset, end) = (visible.start, visible.end);
        let rows = history[offset..end].iter().map(|(run, r)| {
            Row::new(vec![
                TableCell::from(run.id.clone()),
                TableCell::from(run.kind.as_str()),
                TableCell::from(r.status.to_string()).style(status_style(r.status)),
                TableCell::from(
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                TableCell::from(age(self.now_ms, run.started_ms)),
                TableCell::from(fit(
                    &crate::terminal_text::sanitize(run.command.as_bytes()),
                    60,
                )),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(20),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Length(3),
                Constraint::Length(4),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(vec!["RUN", "KIND", "STATUS", "RC", "AGE", "COMMAND"]).style(header_style()),
        );
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }
}
