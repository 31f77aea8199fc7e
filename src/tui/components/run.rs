//! The run detail view: a run's summary, its per-node results and the
//! output of the selected node (made safe for the terminal).

use std::cell::Cell;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell as TableCell, Paragraph, Row, Table, Wrap};

use unicode_width::UnicodeWidthStr;

use super::list::{Nav, navigate};
use crate::fleet::NodeResult;
use crate::store::{Note, RunRow};
use crate::tui::action::Action;
use crate::tui::text::{age, count, dim, duration, fit, header_style, output_lines, status_style};

/// A run with everything the store has about it.
#[derive(Debug, Clone)]
pub struct RunDetail {
    pub run: RunRow,
    pub results: Vec<NodeResult>,
    pub notes: Vec<Note>,
    /// For a run several controllers shared: who did how many nodes
    /// ([`crate::work::summary`]).
    pub shared: Option<String>,
}

pub struct RunView {
    detail: RunDetail,
    /// One line per target node: its result, if it has one.
    lines: Vec<(String, Option<usize>)>,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
    output_scroll: u16,
    output_page: Cell<u16>,
    now_ms: i64,
}

impl RunView {
    pub fn new(detail: RunDetail, now_ms: i64) -> RunView {
        // Indexed: a run may have thousands of nodes.
        let by_node: std::collections::HashMap<&str, usize> = detail
            .results
            .iter()
            .enumerate()
            .map(|(i, r)| (r.node.as_str(), i))
            .collect();
        let targets: std::collections::HashSet<&str> =
            detail.run.nodes.iter().map(String::as_str).collect();
        let mut lines: Vec<(String, Option<usize>)> = detail
            .run
            .nodes
            .iter()
            .map(|n| (n.clone(), by_node.get(n.as_str()).copied()))
            .collect();
        // Results for nodes not in the run's list (should not happen) still show.
        for (i, r) in detail.results.iter().enumerate() {
            if !targets.contains(r.node.as_str()) {
                lines.push((r.node.clone(), Some(i)));
            }
        }
        RunView {
            detail,
            lines,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
            output_scroll: 0,
            output_page: Cell::new(10),
            now_ms,
        }
    }

