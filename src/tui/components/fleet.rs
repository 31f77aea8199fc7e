//! The fleet view: every node of the SoT in one table, sortable, filterable
//! and multi-selectable. Only the rows in the visible window are built per
//! frame, so 10,000 nodes scroll as fast as 10; filtering and sorting run
//! when they change, never while drawing.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell as TableCell, Paragraph, Row, Table, Wrap};

use super::list::{Nav, navigate};
use crate::fleet::NodeStatus;
use crate::sot::Sot;
use crate::store::LastResult;
use crate::tui::action::{Action, PromptKind};
use crate::tui::filter::{Filter, Subject, haystack};
use crate::tui::text::{age, dim, header_style, status_style};

/// Whether a node answered the last time maestro tried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Yes,
    No,
    Unknown,
}

impl Reach {
    fn label(self) -> &'static str {
        match self {
            Reach::Yes => "yes",
            Reach::No => "no",
            Reach::Unknown => "?",
        }
    }
}

/// One node as the table shows it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    groups_text: String,
    tags_text: String,
    /// The tag values alone, key tags first (narrow terminals).
    tag_values: String,
    haystack: String,
    pub last: Option<LastResult>,
    pub reach: Reach,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    Address,
    Groups,
    Reach,
    Last,
}

impl SortKey {
    fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::Address,
            SortKey::Address => SortKey::Groups,
            SortKey::Groups => SortKey::Reach,
            SortKey::Reach => SortKey::Last,
            SortKey::Last => SortKey::Name,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Address => "address",
            SortKey::Groups => "groups",
            SortKey::Reach => "reach",
            SortKey::Last => "last run",
        }
    }
}

/// Fleet-wide counts for the header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub nodes: usize,
    pub reachable: usize,
    pub unreachable: usize,
    pub unknown: usize,
    pub last_failed: usize,
}

/// A node's live CPU and memory %, when fresh.
type LivePct = (Option<f32>, Option<f32>);

pub struct FleetView {
    rows: Vec<NodeRow>,
    index: HashMap<String, usize>,
    /// Indices into `rows`: the filtered rows in sort order.
    view: Vec<usize>,
    /// Whether each row passes the filter.
    shown: Vec<bool>,
    /// Position of the cursor in `view`.
    cursor: usize,
    /// First visible position and page height, as of the last frame.
    offset: Cell<usize>,
    page: Cell<usize>,
    marked: BTreeSet<usize>,
    sort: SortKey,
    descending: bool,
    filter_text: String,
    filter: Filter,
    widths: [u16; 3],
    counts: Counts,
    now_ms: i64,
    /// Live CPU and memory % per node while telemetry runs (`None`: not
    /// running, no columns); a stale node's numbers are not shown as live.
    live: Option<HashMap<String, LivePct>>,
}

