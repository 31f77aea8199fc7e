//! `maestro drift [TARGET] [--fix]`: what differs from the SoT, and the
//! repairs through the normal deploy/play paths.

use std::path::{Path, PathBuf};

use clap::Args;

use super::FleetArgs;
use super::drive::drive;
use super::fleet_cmd::{gate, load_source, request};
use super::printer::{Printer, sanitize};
use crate::drift::{self, Report};
use crate::exit::Exit;
use crate::ops::{JobSpec, Targets};

#[derive(Args, Debug, Clone)]
pub struct DriftArgs {
    /// Nodes to compare: names, globs, groups, tag selectors
    #[arg(default_value = "all")]
    pub target: String,
    /// Bring drifted nodes back: deploy the agent's current version, play
    /// the last playbook, stop unknown agents (each through the admission gate)
    #[arg(long)]
    pub fix: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

fn text(report: &Report) -> String {
    let mut t = String::new();
    let nw = report
        .findings
        .iter()
        .map(|f| f.node.len())
        .max()
        .unwrap_or(4)
        .max(4);
    if !report.findings.is_empty() {
        t.push_str(&format!(
            "  {:nw$}  {:13}  {:20}  {:18}  ACTUAL\n",
            "NODE", "DRIFT", "SUBJECT", "EXPECTED"
        ));
    }
    for f in &report.findings {
        let mark = if f.ignored.is_some() { " " } else { "!" };
        let mut actual = f.actual.clone();
        if let Some(task) = &f.task {
            actual = format!("task `{task}`: {}", f.detail);
        }
        if let Some(why) = &f.ignored {
            actual.push_str(&format!(" (ignored, {why})"));
        }
        let short = |s: &str| -> String {
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                s[..12].to_string()
            } else {
                s.to_string()
            }
        };
        t.push_str(&format!(
            "{mark} {:nw$}  {:13}  {:20}  {:18}  {}\n",
            f.node,
            f.kind.as_str(),
            f.subject,
            short(&f.expected),
            short(&actual)
        ));
    }
    for (node, why) in &report.unknown {
        t.push_str(&format!("? {node}: could not tell: {why}\n"));
    }
    let drifted = report.drifted().count();
    let ignored = report.findings.len() - drifted;
    if drifted == 0 && report.unknown.is_empty() {
        t.push_str("no drift");
    } else {
        t.push_str(&format!("{drifted} difference(s) from the SoT"));
    }
    if ignored > 0 {
        t.push_str(&format!(" ({ignored} ignored by drift.toml)"));
    }
    t.push('\n');
    t
}

pub fn drift(
    root: &Path,
    db: Option<PathBuf>,
    args: DriftArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let template = request(
        JobSpec::AgentStatus { agent: None },
        Targets::Pattern(args.target.clone()),
        &args.fleet,
    );
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = gate(&db);
    let store = db.clone();
    let fix = args.fix;
    let driven = drive(&db, Printer::quiet(), move |launch| async move {
        let before = drift::detect(&source, &template, &gate, &launch, Some(&store)).await?;
        if !fix || before.is_clean() {
            return Ok::<_, crate::ops::OpsError>((before, None));
        }
        let repairs = drift::fix(&source, &template, &gate, &launch, &before).await;
        let after = drift::detect(&source, &template, &gate, &launch, Some(&store)).await?;
        Ok((before, Some((repairs, after))))
    })?;
    let mut driven = driven.try_map(|v| v)?;
    let (before, fixed) = &driven.value;
    let mut out = String::new();
    if json {
        for f in &before.findings {
            out.push_str(&serde_json::json!({"event": "drift", "finding": f}).to_string());
            out.push('\n');
        }
        for (node, why) in &before.unknown {
            out.push_str(
                &serde_json::json!({"event": "drift_unknown", "node": node, "error": why})
                    .to_string(),
            );
            out.push('\n');
        }
        if let Some((repairs, after)) = fixed {
            for r in repairs {
                out.push_str(&serde_json::json!({"event": "repair", "repair": r}).to_string());
                out.push('\n');
            }
            out.push_str(
                &serde_json::json!({"event": "after", "drifted": after.drifted().count(), "unknown": after.unknown})
                    .to_string(),
            );
            out.push('\n');
        }
        out.push_str(
            &serde_json::json!({"event": "summary", "drifted": before.drifted().count(), "ignored": before.findings.len() - before.drifted().count(), "unknown": before.unknown.len()})
                .to_string(),
        );
    } else {
        out.push_str(&text(before));
        if let Some((repairs, after)) = fixed {
            out.push_str("\nrepairs:\n");
            for r in repairs {
                let how = match (&r.refused, r.failed.is_empty()) {
                    (Some(why), _) => format!("refused: {why}"),
                    (None, true) => format!("ok (run {})", r.run),
                    (None, false) => {
                        format!("failed on {} (run {})", r.failed.join(", "), r.run)
                    }
                };
                out.push_str(&format!("  {} on {}: {how}\n", r.job, r.nodes.join(",")));
            }
            out.push_str("\nafter the repairs:\n");
            out.push_str(&text(after));
        }
    }
    driven.printer.print(&sanitize(out.trim_end().as_bytes()));
    let last = fixed.as_ref().map(|(_, after)| after).unwrap_or(before);
    let refused = fixed
        .as_ref()
        .and_then(|(repairs, _)| repairs.iter().find_map(|r| r.exit));
    Ok(if driven.store_error.is_some() {
        Exit::Internal
    } else if let Some(exit) = refused
        && !last.is_clean()
    {
        exit
    } else if last.is_clean() {
        Exit::Ok
    } else {
        Exit::TargetsFailed
    })
}
