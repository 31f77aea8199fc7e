//! The live run view: each node's state while a run is in flight (queued,
//! connecting, running, done, failed, stuck with its elapsed time), overall
//! progress, and cancelling one node or the whole run.

use std::cell::Cell;
use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell as TableCell, LineGauge, Paragraph, Row, Table};

use super::list::{Nav, navigate};
use crate::bus::Envelope;
use crate::fleet::event::Stream;
use crate::fleet::{Event, NodeStatus, Summary};
use crate::tui::action::Action;
use crate::tui::text::{count, dim, duration, fit, header_style, last_line, status_style};

/// A node busy for longer than this is shown as stuck.
pub const STUCK_AFTER_MS: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Queued,
    Connecting {
        since_ms: i64,
    },
    Running {
        since_ms: i64,
    },
    Done {
        status: NodeStatus,
        exit_code: Option<u32>,
        duration_ms: u64,
        note: String,
    },
}

#[derive(Debug, Clone)]
struct LiveNode {
    name: String,
    state: NodeState,
    /// The latest line of output, safe to draw.
    last_output: String,
    cancel_requested: bool,
}

pub struct LiveView {
    /// The run this view follows: events of other runs on the bus (a plan,
    /// another face's run) are not its.
    follows: String,
    /// Set once the run has started.
    run_id: Option<String>,
    command: String,
    nodes: Vec<LiveNode>,
    index: HashMap<String, usize>,
    started_ms: i64,
    finished: Option<(Summary, u64, bool)>,
    cancel_requested: bool,
    /// Why the run could not start, if it could not.
    failed_to_start: Option<String>,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
    now_ms: i64,
}