impl FleetView {
    pub fn new(sot: &Sot) -> FleetView {
        let key_tags: Vec<&str> = sot
            .settings
            .required_tags
            .iter()
            .map(|s| s.as_str())
            .collect();
        let rows: Vec<NodeRow> = sot
            .nodes
            .iter()
            .map(|n| {
                let address = if n.port == 22 {
                    n.address.clone()
                } else {
                    format!("{}:{}", n.address, n.port)
                };
                let mut tags_text: Vec<String> = key_tags
                    .iter()
                    .filter_map(|k| n.tags.get(*k).map(|v| format!("{k}={v}")))
                    .collect();
                tags_text.extend(
                    n.tags
                        .iter()
                        .filter(|(k, _)| !key_tags.contains(&k.as_str()))
                        .map(|(k, v)| format!("{k}={v}")),
                );
                let tag_values = key_tags
                    .iter()
                    .filter_map(|k| n.tags.get(*k).cloned())
                    .chain(
                        n.tags
                            .iter()
                            .filter(|(k, _)| !key_tags.contains(&k.as_str()))
                            .map(|(_, v)| v.clone()),
                    )
                    .collect::<Vec<_>>()
                    .join(" ");
                NodeRow {
                    tag_values,
                    haystack: haystack(&n.name, &address, &n.groups, &n.tags),
                    groups_text: n.groups.join(","),
                    tags_text: tags_text.join(" "),
                    name: n.name.clone(),
                    address,
                    groups: n.groups.clone(),
                    tags: n.tags.clone(),
                    last: None,
                    reach: Reach::Unknown,
                }
            })
            .collect();
        let longest = |f: &dyn Fn(&NodeRow) -> usize, min: usize, max: usize| {
            rows.iter().map(f).max().unwrap_or(0).clamp(min, max) as u16
        };
        let widths = [
            longest(&|r| r.name.len(), 4, 28),
            longest(&|r| r.address.len(), 7, 24),
            longest(&|r| r.groups_text.len(), 6, 20),
        ];
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut view = FleetView {
            view: (0..rows.len()).collect(),
            shown: vec![true; rows.len()],
            rows,
            index,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
            marked: BTreeSet::new(),
            sort: SortKey::Name,
            descending: false,
            filter_text: String::new(),
            filter: Filter::default(),
            widths,
            counts: Counts::default(),
            now_ms: 0,
            live: None,
        };
        view.recount();
        view.refresh();
        view.cursor = 0;
        view
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Last results from the store, for every node.
    /// The live CPU and memory columns, from the telemetry's summary.
    pub fn set_live(&mut self, summary: &crate::telemetry::summary::Summary) {
        use crate::telemetry::Freshness;
        use crate::telemetry::summary::NodeSummary;
        self.live = Some(
            summary
                .nodes
                .iter()
                .map(|n| {
                    let v = if n.freshness == Some(Freshness::Fresh) {
                        (NodeSummary::last(&n.cpu), NodeSummary::last(&n.mem))
                    } else {
                        (None, None)
                    };
                    (n.node.clone(), v)
                })
                .collect(),
        );
    }

    pub fn set_last_results(&mut self, last: &HashMap<String, LastResult>) {
        for row in &mut self.rows {
            row.last = last.get(&row.name).cloned();
            row.reach = reach_of(row.last.as_ref().map(|l| l.status));
        }
        self.recount();
        self.refresh();
    }

    /// A node finished in a run started here (before the store is re-read).
    pub fn record_result(&mut self, node: &str, result: LastResult) {
        if let Some(&i) = self.index.get(node) {
            let row = &mut self.rows[i];
            tally(&mut self.counts, row, false);
            let reach = reach_of(Some(result.status));
            if reach != Reach::Unknown {
                row.reach = reach;
            }
            row.last = Some(result);
            tally(&mut self.counts, row, true);
        }
    }

    /// A node accepted a connection.
    pub fn mark_reachable(&mut self, node: &str) {
        if let Some(&i) = self.index.get(node) {
            tally(&mut self.counts, &self.rows[i], false);
            self.rows[i].reach = Reach::Yes;
            tally(&mut self.counts, &self.rows[i], true);
        }
    }

    pub fn set_filter(&mut self, text: &str) {
        self.filter_text = text.trim().to_string();
        self.filter = Filter::parse(text);
        self.refresh();
    }

    pub fn filter_text(&self) -> &str {
        &self.filter_text
    }

    /// What an action on "the selection" works on: the marked nodes (in SoT
    /// order, shown or not), else the node under the cursor.
    pub fn selection(&self) -> Vec<String> {
        if self.marked.is_empty() {
            self.current()
                .map(|r| vec![r.name.clone()])
                .unwrap_or_default()
        } else {
            self.marked
                .iter()
                .map(|&i| self.rows[i].name.clone())
                .collect()
        }
    }

    pub fn current(&self) -> Option<&NodeRow> {
        self.view.get(self.cursor).map(|&i| &self.rows[i])
    }

    /// Header counts, kept up to date as results come in (the header is
    /// drawn every frame; this is not recounted there).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn recount(&mut self) {
        self.counts = Counts {
            nodes: self.rows.len(),
            ..Counts::default()
        };
        for r in &self.rows {
            tally(&mut self.counts, r, true);
        }
    }

    pub fn marked_count(&self) -> usize {
        self.marked.len()
    }

