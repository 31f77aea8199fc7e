//! The Rollouts view (`:rollouts`): each rollout as a row (status, agent,
//! versions, weight bar), and the selected one in detail: its steps with
//! the current one marked, the nodes per version, and its gate measurements
//! as a sparkline of the error rate with pass/fail/inconclusive marks.
//! `P` promote, `A` abort, `U` undo go through the pinned confirmation.
//! The data is [`Overview`]s the event loop reads from the store about once
//! a second; drawing reads only them.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use crate::rollout::view::{Overview, StepState, outcome_glyph, status_glyph, weight_bar};
use crate::tui::action::{Action, Pending, RolloutPlan, RolloutVerb};
use crate::tui::text::fit;

#[derive(Default)]
pub struct RolloutsView {
    items: Vec<Overview>,
    selected: usize,
    error: Option<String>,
    loaded: bool,
}

/// The error rate of each measurement as bars (0 to the highest seen);
/// a measurement with no error rate is `·`.
fn error_sparkline(o: &Overview) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let rates: Vec<Option<f64>> = o
        .measurements
        .iter()
        .map(|m| m.metrics.get("error_rate").and_then(|v| v.as_f64()))
        .collect();
    let max = rates.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    rates
        .iter()
        .map(|r| match r {
            None => '·',
            Some(v) if max > 0.0 => BARS[((v / max).clamp(0.0, 1.0) * 7.0).round() as usize],
            Some(_) => BARS[0],
        })
        .collect()
}

impl RolloutsView {
    pub fn new() -> RolloutsView {
        RolloutsView::default()
    }

    pub fn set(&mut self, result: Result<Vec<Overview>, String>) {
        self.loaded = true;
        match result {
            Ok(items) => {
                // Keep the selection on the same rollout as rows come and go.
                let id = self.selected().map(|o| o.rollout.id.clone());
                self.items = items;
                self.error = None;
                if let Some(id) = id
                    && let Some(i) = self.items.iter().position(|o| o.rollout.id == id)
                {
                    self.selected = i;
                }
                self.selected = self.selected.min(self.items.len().saturating_sub(1));
            }
            Err(e) => self.error = Some(e),
        }
    }

    fn selected(&self) -> Option<&Overview> {
        self.items.get(self.selected)
    }

    fn verb(&self, verb: RolloutVerb) -> Action {
        let Some(o) = self.selected() else {
            return Action::Unavailable("no rollout selected (none recorded yet)".into());
        };
        let r = &o.rollout;
        let allowed = match verb {
            RolloutVerb::Promote => r.status.is_active(),
            RolloutVerb::Abort => r.status.is_active(),
            RolloutVerb::Undo => !r.status.is_active(),
        };
        if !allowed {
            return Action::Unavailable(format!(
                "{} does not apply: rollout {} is {}",
                verb.as_str(),
                r.id,
                r.status
            ));
        }
        Action::Confirm(Pending::Rollout(RolloutPlan {
            verb,
            id: r.id.clone(),
            agent: r.agent.clone(),
            nodes: r.nodes.clone(),
            summary: match verb {
                RolloutVerb::Promote => format!(
                    "promote {}: {} {} → {} leaves step {} and goes on",
                    r.id,
                    r.agent,
                    r.from_version.as_deref().unwrap_or("-"),
                    r.to_version,
                    r.step + 1
                ),
                RolloutVerb::Abort => format!(
                    "abort {}: {} back to {} on every node {} reached",
                    r.id,
                    r.agent,
                    r.from_version.as_deref().unwrap_or("-"),
                    r.to_version
                ),
                RolloutVerb::Undo => format!(
                    "undo {}: {} back to {} on {} node(s) at once",
                    r.id,
                    r.agent,
                    r.from_version.as_deref().unwrap_or("-"),
                    r.nodes.len()
                ),
            },
        }))
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.items.len().saturating_sub(1));
                Some(Action::Redraw)
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Some(Action::Redraw)
            }
            KeyCode::Char('P') => Some(self.verb(RolloutVerb::Promote)),
            KeyCode::Char('A') => Some(self.verb(RolloutVerb::Abort)),
            KeyCode::Char('U') => Some(self.verb(RolloutVerb::Undo)),
            _ => None,
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let rows = (self.items.len() as u16 + 2).clamp(3, area.height / 3 + 2);
        let [list, detail] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
        let width = list.width.saturating_sub(2) as usize;
        let mut lines: Vec<Line> = super::list::placeholder(
            super::list::ListState {
                source: "the store",
                error: self.error.as_deref(),
                loaded: self.loaded,
                is_empty: self.items.is_empty(),
                empty: "no rollouts yet: maestro rollout start AGENT@VERSION --limit TARGET",
            },
            width,
        )
        .into_iter()
        .collect();
        for (i, o) in self.items.iter().enumerate() {
            let r = &o.rollout;
            let text = format!(
                "{} {} {:11} {:14} {:>7} → {:7} {:>3}% {}  {}",
                if i == self.selected { "▶" } else { " " },
                status_glyph(r.status),
                r.status.as_str(),
                r.agent,
                r.from_version.as_deref().unwrap_or("-"),
                r.to_version,
                r.weight,
                weight_bar(r.weight, 10),
                r.id
            );
            lines.push(Line::from(fit(&text, width)));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::bordered().title(" rollouts  P promote · A abort · U undo ")),
            list,
        );
        let Some(o) = self.selected() else {
            frame.render_widget(Block::bordered(), detail);
            return;
        };
        let r = &o.rollout;
        let width = detail.width.saturating_sub(2) as usize;
        let mut lines = vec![Line::from(fit(
            &format!(
                "{} {} {} → {} · {} ({}) · target {}",
                r.id,
                r.agent,
                r.from_version.as_deref().unwrap_or("-"),
                r.to_version,
                r.strategy,
                o.kind,
                r.target
            ),
            width,
        ))];
        if let Some(reason) = &r.reason {
            lines.push(Line::from(fit(&format!("reason: {reason}"), width)));
        }
        lines.push(Line::from(format!(
            "weight {:>3}% {}",
            r.weight,
            weight_bar(r.weight, 20)
        )));
        for s in &o.steps {
            let mark = match s.state {
                StepState::Done => "✔",
                StepState::Current => "▶",
                StepState::Pending => "·",
            };
            lines.push(Line::from(fit(
                &format!(" {mark} {:>2}. {}", s.index + 1, s.step),
                width,
            )));
        }
        for (v, nodes) in &o.versions {
            let role = if v == &r.to_version {
                "new"
            } else if Some(v) == r.from_version.as_ref() {
                "stable"
            } else {
                "other"
            };
            lines.push(Line::from(fit(
                &format!(" {v} ({role}) {} node(s): {}", nodes.len(), nodes.join(" ")),
                width,
            )));
        }
        if !o.measurements.is_empty() {
            let marks: String = o
                .measurements
                .iter()
                .map(|m| outcome_glyph(m.outcome))
                .collect();
            lines.push(Line::from(fit(
                &format!(" gate error rate {} {}", error_sparkline(o), marks),
                width,
            )));
            if let Some(m) = o.measurements.last() {
                lines.push(Line::from(fit(&format!("   {}", m.message), width)));
            }
        }
        frame.render_widget(Paragraph::new(lines).block(Block::bordered()), detail);
    }
}
