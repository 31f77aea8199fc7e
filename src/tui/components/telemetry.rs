//! The Telemetry view (`:top`): aggregate rows per group and per agent, then
//! a row per node with sparklines (CPU, memory, GPU, agent requests/s,
//! errors/s, p95 latency); Enter shows the node's charts. The data is a
//! [`Summary`] the event loop builds from the telemetry hub once a second;
//! drawing reads only it. Missed samples are gaps (`·`), never zeros.

use std::cell::Cell;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Cell as TableCell, Chart, Dataset, GraphType, Paragraph, Row, Table,
};

use super::list::{Nav, draw_table, navigate, visible};
use crate::telemetry::Freshness;
use crate::telemetry::summary::{Aggregate, NodeSummary, Series, Summary};
use crate::tui::action::Action;
use crate::tui::text::{dim, fit, header_style};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Sparkline width in the node table.
const SPARK: usize = 16;

/// The last `width` points of `series` as bars scaled to `max`; a missed
/// sample is `·`, and points before the history began are blank.
pub fn sparkline(series: &Series, max: f32, width: usize) -> String {
    let skip = series.len().saturating_sub(width);
    let mut s = String::with_capacity(width * 3);
    for _ in series.len().min(width)..width {
        s.push(' ');
    }
    for p in &series[skip..] {
        s.push(match p {
            None => '·',
            Some(v) if max > 0.0 => {
                let i = ((v / max).clamp(0.0, 1.0) * 7.0).round() as usize;
                BARS[i]
            }
            Some(_) => BARS[0],
        });
    }
    s
}

fn max_of(series: &Series) -> f32 {
    series.iter().flatten().fold(0.0f32, |a, &b| a.max(b))
}

fn num(v: Option<f32>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".into(),
    }
}

pub struct TelemetryView {
    summary: Option<Arc<Summary>>,
    /// Why telemetry is not running, when it failed to start.
    error: Option<String>,
    cursor: usize,
    /// The node whose charts are shown (Enter).
    detail: Option<String>,
    offset: Cell<usize>,
    page: Cell<usize>,
}

impl Default for TelemetryView {
    fn default() -> Self {
        TelemetryView::new()
    }
}

impl TelemetryView {
    pub fn new() -> TelemetryView {
        TelemetryView {
            summary: None,
            error: None,
            cursor: 0,
            detail: None,
            offset: Cell::new(0),
            page: Cell::new(10),
        }
    }

    pub fn set_summary(&mut self, summary: Arc<Summary>) {
        self.cursor = self.cursor.min(summary.nodes.len().saturating_sub(1));
        self.summary = Some(summary);
        self.error = None;
    }

    pub fn set_error(&mut self, error: String) {
        self.error = Some(error);
    }

    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_deref()
    }

    /// Show this node's charts (from the node view, or Enter).
    pub fn open(&mut self, node: &str) {
        self.detail = Some(node.to_string());
    }

    /// Esc from the charts goes back to the table.
    pub fn back(&mut self) -> bool {
        self.detail.take().is_some()
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let len = self.summary.as_ref().map_or(0, |s| s.nodes.len());
        if let Some(nav) = Nav::of(key)
            && self.detail.is_none()
        {
            self.cursor = navigate(nav, self.cursor, len, self.page.get());
            return Some(Action::Redraw);
        }
        match key.code {
            KeyCode::Enter if self.detail.is_none() => {
                let node = self.summary.as_ref()?.nodes.get(self.cursor)?.node.clone();
                self.detail = Some(node);
                Some(Action::Redraw)
            }
            _ => None,
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let Some(summary) = &self.summary else {
            let text = match &self.error {
                Some(e) => format!("telemetry could not start: {e}"),
                None => "starting telemetry: connecting to the nodes…".into(),
            };
            frame.render_widget(
                Paragraph::new(text).block(Block::bordered().title(title(" telemetry "))),
                area,
            );
            return;
        };
        if let Some(node) = &self.detail {
            match summary.nodes.iter().find(|n| &n.node == node) {
                Some(n) => draw_charts(frame, area, n, summary.interval_s),
                None => frame.render_widget(
                    Paragraph::new(format!("{node} is not in the telemetry")),
                    area,
                ),
            }
            return;
        }
        let aggregates = summary.groups.len() + summary.agents.len();
        let agg_height = if aggregates == 0 {
            0
        } else {
            (aggregates as u16 + 3).min(area.height / 3)
        };
        let [top, rest] =
            Layout::vertical([Constraint::Length(agg_height), Constraint::Fill(1)]).areas(area);
        if agg_height > 0 {
            draw_aggregates(frame, top, summary);
        }
        self.draw_nodes(frame, rest, summary);
    }

    fn draw_nodes(&self, frame: &mut Frame, area: Rect, summary: &Summary) {
        let fresh = summary
            .nodes
            .iter()
            .filter(|n| n.freshness == Some(Freshness::Fresh))
            .count();
        let block = Block::bordered().title(title(&format!(
            " telemetry: {} nodes, {fresh} fresh, every {}s ",
            summary.nodes.len(),
            summary.interval_s
        )));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let rows_range = visible(
            &self.offset,
            &self.page,
            self.cursor,
            summary.nodes.len(),
            inner,
        );
        let first = rows_range.start;
        // Narrow terminals keep every number and the CPU, memory and
        // latency sparklines, shorter; wide ones get the request sparkline.
        let narrow = inner.width < 130;
        let spark = if narrow { 6 } else { SPARK };
        let name = if narrow { 12 } else { 14 };
        let rows: Vec<Row> = summary.nodes[rows_range]
            .iter()
            .map(|n| node_row(n, spark, narrow))
            .collect();
        let mut heads = vec![
            "NODE", "STATE", "CPU%", "CPU", "MEM%", "MEM", "GPU%", "REQ/s",
        ];
        let w = spark as u16;
        let mut widths = vec![
            Constraint::Length(name),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(w),
            Constraint::Length(4),
            Constraint::Length(w),
            Constraint::Length(4),
            Constraint::Length(6),
        ];
        if !narrow {
            heads.push("REQUESTS");
            widths.push(Constraint::Length(w));
        }
        heads.extend(["ERR/s", "P95ms", "P95"]);
        widths.extend([
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(w),
        ]);
        let header = Row::new(heads.into_iter().map(TableCell::from)).style(header_style());
        let table = Table::new(rows, widths).header(header);
        draw_table(frame, table, inner, self.cursor, first);
    }
}