    /// Filter and sort again, keeping the cursor on the same node when it
    /// is still shown.
    fn refresh(&mut self) {
        let current = self.view.get(self.cursor).copied();
        let rows = &self.rows;
        let filter = &self.filter;
        let mut view: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                let r = &rows[i];
                filter.is_empty()
                    || filter.matches(&Subject {
                        tags: &r.tags,
                        groups: &r.groups,
                        haystack: &r.haystack,
                    })
            })
            .collect();
        let sort = self.sort;
        view.sort_by(|&a, &b| {
            let (a, b) = (&rows[a], &rows[b]);
            let primary = match sort {
                SortKey::Name => std::cmp::Ordering::Equal,
                SortKey::Address => a.address.cmp(&b.address),
                SortKey::Groups => a.groups_text.cmp(&b.groups_text),
                SortKey::Reach => a.reach.cmp(&b.reach),
                // Problems first, then by age (newest first); never-run last.
                SortKey::Last => match (&a.last, &b.last) {
                    (Some(x), Some(y)) => (x.status == NodeStatus::Ok)
                        .cmp(&(y.status == NodeStatus::Ok))
                        .then(y.finished_ms.cmp(&x.finished_ms)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                },
            };
            primary.then_with(|| a.name.cmp(&b.name))
        });
        if self.descending {
            view.reverse();
        }
        self.shown = vec![false; self.rows.len()];
        for &i in &view {
            self.shown[i] = true;
        }
        self.view = view;
        self.cursor = current
            .and_then(|c| self.view.iter().position(|&i| i == c))
            .unwrap_or(0);
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if let Some(nav) = Nav::of(key) {
            self.cursor = navigate(nav, self.cursor, self.view.len(), self.page.get());
            return Some(Action::Redraw);
        }
        Some(match key.code {
            KeyCode::Char(' ') => {
                let &i = self.view.get(self.cursor)?;
                if !self.marked.remove(&i) {
                    self.marked.insert(i);
                }
                self.cursor = (self.cursor + 1).min(self.view.len().saturating_sub(1));
                Action::Redraw
            }
            KeyCode::Char('a') => {
                self.marked.extend(self.view.iter().copied());
                Action::Redraw
            }
            KeyCode::Char('u') => {
                self.marked.clear();
                Action::Redraw
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.descending = false;
                self.refresh();
                Action::Redraw
            }
            KeyCode::Char('S') => {
                self.descending = !self.descending;
                self.refresh();
                Action::Redraw
            }
            KeyCode::Enter => match self.current() {
                Some(r) => Action::OpenNode(r.name.clone()),
                None => Action::Unavailable("no node here to open".into()),
            },
            KeyCode::Char('x') => {
                let nodes = self.selection();
                if nodes.is_empty() {
                    Action::Unavailable("no node to exec on: none is shown or marked".into())
                } else {
                    Action::OpenPrompt(PromptKind::Exec { nodes })
                }
            }
            KeyCode::Char('p') => Action::OpenCommand("play ".into()),
            KeyCode::Char('i') => Action::OpenCommand("install ".into()),
            KeyCode::Char('h') => Action::Command("harden".into()),
            KeyCode::Esc if !self.filter_text.is_empty() => Action::Filter(String::new()),
            _ => return None,
        })
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let mut title = vec![
            Span::styled(" nodes ", header_style()),
            Span::raw(format!("{}/{} ", self.view.len(), self.rows.len())),
            Span::styled(
                format!(
                    "· sort {}{} ",
                    self.sort.label(),
                    if self.descending { "▼" } else { "▲" }
                ),
                dim(),
            ),
        ];
        if !self.filter_text.is_empty() {
            title.push(Span::raw(format!("· filter {} ", self.filter_text)));
        }
        if !self.marked.is_empty() {
            let hidden = self.marked.iter().filter(|&&i| !self.shown[i]).count();
            title.push(Span::raw(format!("· {} marked", self.marked.len())));
            if hidden > 0 {
                title.push(Span::raw(format!(" ({hidden} not shown)")));
            }
            title.push(Span::raw(" "));
        }
        let mut block = Block::bordered().title(Line::from(title));
        let inner = block.inner(area);
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.view.len(),
            inner,
        );
        let (offset, end) = (visible.start, visible.end);
        if !self.view.is_empty() {
            block = block.title_bottom(
                Line::from(format!(" {}-{} of {} ", offset + 1, end, self.view.len()))
                    .right_aligned(),
            );
        }
        frame.render_widget(&block, area);
        if self.rows.is_empty() {
            let text = "The SoT has no nodes yet. Add one with\n\n  maestro node add NAME --address ADDRESS --reason WHY\n\nthen start maestro again.";
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
            return;
        }
        if self.view.is_empty() {
            let text = format!(
                "No node matches the filter `{}`.\nEsc clears it; / edits it (text, key=value, group=NAME).",
                self.filter_text
            );
            frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
            return;
        }
        // Below 110 columns tags show as values only (`prod eu-west`), and
        // long addresses and group lists give way to them.
        let narrow = inner.width < 110;
        let rows: Vec<Row> = self.view[offset..end]
            .iter()
            .map(|&i| self.row(i, narrow))
            .collect();
        let [name_w, mut addr_w, mut groups_w] = self.widths;
        if narrow {
            addr_w = addr_w.min(16);
            groups_w = groups_w.min(10);
        }
        let mut widths = vec![
            Constraint::Length(1),
            Constraint::Length(name_w),
            Constraint::Length(addr_w),
            Constraint::Length(groups_w),
            Constraint::Fill(1),
            Constraint::Length(5),
            Constraint::Length(14),
        ];
        if self.live.is_some() {
            widths.extend([Constraint::Length(4), Constraint::Length(4)]);
        }
        let arrow = if self.descending { "▼" } else { "▲" };
        let head = |label: &str, key: Option<SortKey>| {
            if key == Some(self.sort) {
                format!("{label}{arrow}")
            } else {
                label.to_string()
            }
        };
        let mut heads = vec![
            String::new(),
            head("NAME", Some(SortKey::Name)),
            head("ADDRESS", Some(SortKey::Address)),
            head("GROUPS", Some(SortKey::Groups)),
            head(if narrow { "TAG VALUES" } else { "TAGS" }, None),
            head("REACH", Some(SortKey::Reach)),
            head("LAST RUN", Some(SortKey::Last)),
        ];
        if self.live.is_some() {
            heads.extend(["CPU%".to_string(), "MEM%".to_string()]);
        }
        let header = Row::new(heads).style(header_style());
        let table = Table::new(rows, widths).header(header);
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }

    fn row(&self, i: usize, narrow: bool) -> Row<'_> {
        let r = &self.rows[i];
        let last = match &r.last {
            Some(l) => TableCell::from(format!("{} {}", l.status, age(self.now_ms, l.finished_ms)))
                .style(status_style(l.status)),
            None => TableCell::from("-").style(dim()),
        };
        let mark = if self.marked.contains(&i) { "✓" } else { "" };
        let mut cells = vec![
            TableCell::from(mark),
            TableCell::from(r.name.as_str()),
            TableCell::from(r.address.as_str()),
            TableCell::from(r.groups_text.as_str()),
            TableCell::from(if narrow {
                r.tag_values.as_str()
            } else {
                r.tags_text.as_str()
            }),
            TableCell::from(r.reach.label()),
            last,
        ];
        if let Some(live) = &self.live {
            let (cpu, mem) = live.get(&r.name).copied().unwrap_or((None, None));
            let pct = |v: Option<f32>| match v {
                Some(v) => TableCell::from(format!("{v:.0}")),
                None => TableCell::from("-").style(dim()),
            };
            cells.extend([pct(cpu), pct(mem)]);
        }
        Row::new(cells)
    }
}

/// Add (or take away) one row's part of the header counts.
fn tally(c: &mut Counts, r: &NodeRow, add: bool) {
    let step = |n: &mut usize| {
        if add {
            *n += 1
        } else {
            *n = n.saturating_sub(1)
        }
    };
    match r.reach {
        Reach::Yes => step(&mut c.reachable),
        Reach::No => step(&mut c.unreachable),
        Reach::Unknown => step(&mut c.unknown),
    }
    if r.last.as_ref().is_some_and(|l| l.status != NodeStatus::Ok) {
        step(&mut c.last_failed);
    }
}

fn reach_of(status: Option<NodeStatus>) -> Reach {
    match status {
        Some(NodeStatus::Unreachable) => Reach::No,
        Some(NodeStatus::Cancelled) | None => Reach::Unknown,
        Some(_) => Reach::Yes,
    }
}
