//! A fleet's compliance with a baseline, computed from an audit run: in total
//! and per section (a rule's `category`: ssh, kernel, files, accounts,
//! logging, audit, integrity, services).
//!
//! A rule that passes counts as passing; one that fails, was refused or could
//! not be checked (`unknown`) counts against compliance; a rule that does not
//! apply is left out. A node that could not be audited counts every rule as
//! failing: an unmeasured node is never compliant.

use crate::fleet::event::TaskStatus;
use crate::fleet::{NodeResult, RunReport};

use super::Loaded;

/// A fleet's compliance with a baseline, from an audit.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Compliance {
    pub baseline: String,
    /// Passing rule checks over all checks that apply, in percent.
    pub percent: f64,
    pub passing: usize,
    pub failing: usize,
    /// Checks that could not be made (counted against compliance).
    pub unknown: usize,
    pub not_applicable: usize,
    /// Nodes audited, out of the nodes targeted.
    pub nodes_measured: usize,
    pub nodes_total: usize,
    /// Nodes that could not be audited (unreachable, timed out, cancelled, or
    /// the script did not run), with why.
    pub unmeasured: Vec<(String, String)>,
    /// The same figures per section, in the order sections first appear in
    /// the baseline.
    pub sections: Vec<SectionCompliance>,
}

/// Compliance of one section of the baseline over the fleet.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SectionCompliance {
    pub section: String,
    pub percent: f64,
    pub passing: usize,
    pub failing: usize,
    pub unknown: usize,
    pub not_applicable: usize,
}

impl SectionCompliance {
    fn new(section: &str) -> SectionCompliance {
        SectionCompliance {
            section: section.to_string(),
            percent: 0.0,
            passing: 0,
            failing: 0,
            unknown: 0,
            not_applicable: 0,
        }
    }

    fn count(&mut self, status: Option<TaskStatus>) {
        match status {
            Some(TaskStatus::Ok | TaskStatus::Changed) => self.passing += 1,
            Some(TaskStatus::Unknown) => self.unknown += 1,
            Some(TaskStatus::Skipped) => self.not_applicable += 1,
            Some(TaskStatus::Failed | TaskStatus::Refused) | None => self.failing += 1,
        }
    }

    fn finish(&mut self) {
        let applicable = self.passing + self.failing + self.unknown;
        self.percent = if applicable == 0 {
            100.0
        } else {
            100.0 * self.passing as f64 / applicable as f64
        };
    }
}

/// Compliance of the nodes in `report` (an audit run of `baseline`).
pub fn compliance(baseline: &Loaded, report: &RunReport) -> Compliance {
    let mut total = SectionCompliance::new("total");
    let mut sections: Vec<SectionCompliance> = Vec::new();
    let mut unmeasured = Vec::new();
    let mut measured = 0;
    for r in &report.results {
        let audited = !r.tasks.is_empty();
        if audited {
            measured += 1;
        } else {
            unmeasured.push((
                r.node.clone(),
                r.error.clone().unwrap_or_else(|| r.status.to_string()),
            ));
        }
        for (index, rule) in baseline.rules.iter().enumerate() {
            let status = status_of(r, index, audited);
            total.count(status);
            let section = match sections.iter_mut().position(|s| s.section == rule.category) {
                Some(i) => &mut sections[i],
                None => {
                    sections.push(SectionCompliance::new(&rule.category));
                    sections.last_mut().expect("just pushed")
                }
            };
            section.count(status);
        }
    }
    total.finish();
    for s in &mut sections {
        s.finish();
    }
    Compliance {
        baseline: baseline.name.clone(),
        percent: total.percent,
        passing: total.passing,
        failing: total.failing,
        unknown: total.unknown,
        not_applicable: total.not_applicable,
        nodes_measured: measured,
        nodes_total: report.results.len(),
        unmeasured,
        sections,
    }
}

/// One node's compliance from its audit result: (percent, passing, failing,
/// unknown, ids of the rules not passing). An unaudited node fails every rule.
pub fn node_compliance(baseline: &Loaded, r: &NodeResult) -> crate::fleet::event::Event {
    let audited = !r.tasks.is_empty();
    let mut c = SectionCompliance::new("node");
    let mut failing_rules = Vec::new();
    for (index, rule) in baseline.rules.iter().enumerate() {
        let status = status_of(r, index, audited);
        c.count(status);
        if !matches!(
            status,
            Some(TaskStatus::Ok | TaskStatus::Changed | TaskStatus::Skipped)
        ) {
            failing_rules.push(rule.id.clone());
        }
    }
    c.finish();
    crate::fleet::event::Event::Compliance {
        node: r.node.clone(),
        baseline: baseline.name.clone(),
        percent: c.percent,
        passing: c.passing,
        failing: c.failing,
        unknown: c.unknown,
        failing_rules,
    }
}

/// The status of rule `index` on a node; `None` (failing) when the node was
/// not audited or the rule did not report.
fn status_of(r: &NodeResult, index: usize, audited: bool) -> Option<TaskStatus> {
    if !audited {
        return None;
    }
    r.tasks.iter().find(|t| t.index == index).map(|t| t.status)
}

/// After `--apply`, the audit shows a rule whose remediation was refused as
/// refused (with the reason), not merely failing.
pub fn carry_refusals(applied: &RunReport, audited: &mut RunReport) {
    for r in &mut audited.results {
        let Some(a) = applied.results.iter().find(|a| a.node == r.node) else {
            continue;
        };
        for t in r
            .tasks
            .iter_mut()
            .filter(|t| t.status == TaskStatus::Failed)
        {
            if let Some(refused) = a
                .tasks
                .iter()
                .find(|x| x.index == t.index && x.status == TaskStatus::Refused)
            {
                t.status = TaskStatus::Refused;
                t.message = refused.message.clone();
            }
        }
    }
}