fn title(s: &str) -> Line<'static> {
    Line::styled(s.to_string(), header_style())
}

fn state_cell(n: &NodeSummary) -> TableCell<'static> {
    match n.freshness {
        Some(Freshness::Fresh) => TableCell::from("fresh").style(Style::new().fg(Color::Green)),
        Some(Freshness::Stale) => TableCell::from("stale").style(Style::new().fg(Color::Yellow)),
        _ if n.link == "connecting" => TableCell::from("conn").style(dim()),
        _ => TableCell::from("down").style(Style::new().fg(Color::Red)),
    }
}

fn node_row(n: &NodeSummary, spark: usize, narrow: bool) -> Row<'static> {
    let stale = n.freshness != Some(Freshness::Fresh);
    // Numbers of a stale node are old: shown dimmed, never as current.
    let now = |s: &Series, d| {
        let c = TableCell::from(num(NodeSummary::last(s), d));
        if stale { c.style(dim()) } else { c }
    };
    let no_agents = n.agents.is_empty();
    let agent = |s: &Series, d| {
        if no_agents {
            TableCell::from("-").style(dim())
        } else {
            now(s, d)
        }
    };
    let agent_spark = |s: &Series| {
        if no_agents {
            TableCell::from(if narrow { "none" } else { "no agents" }).style(dim())
        } else {
            TableCell::from(sparkline(s, max_of(s), spark))
        }
    };
    let mut cells = vec![
        TableCell::from(fit(&n.node, if narrow { 12 } else { 14 })),
        state_cell(n),
        now(&n.cpu, 0),
        TableCell::from(sparkline(&n.cpu, 100.0, spark)).style(Style::new().fg(Color::Cyan)),
        now(&n.mem, 0),
        TableCell::from(sparkline(&n.mem, 100.0, spark)).style(Style::new().fg(Color::Magenta)),
        if n.has_gpu {
            now(&n.gpu, 0)
        } else {
            TableCell::from("-").style(dim())
        },
        agent(&n.requests, 1),
    ];
    if !narrow {
        cells.push(agent_spark(&n.requests));
    }
    cells.extend([
        agent(&n.errors, 1),
        agent(&n.p95_ms, 0),
        agent_spark(&n.p95_ms),
    ]);
    Row::new(cells)
}

fn aggregate_row(kind: &str, a: &Aggregate) -> Row<'static> {
    Row::new(vec![
        TableCell::from(format!("{kind} {}", fit(&a.name, 18))),
        TableCell::from(format!("{}/{}", a.fresh, a.nodes)),
        TableCell::from(num(a.cpu_avg, 0)),
        TableCell::from(num(a.mem_avg, 0)),
        TableCell::from(num(a.requests, 1)),
        TableCell::from(num(a.errors, 1)),
        TableCell::from(num(a.p95_ms, 0)),
    ])
}

