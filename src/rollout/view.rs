//! What a face shows of a rollout, computed from the store: the steps with
//! the current one marked, the weight, the nodes per version and the gate
//! measurements. `rollout status` prints [`tree`]; the console draws the
//! same [`Overview`] with its widgets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Plan;
use crate::store::{GateOutcome, JournalEntry, Measurement, Rollout, RolloutStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Done,
    Current,
    Pending,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepView {
    pub index: u32,
    pub step: String,
    pub state: StepState,
}

/// Everything a face shows of one rollout.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub rollout: Rollout,
    pub kind: String,
    pub steps: Vec<StepView>,
    /// Version -> nodes running it (per the journal).
    pub versions: BTreeMap<String, Vec<String>>,
    pub measurements: Vec<Measurement>,
}

impl Overview {
    pub fn new(r: &Rollout, journal: &[JournalEntry], measurements: Vec<Measurement>) -> Overview {
        let plan = Plan::of(r).ok();
        let steps = plan
            .as_ref()
            .map(|p| p.steps().to_vec())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let i = i as u32;
                let state = match r.status {
                    RolloutStatus::Completed => StepState::Done,
                    _ if i < r.step => StepState::Done,
                    _ if i == r.step && r.status.is_active() => StepState::Current,
                    _ => StepState::Pending,
                };
                StepView {
                    index: i,
                    step: s.describe(),
                    state,
                }
            })
            .collect();
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (node, v) in super::node_versions(r, journal) {
            versions.entry(v).or_default().push(node);
        }
        Overview {
            kind: plan
                .map(|p| p.strategy.kind.name().to_string())
                .unwrap_or_default(),
            rollout: r.clone(),
            steps,
            versions,
            measurements: measurements
                .into_iter()
                .filter(|m| m.attempt == r.attempt)
                .collect(),
        }
    }
}

pub fn status_glyph(s: RolloutStatus) -> &'static str {
    match s {
        RolloutStatus::Progressing => "◌",
        RolloutStatus::Paused => "॥",
        RolloutStatus::Completed => "✔",
        RolloutStatus::Aborted => "✖",
    }
}

pub fn outcome_glyph(o: GateOutcome) -> &'static str {
    match o {
        GateOutcome::Pass => "✔",
        GateOutcome::Fail => "✖",
        GateOutcome::Inconclusive => "?",
    }
}

/// A bar of `width` cells, `weight` percent full.
pub fn weight_bar(weight: u8, width: usize) -> String {
    let full = (weight as usize * width).div_ceil(100).min(width);
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

/// The status tree as lines of text (unsanitised values are the store's
/// own: ids, versions, node names and messages maestro wrote).
pub fn tree(o: &Overview) -> Vec<String> {
    let r = &o.rollout;
    let mut out = vec![
        format!("Rollout:   {}", r.id),
        format!(
            "Agent:     {} {} → {}",
            r.agent,
            r.from_version.as_deref().unwrap_or("-"),
            r.to_version
        ),
        format!(
            "Strategy:  {} ({}), target {}",
            r.strategy, o.kind, r.target
        ),
        format!(
            "Status:    {} {}{}",
            status_glyph(r.status),
            r.status,
            if r.attempt > 1 {
                format!(" (attempt {})", r.attempt)
            } else {
                String::new()
            }
        ),
    ];
    if let Some(reason) = &r.reason {
        out.push(format!("Reason:    {reason}"));
    }
    out.push(format!(
        "Weight:    {:>3}% {}",
        r.weight,
        weight_bar(r.weight, 20)
    ));
    out.push("Steps:".into());
    for s in &o.steps {
        let mark = match s.state {
            StepState::Done => "✔",
            StepState::Current => "▶",
            StepState::Pending => "·",
        };
        out.push(format!("  {mark} {:>2}. {}", s.index + 1, s.step));
    }
    out.push("Nodes:".into());
    for (v, nodes) in &o.versions {
        let role = if v == &r.to_version {
            " (new)"
        } else if Some(v) == r.from_version.as_ref() {
            " (stable)"
        } else {
            ""
        };
        out.push(format!(
            "  {v}{role}: {} node(s): {}",
            nodes.len(),
            nodes.join(" ")
        ));
    }
    if !o.measurements.is_empty() {
        out.push("Measurements:".into());
        for m in &o.measurements {
            out.push(format!(
                "  {} step {} {} #{}: {}",
                outcome_glyph(m.outcome),
                m.step + 1,
                m.gate,
                m.seq,
                m.message
            ));
        }
    }
    out
}