    pub fn id(&self) -> &str {
        &self.detail.run.id
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::PageDown => {
                self.output_scroll = self
                    .output_scroll
                    .saturating_add(self.output_page.get().max(1));
                return Some(Action::Redraw);
            }
            KeyCode::PageUp => {
                self.output_scroll = self
                    .output_scroll
                    .saturating_sub(self.output_page.get().max(1));
                return Some(Action::Redraw);
            }
            _ => {}
        }
        let nav = Nav::of(key)?;
        let before = self.cursor;
        self.cursor = navigate(nav, self.cursor, self.lines.len(), self.page.get());
        if before != self.cursor {
            self.output_scroll = 0;
        }
        Some(Action::Redraw)
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let bottom = super::draw_summary_box(
            frame,
            area,
            format!(" run {} ", self.detail.run.id),
            self.summary_lines(),
        );
        // Name, status, rc and time columns, the cursor and the borders.
        let longest = self
            .lines
            .iter()
            .map(|(n, _)| n.width())
            .max()
            .unwrap_or(4)
            .max(4);
        let left_width = ((longest + 11 + 3 + 6 + 3 + 2 + 2) as u16)
            .min(bottom.width / 2)
            .max(30.min(bottom.width));
        let [left, right] =
            Layout::horizontal([Constraint::Length(left_width), Constraint::Fill(1)]).areas(bottom);
        self.draw_nodes(frame, left);
        self.draw_output(frame, right);
    }

    fn summary_lines(&self) -> Vec<Line<'_>> {
        let r = &self.detail.run;
        let took = r
            .finished_ms
            .map(|f| {
                format!(
                    " · took {}",
                    duration(f.saturating_sub(r.started_ms) as u64)
                )
            })
            .unwrap_or_default();
        let mut lines = vec![
            Line::from(format!(
                "{} on {} · {} · started {} ago{took}",
                r.kind,
                fit(&crate::terminal_text::sanitize(r.target.as_bytes()), 48),
                r.state,
                age(self.now_ms, r.started_ms),
            )),
            Line::from(vec![
                Span::styled("command ", dim()),
                Span::raw(crate::terminal_text::sanitize(r.command.as_bytes()).replace('\n', " ")),
            ]),
            Line::from(format!(
                "{} · ok {} · failed {} · unreachable {} · timed out {} · cancelled {}",
                count(r.node_count, "node"),
                r.ok,
                r.failed,
                r.unreachable,
                r.timed_out,
                r.cancelled
            )),
            Line::from(vec![
                Span::styled("tasks   ", dim()),
                Span::raw(format!(
                    "1. {} (one task: the command on each node)",
                    r.kind
                )),
            ]),
        ];
        let missing = self.lines.iter().filter(|(_, r)| r.is_none()).count();
        if missing > 0 {
            lines.push(Line::styled(
                format!(
                    "{} without a result: the run was interrupted{}",
                    count(missing, "node"),
                    if r.state == crate::store::RunState::Running {
                        " (it never finished)"
                    } else {
                        ""
                    }
                ),
                Style::new().fg(Color::Yellow),
            ));
        }
        if let Some(shared) = &self.detail.shared {
            lines.extend(shared.lines().map(|l| Line::raw(l.to_string())));
        }
        for n in &self.detail.notes {
            lines.push(Line::styled(
                format!(
                    "note: {}{}",
                    n.node
                        .as_ref()
                        .map(|x| format!("{x}: "))
                        .unwrap_or_default(),
                    crate::terminal_text::sanitize(n.message.as_bytes())
                ),
                dim(),
            ));
        }
        lines
    }

    fn draw_nodes(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(Line::styled(" nodes ", header_style()));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.lines.len(),
            inner,
        );
        let (offset, end) = (visible.start, visible.end);
        let rows = self.lines[offset..end].iter().map(|(node, i)| match i {
            Some(i) => {
                let r = &self.detail.results[*i];
                Row::new(vec![
                    TableCell::from(node.clone()),
                    TableCell::from(r.status.to_string()).style(status_style(r.status)),
                    TableCell::from(
                        r.exit_code
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ),
                    TableCell::from(duration(r.duration_ms)),
                ])
            }
            None => Row::new(vec![
                TableCell::from(node.clone()),
                TableCell::from("no result").style(dim()),
                TableCell::from("-"),
                TableCell::from("-"),
            ]),
        });
        let table = Table::new(
            rows,
            [
                Constraint::Fill(1),
                Constraint::Length(11),
                Constraint::Length(3),
                Constraint::Length(6),
            ],
        )
        .header(Row::new(vec!["NODE", "STATUS", "RC", "TIME"]).style(header_style()));
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }

    fn draw_output(&self, frame: &mut Frame, area: Rect) {
        let Some((node, result)) = self.lines.get(self.cursor) else {
            frame.render_widget(Block::bordered().title(" output "), area);
            return;
        };
        let Some(r) = result.map(|i| &self.detail.results[i]) else {
            frame.render_widget(
                Paragraph::new(format!("{node} has no result in this run.")).block(
                    Block::bordered().title(Line::styled(format!(" {node} "), header_style())),
                ),
                area,
            );
            return;
        };
        let mut title = format!(" {node} · {}", r.status);
        if let Some(c) = r.exit_code {
            title.push_str(&format!(" · rc={c}"));
        }
        if let Some(s) = &r.signal {
            title.push_str(&format!(" · signal {s}"));
        }
        title.push_str(&format!(" · {} ", duration(r.duration_ms)));
        let mut lines: Vec<Line> = Vec::new();
        if let Some(e) = &r.error {
            lines.push(Line::styled(
                format!("error: {}", crate::terminal_text::sanitize(e.as_bytes())),
                Style::new().fg(Color::Red),
            ));
        }
        lines.extend(output_lines(&r.stdout.bytes).into_iter().map(Line::from));
        if r.stdout.truncated() {
            lines.push(Line::styled(
                format!(
                    "… {} more bytes of stdout were not kept",
                    r.stdout.total - r.stdout.bytes.len() as u64
                ),
                dim(),
            ));
        }
        if !r.stderr.bytes.is_empty() {
            lines.push(Line::styled("── stderr ──", dim()));
            lines.extend(
                output_lines(&r.stderr.bytes)
                    .into_iter()
                    .map(|l| Line::styled(l, Style::new().fg(Color::Yellow))),
            );
        }
        if lines.is_empty() {
            lines.push(Line::styled("(no output)", dim()));
        }
        let block = Block::bordered().title(Line::styled(title, header_style()));
        self.output_page.set(block.inner(area).height);
        let max_scroll = (lines.len() as u16).saturating_sub(1);
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false })
                .scroll((self.output_scroll.min(max_scroll), 0)),
            area,
        );
    }
}