impl LiveView {
    pub fn new(run_id: &str, nodes: &[String], command: &str, now_ms: i64) -> LiveView {
        LiveView {
            follows: run_id.to_string(),
            run_id: None,
            command: command.to_string(),
            nodes: nodes
                .iter()
                .map(|n| LiveNode {
                    name: n.clone(),
                    state: NodeState::Queued,
                    last_output: String::new(),
                    cancel_requested: false,
                })
                .collect(),
            index: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            started_ms: now_ms,
            finished: None,
            cancel_requested: false,
            failed_to_start: None,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
            now_ms,
        }
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn in_flight(&self) -> bool {
        self.finished.is_none() && self.failed_to_start.is_none()
    }

    pub fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    pub fn progress(&self) -> (usize, usize) {
        let done = self
            .nodes
            .iter()
            .filter(|n| matches!(n.state, NodeState::Done { .. }))
            .count();
        (done, self.nodes.len())
    }

    pub fn failed_to_start(&mut self, why: String) {
        self.failed_to_start = Some(why);
    }

    pub fn note_cancel_all(&mut self) {
        self.cancel_requested = true;
    }

    pub fn note_cancel(&mut self, node: &str) {
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].cancel_requested = true;
        }
    }

    /// The run this view follows (known before it starts).
    pub fn follows(&self) -> &str {
        &self.follows
    }

    /// Update from the bus: only the events of the run this view follows.
    pub fn apply(&mut self, envelope: &Envelope) {
        if *envelope.run_id != *self.follows {
            return;
        }
        let now = self.now_ms;
        let node = |this: &mut Self, name: &str| this.index.get(name).copied();
        match &envelope.event {
            Event::RunStarted { .. } => {
                self.run_id = Some(envelope.run_id.to_string());
                self.started_ms = envelope.at_ms;
            }
            Event::NodeConnecting { node: n } => {
                if let Some(i) = node(self, n) {
                    self.nodes[i].state = NodeState::Connecting { since_ms: now };
                }
            }
            Event::NodeRunning { node: n } => {
                if let Some(i) = node(self, n) {
                    self.nodes[i].state = NodeState::Running { since_ms: now };
                }
            }
            Event::Output {
                node: n,
                stream,
                data,
            } => {
                if let Some(i) = node(self, n) {
                    let line = last_line(data);
                    if !line.is_empty() {
                        self.nodes[i].last_output = match stream {
                            Stream::Stdout => line,
                            Stream::Stderr => format!("stderr: {line}"),
                        };
                    }
                }
            }
            Event::NodeFinished { result } => {
                if let Some(i) = node(self, &result.node) {
                    let note = match &result.error {
                        Some(e) => crate::terminal_text::sanitize(e.as_bytes()).replace('\n', " "),
                        None => {
                            let out = last_line(&result.stdout.bytes);
                            if out.is_empty() {
                                last_line(&result.stderr.bytes)
                            } else {
                                out
                            }
                        }
                    };
                    self.nodes[i].state = NodeState::Done {
                        status: result.status,
                        exit_code: result.exit_code,
                        duration_ms: result.duration_ms,
                        note,
                    };
                }
            }
            Event::RunFinished {
                summary,
                elapsed_ms,
                cancelled,
                ..
            } => self.finished = Some((*summary, *elapsed_ms, *cancelled)),
            _ => {}
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if let Some(nav) = Nav::of(key) {
            self.cursor = navigate(nav, self.cursor, self.nodes.len(), self.page.get());
            return Some(Action::Redraw);
        }
        Some(match key.code {
            KeyCode::Char('c') => {
                let n = self.nodes.get(self.cursor)?;
                if !self.in_flight() || matches!(n.state, NodeState::Done { .. }) {
                    Action::Unavailable(format!(
                        "{} has already finished: nothing to cancel",
                        n.name
                    ))
                } else {
                    Action::CancelNode(n.name.clone())
                }
            }
            KeyCode::Char('C') => {
                if self.in_flight() {
                    Action::CancelRun
                } else {
                    Action::Unavailable("the run has already finished: nothing to cancel".into())
                }
            }
            KeyCode::Enter => match (&self.run_id, self.in_flight()) {
                (Some(id), false) => Action::OpenRun(id.clone()),
                (_, true) => Action::Unavailable(
                    "the run is still in flight: its detail opens once it finished (:runs)".into(),
                ),
                (None, false) => {
                    Action::Unavailable("the run never started: nothing to open".into())
                }
            },
            _ => return None,
        })
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let [top, table_area] =
            Layout::vertical([Constraint::Length(6), Constraint::Fill(1)]).areas(area);
        let (done, total) = self.progress();
        let title = match &self.run_id {
            Some(id) => format!(" live run {id} "),
            None => " live run (starting) ".to_string(),
        };
        let block = Block::bordered().title(Line::styled(title, header_style()));
        let inner = block.inner(top);
        frame.render_widget(block, top);
        let [l1, l2, l3, l4] = Layout::vertical([Constraint::Length(1); 4]).areas(inner);
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw(format!("exec on {} · ", count(total, "node"))),
                Span::styled("command ", dim()),
                Span::raw(fit(
                    &crate::terminal_text::sanitize(self.command.as_bytes()).replace('\n', " "),
                    l1.width.saturating_sub(30) as usize,
                )),
            ])),
            l1,
        );
        let ratio = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        frame.render_widget(
            LineGauge::default()
                .ratio(ratio)
                .label(format!("{done}/{total} done "))
                .filled_style(Style::new().fg(Color::Green)),
            l2,
        );
        let (states, results) = self.status_lines();
        frame.render_widget(Paragraph::new(states), l3);
        frame.render_widget(Paragraph::new(results), l4);

        let block = Block::bordered();
        let inner = block.inner(table_area);
        frame.render_widget(block, table_area);
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.nodes.len(),
            inner,
        );
        let (offset, end) = (visible.start, visible.end);
        let rows = self.nodes[offset..end].iter().map(|n| self.row(n));
        let table = Table::new(
            rows,
            [
                Constraint::Length(self.name_width()),
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(3),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(vec!["NODE", "STATE", "TIME", "RC", "OUTPUT / ERROR"]).style(header_style()),
        );
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }

    fn name_width(&self) -> u16 {
        self.nodes
            .iter()
            .map(|n| n.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 28) as u16
    }

    /// Where the nodes are, and how the finished ones ended.
    fn status_lines(&self) -> (Line<'_>, Line<'_>) {
        if let Some(why) = &self.failed_to_start {
            return (
                Line::styled("could not start:", Style::new().fg(Color::Red)),
                Line::styled(why.clone(), Style::new().fg(Color::Red)),
            );
        }
        let mut s = Summary::default();
        let (mut queued, mut connecting, mut running, mut stuck) = (0, 0, 0, 0);
        for n in &self.nodes {
            match &n.state {
                NodeState::Queued => queued += 1,
                NodeState::Connecting { since_ms } => {
                    connecting += 1;
                    stuck += usize::from(self.now_ms - since_ms > STUCK_AFTER_MS);
                }
                NodeState::Running { since_ms } => {
                    running += 1;
                    stuck += usize::from(self.now_ms - since_ms > STUCK_AFTER_MS);
                }
                NodeState::Done { status, .. } => s.add(*status),
            }
        }
        let counts = Line::raw(format!(
            "ok {} · failed {} · unreachable {} · timed out {} · cancelled {}",
            s.ok, s.failed, s.unreachable, s.timed_out, s.cancelled
        ));
        match self.finished {
            Some((_, elapsed, cancelled)) => (
                Line::from(vec![
                    Span::styled(
                        format!(
                            "{} in {}",
                            if cancelled { "cancelled" } else { "finished" },
                            duration(elapsed)
                        ),
                        header_style(),
                    ),
                    Span::styled(" · Enter opens the run", dim()),
                ]),
                counts,
            ),
            None => {
                let mut line = format!(
                    "{} · queued {queued} · connecting {connecting} · running {running}",
                    duration((self.now_ms - self.started_ms).max(0) as u64)
                );
                if stuck > 0 {
                    line.push_str(&format!(" · {stuck} stuck"));
                }
                if self.cancel_requested {
                    line.push_str(" · cancelling");
                }
                (Line::raw(line), counts)
            }
        }
    }

    fn row(&self, n: &LiveNode) -> Row<'_> {
        let (state, style, time, rc, note) = match &n.state {
            NodeState::Queued => (
                if self.failed_to_start.is_some() {
                    "not started".to_string()
                } else {
                    "queued".to_string()
                },
                dim(),
                String::new(),
                String::new(),
                String::new(),
            ),
            NodeState::Connecting { since_ms } | NodeState::Running { since_ms } => {
                let elapsed = self.now_ms - since_ms;
                let what = if matches!(n.state, NodeState::Connecting { .. }) {
                    "connecting"
                } else {
                    "running"
                };
                let (state, style) = if elapsed > STUCK_AFTER_MS {
                    (format!("stuck ({what})"), Style::new().fg(Color::Yellow))
                } else {
                    (what.to_string(), Style::new().fg(Color::Cyan))
                };
                let state = if n.cancel_requested || self.cancel_requested {
                    "cancelling".to_string()
                } else {
                    state
                };
                (
                    state,
                    style,
                    duration(elapsed.max(0) as u64),
                    String::new(),
                    n.last_output.clone(),
                )
            }
            NodeState::Done {
                status,
                exit_code,
                duration_ms,
                note,
            } => (
                if *status == NodeStatus::Ok {
                    "done".to_string()
                } else {
                    status.to_string()
                },
                status_style(*status),
                duration(*duration_ms),
                exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                note.clone(),
            ),
        };
        Row::new(vec![
            TableCell::from(n.name.clone()),
            TableCell::from(state).style(style),
            TableCell::from(time),
            TableCell::from(rc),
            TableCell::from(note),
        ])
    }
}