fn draw_aggregates(frame: &mut Frame, area: Rect, summary: &Summary) {
    let rows: Vec<Row> = summary
        .groups
        .iter()
        .map(|g| aggregate_row("group", g))
        .chain(summary.agents.iter().map(|a| aggregate_row("agent", a)))
        .collect();
    let header =
        Row::new(["", "FRESH", "CPU%", "MEM%", "REQ/s", "ERR/s", "P95ms"].map(TableCell::from))
            .style(header_style());
    let table = Table::new(
        rows,
        [
            Constraint::Length(26),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(7),
        ],
    )
    .header(header)
    .block(Block::bordered().title(title(" by group and agent (fresh nodes) ")));
    frame.render_widget(table, area);
}

/// Contiguous runs of points as chart data: a missed sample ends a line,
/// so a gap is drawn as a gap.
fn segments(series: &Series) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for (i, p) in series.iter().enumerate() {
        match p {
            Some(v) => cur.push((i as f64, *v as f64)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A chart line: its segments (split at gaps), label and colour.
type ChartLine = (Vec<Vec<(f64, f64)>>, &'static str, Color);

fn chart<'a>(
    name: &'a str,
    data: &'a [ChartLine],
    points: usize,
    max: f64,
    interval_s: f32,
) -> Chart<'a> {
    let mut datasets = Vec::new();
    for (segs, label, color) in data {
        for (i, seg) in segs.iter().enumerate() {
            let d = Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(*color))
                .data(seg);
            datasets.push(if i == 0 { d.name(*label) } else { d });
        }
    }
    let span = points.saturating_sub(1).max(1) as f64;
    Chart::new(datasets)
        .block(Block::bordered().title(title(name)))
        .x_axis(
            Axis::default()
                .bounds([0.0, span])
                .labels([
                    Span::raw(format!("-{:.0}s", span * interval_s as f64)),
                    Span::raw("now"),
                ])
                .style(dim()),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, max.max(1.0)])
                .labels([Span::raw("0"), Span::raw(format!("{:.0}", max.max(1.0)))])
                .style(dim()),
        )
}

fn draw_charts(frame: &mut Frame, area: Rect, n: &NodeSummary, interval_s: f32) {
    let [head, top, bottom] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    let state = match n.freshness {
        Some(Freshness::Fresh) => "fresh".to_string(),
        Some(Freshness::Stale) => format!("stale ({})", n.link),
        _ => n.link.clone(),
    };
    let agents = if n.agents.is_empty() {
        "no agents".to_string()
    } else {
        n.agents.join(", ")
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(format!(" {} ", n.node), header_style()),
                Span::raw(format!(
                    " {state} · load {} · GPU {} · {agents}",
                    num(n.load1, 2),
                    if n.has_gpu {
                        format!("{}%", num(NodeSummary::last(&n.gpu), 0))
                    } else {
                        "none".into()
                    }
                )),
            ]),
            Line::styled(" gaps are missed samples · Esc back", dim()),
        ]),
        head,
    );
    let points = n.cpu.len();
    let mut usage = vec![
        (segments(&n.cpu), "cpu %", Color::Cyan),
        (segments(&n.mem), "mem %", Color::Magenta),
    ];
    if n.has_gpu {
        usage.push((segments(&n.gpu), "gpu %", Color::Green));
    }
    frame.render_widget(chart(" usage % ", &usage, points, 100.0, interval_s), top);
    if n.agents.is_empty() {
        frame.render_widget(
            Paragraph::new(" no agents on this node")
                .style(dim())
                .block(Block::bordered().title(title(" agents "))),
            bottom,
        );
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)]).areas(bottom);
    let rates = [
        (segments(&n.requests), "req/s", Color::Blue),
        (segments(&n.errors), "err/s", Color::Red),
    ];
    let max = max_of(&n.requests).max(max_of(&n.errors)) as f64;
    frame.render_widget(
        chart(
            " agent requests ",
            &rates,
            n.requests.len(),
            max,
            interval_s,
        ),
        left,
    );
    let p95 = [(segments(&n.p95_ms), "p95 ms", Color::Yellow)];
    frame.render_widget(
        chart(
            " latency ",
            &p95,
            n.p95_ms.len(),
            max_of(&n.p95_ms) as f64,
            interval_s,
        ),
        right,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_show_gaps_not_zeros() {
        let s = vec![Some(0.0), None, Some(50.0), Some(100.0)];
        assert_eq!(sparkline(&s, 100.0, 6), "  ▁·▅█");
        assert_eq!(sparkline(&s, 100.0, 2), "▅█");
        assert_eq!(segments(&s).len(), 2);
    }
}
