//! Drift: is the fleet still what the SoT says?
//!
//! Per node: the agents it runs (version, digest, running) against the
//! registry's `current`; agents the registry does not know (a process with
//! `MAESTRO_AGENT=NAME` in its environment, or a state directory under
//! `/var/lib/maestro/agents/`); and the last playbook the run store saw run
//! on the node, run again in check mode against the SoT as it is now. The
//! store does not record managed files' checksums; a check run compares
//! every attribute a playbook manages (content, mode, owner, lines), which
//! is a stricter test than a checksum, and needs nothing recorded.
//!
//! Detection and repair are jobs of the operations layer (`agent status`, a
//! read-only exec, a playbook's check; deploy, play, exec to repair), so
//! the admission gate sees every repair. This module never prints.

pub mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::fleet::event::{NodeStatus, RunKind, TaskStatus};
use crate::fleet::quote::sh_quote;
use crate::ops::{self, Gate, JobRequest, JobSpec, Launch, OpsError, SotSource, Targets};
pub use rules::{Rule, Rules};

/// Problems are the operations layer's: an invalid `drift.toml` is
/// [`OpsError::Diagnostics`] (exit 2), a refused job [`OpsError::Refused`].
pub type Result<T> = std::result::Result<T, OpsError>;

/// What differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The node runs another version than the registry's `current`.
    AgentVersion,
    /// The right version, other bytes than the registry's sha256.
    AgentDigest,
    /// Deployed and enabled, but not running.
    AgentStopped,
    /// An agent the registry does not know.
    UnknownAgent,
    /// A task of the node's last playbook would change something.
    Playbook,
}

impl Kind {
    pub const NAMES: [&'static str; 5] = [
        "agent-version",
        "agent-digest",
        "agent-stopped",
        "unknown-agent",
        "playbook",
    ];

    pub fn as_str(self) -> &'static str {
        Kind::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [
            Kind::AgentVersion,
            Kind::AgentDigest,
            Kind::AgentStopped,
            Kind::UnknownAgent,
            Kind::Playbook,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One difference on one node.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub node: String,
    pub kind: Kind,
    /// The agent, or the playbook (`play NAME` / `install --profile P`).
    pub subject: String,
    pub expected: String,
    pub actual: String,
    /// For playbooks: what the task would change.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The ignore rule that matched (`drift.toml:12: reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

/// The fleet's drift.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// Nodes that could not say, and why.
    pub unknown: BTreeMap<String, String>,
    /// The runs detection made (all read-only).
    pub runs: Vec<String>,
}

impl Report {
    /// Findings no rule ignores.
    pub fn drifted(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.ignored.is_none())
    }

    pub fn is_clean(&self) -> bool {
        self.drifted().next().is_none() && self.unknown.is_empty()
    }
}

/// How a job of this drift run is made: the operator's connection options
/// and limits, with the job and targets replaced.
fn request(template: &JobRequest, job: JobSpec, targets: Targets) -> JobRequest {
    JobRequest {
        job,
        targets,
        ..template.clone()
    }
}

/// A fresh run id on the same bus (each job is its own run).
fn sub(launch: &Launch) -> Launch {
    Launch::new(launch.bus.clone(), launch.cancel.clone())
}

/// One NUL-safe pass over /proc and the agents' state directories; one
/// `grep` for every process rather than a fork per process. Only processes
/// in this node's mount namespace count: a container's agents (or, on the
/// test fleet, the other nodes sharing the kernel) are not this node's.
const SCAN: &str = "d=/var/lib/maestro/agents; for s in \"$d\"/*/; do [ -d \"$s\" ] || continue; s=${s%/}; echo \"@@drift dir ${s##*/}\"; done; \
me=$(readlink /proc/$$/ns/mnt); \
grep -azH '^MAESTRO_AGENT=' /proc/[0-9]*/environ 2>/dev/null | tr '\\000' '\\n' | while IFS= read -r l; do p=${l#/proc/}; p=${p%%/*}; \
[ \"$(readlink /proc/$p/ns/mnt 2>/dev/null)\" = \"$me\" ] || continue; echo \"@@drift proc $p ${l#*:MAESTRO_AGENT=}\"; done; echo '@@drift done'";

/// Agent names as the registry allows them; anything else from a node is
/// shown escaped and never put into a repair command.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !s.starts_with('.')
}

/// Detect drift on `template.targets`. Runs are recorded through `launch`'s
/// bus; `store` is the run store the last playbooks are looked up in.
pub async fn detect(
    source: &SotSource,
    template: &JobRequest,
    gate: &Gate,
    launch: &Launch,
    store: Option<&Path>,
) -> Result<Report> {
    let sot = source.sot.clone();
    let rules = rules::load(&sot).map_err(OpsError::Diagnostics)?;
    let mut report = Report::default();

    // Agents the registry knows: what each node runs.
    let status = ops::prepare(
        source.clone(),
        request(
            template,
            JobSpec::AgentStatus { agent: None },
            template.targets.clone(),
        ),
    )?;
    let nodes: Vec<String> = status.nodes().to_vec();
    let l = sub(launch);
    let outcome = status.apply(gate, &l).await?;
    report.runs.push(l.run_id);
    for r in &outcome.report.results {
        if r.status != NodeStatus::Ok {
            report.unknown.insert(
                r.node.clone(),
                r.error.clone().unwrap_or_else(|| r.status.to_string()),
            );
        }
    }
    for a in &outcome.agents {
        if a.error.is_some() || a.state.version.is_empty() {
            continue;
        }
        let Some(agent) = sot.agents.get(&a.agent) else {
            continue;
        };
        let expected = agent.current.clone().unwrap_or_default();
        let s = &a.state;
        let mut push = |kind, expected: String, actual: String| {
            report.findings.push(Finding {
                node: a.node.clone(),
                kind,
                subject: a.agent.clone(),
                expected,
                actual,
                detail: String::new(),
                task: None,
                ignored: None,
            });
        };
        if s.version != expected {
            push(Kind::AgentVersion, expected.clone(), s.version.clone());
        } else if let Some(v) = agent.version(&expected)
            && v.sha256 != s.digest
        {
            push(Kind::AgentDigest, v.sha256.clone(), s.digest.clone());
        }
        if s.enabled && !s.killed && !s.running {
            push(Kind::AgentStopped, "running".into(), "stopped".into());
        }
    }

    // Agents nobody registered.
    let scan = ops::prepare(
        source.clone(),
        request(
            template,
            JobSpec::Exec {
                command: SCAN.into(),
            },
            Targets::Nodes(nodes.clone()),
        ),
    )?;
    let l = sub(launch);
    let outcome = scan.apply(gate, &l).await?;
    report.runs.push(l.run_id);
    for r in &outcome.report.results {
        let text = String::from_utf8_lossy(&r.stdout.bytes);
        if !text.contains("@@drift done") {
            report.unknown.entry(r.node.clone()).or_insert_with(|| {
                r.error
                    .clone()
                    .unwrap_or_else(|| "the scan for unknown agents did not finish".into())
            });
            continue;
        }
        let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for line in text.lines() {
            let mut w = line.splitn(4, ' ');
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("@@drift"), Some("dir"), Some(name), None) => {
                    found.entry(name.to_string()).or_default();
                }
                (Some("@@drift"), Some("proc"), Some(pid), Some(name)) => {
                    found
                        .entry(name.to_string())
                        .or_default()
                        .insert(pid.to_string());
                }
                _ => {}
            }
        }
        for (name, pids) in found {
            if sot.agents.contains_key(&name) {
                continue;
            }
            let actual = if pids.is_empty() {
                "a state directory, no process".to_string()
            } else {
                format!(
                    "process{} {}",
                    if pids.len() == 1 { "" } else { "es" },
                    pids.into_iter().collect::<Vec<_>>().join(",")
                )
            };
            report.findings.push(Finding {
                node: r.node.clone(),
                kind: Kind::UnknownAgent,
                subject: crate::terminal_text::sanitize_str(&name),
                expected: "not in the registry".into(),
                actual,
                detail: String::new(),
                task: None,
                ignored: None,
            });
        }
    }

    // The last playbook each node ran, checked against the SoT as it is now.
    if let Some(path) = store {
        let mut by_job: BTreeMap<String, (JobSpec, Vec<String>)> = BTreeMap::new();
        if let Ok(store) = crate::store::open_path(path) {
            for node in &nodes {
                let history = store.node_history(node, 200).unwrap_or_default();
                let last = history
                    .iter()
                    .find(|(run, _)| run.kind == RunKind::Play)
                    .and_then(|(run, _)| last_job(&run.command));
                if let Some((label, job)) = last {
                    by_job
                        .entry(label)
                        .or_insert_with(|| (job, Vec::new()))
                        .1
                        .push(node.clone());
                }
            }
        }
        for (label, (job, group)) in by_job {
            let prepared = match ops::prepare(
                source.clone(),
                request(template, job, Targets::Nodes(group.clone())),
            ) {
                Ok(p) => p,
                Err(e) => {
                    for n in group {
                        report.unknown.insert(
                            n,
                            format!("its last playbook ({label}) cannot be checked: {e}"),
                        );
                    }
                    continue;
                }
            };
            let l = sub(launch);
            let outcome = prepared.check(gate, &l).await?;
            report.runs.push(l.run_id);
            for r in &outcome.report.results {
                if r.status != NodeStatus::Ok {
                    report.unknown.entry(r.node.clone()).or_insert_with(|| {
                        format!(
                            "{label} --check failed: {}",
                            r.error.clone().unwrap_or_else(|| r.status.to_string())
                        )
                    });
                }
                for t in r.tasks.iter().filter(|t| t.status == TaskStatus::Changed) {
                    report.findings.push(Finding {
                        node: r.node.clone(),
                        kind: Kind::Playbook,
                        subject: label.clone(),
                        expected: "as the playbook says".into(),
                        actual: "differs".into(),
                        detail: t.message.clone(),
                        task: Some(t.name.clone()),
                        ignored: None,
                    });
                }
            }
        }
    }

    for f in &mut report.findings {
        if let Some(rule) = rules.matching(f) {
            f.ignored = Some(format!("{}: {}", rule.at, rule.reason));
        }
    }
    let order: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    report.findings.sort_by(|a, b| {
        (order.get(a.node.as_str()), a.kind, &a.subject).cmp(&(
            order.get(b.node.as_str()),
            b.kind,
            &b.subject,
        ))
    });
    Ok(report)
}

/// The job a recorded play run was: `play NAME` or `install --profile P`.
fn last_job(command: &str) -> Option<(String, JobSpec)> {
    if let Some(name) = command.strip_prefix("play ") {
        return Some((
            command.to_string(),
            JobSpec::Play {
                playbook: name.to_string(),
            },
        ));
    }
    let profile = command.strip_prefix("install --profile ")?;
    Some((
        command.to_string(),
        JobSpec::Install {
            profile: profile.to_string(),
        },
    ))
}

/// The repairs for a report: one job per agent to deploy, per playbook to
/// play, and per unknown agent to stop, each limited to its nodes.
pub fn repairs(report: &Report) -> Vec<(JobSpec, Vec<String>)> {
    let mut jobs: BTreeMap<String, (JobSpec, BTreeSet<String>)> = BTreeMap::new();
    for f in report.drifted() {
        let (key, job) = match f.kind {
            Kind::AgentVersion | Kind::AgentDigest | Kind::AgentStopped => (
                format!("deploy {}", f.subject),
                JobSpec::Deploy {
                    agent: f.subject.clone(),
                    version: None,
                    slot: crate::agent::Slot::Primary,
                },
            ),
            Kind::Playbook => match last_job(&f.subject) {
                Some((label, job)) => (label, job),
                None => continue,
            },
            Kind::UnknownAgent if plain_name(&f.subject) => (
                format!("stop {}", f.subject),
                JobSpec::Exec {
                    command: stop_unknown(&f.subject),
                },
            ),
            Kind::UnknownAgent => continue,
        };
        jobs.entry(key)
            .or_insert_with(|| (job, BTreeSet::new()))
            .1
            .insert(f.node.clone());
    }
    jobs.into_values()
        .map(|(job, nodes)| (job, nodes.into_iter().collect()))
        .collect()
}

/// Stop every process of an agent the registry does not know, and move its
/// state directory aside (kept for whoever wants to know what it was).
fn stop_unknown(name: &str) -> String {
    let q = sh_quote(name);
    let env = sh_quote(&format!("MAESTRO_AGENT={name}"));
    format!(
        "me=$(readlink /proc/$$/ns/mnt); for e in /proc/[0-9]*/environ; do grep -qxz -- {env} \"$e\" 2>/dev/null || continue; p=${{e#/proc/}}; p=${{p%%/*}}; \
         [ \"$(readlink /proc/$p/ns/mnt 2>/dev/null)\" = \"$me\" ] && kill -9 \"$p\" 2>/dev/null; done; \
         d=/var/lib/maestro/agents; if [ -d \"$d\"/{q} ] && [ ! -L \"$d\"/{q} ]; then mkdir -p /var/lib/maestro/drift-removed && mv -- \"$d\"/{q} /var/lib/maestro/drift-removed/{q}.$(date +%s); fi; \
         sleep 0.2; for e in /proc/[0-9]*/environ; do grep -qxz -- {env} \"$e\" 2>/dev/null || continue; p=${{e#/proc/}}; p=${{p%%/*}}; \
         [ \"$(readlink /proc/$p/ns/mnt 2>/dev/null)\" = \"$me\" ] && {{ echo \"still running: $p\"; exit 1; }}; done; true"
    )
}

/// What one repair did.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    pub job: String,
    pub nodes: Vec<String>,
    pub run: String,
    pub failed: Vec<String>,
    /// Why the gate refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The exit code the refusal means (4 for a kill switch or a freeze).
    #[serde(skip)]
    pub exit: Option<crate::exit::Exit>,
}

/// Apply the repairs through the gate, one job after the other.
pub async fn fix(
    source: &SotSource,
    template: &JobRequest,
    gate: &Gate,
    launch: &Launch,
    report: &Report,
) -> Vec<Repair> {
    let mut out = Vec::new();
    for (job, nodes) in repairs(report) {
        let label = match &job {
            JobSpec::Exec { .. } => "stop an unknown agent".to_string(),
            other => format!("{other:?}"),
        };
        let prepared = match ops::prepare(
            source.clone(),
            request(template, job, Targets::Nodes(nodes.clone())),
        ) {
            Ok(p) => p,
            Err(e) => {
                out.push(Repair {
                    job: label,
                    nodes,
                    run: String::new(),
                    failed: Vec::new(),
                    refused: Some(e.to_string()),
                    exit: Some(e.exit()),
                });
                continue;
            }
        };
        let label = match prepared.job() {
            JobSpec::Exec { .. } => label,
            _ => prepared.description().to_string(),
        };
        let l = sub(launch);
        match prepared.apply(gate, &l).await {
            Ok(o) => out.push(Repair {
                job: label,
                nodes,
                run: l.run_id,
                failed: o
                    .report
                    .results
                    .iter()
                    .filter(|r| r.status != NodeStatus::Ok)
                    .map(|r| r.node.clone())
                    .collect(),
                refused: None,
                exit: None,
            }),
            Err(e) => out.push(Repair {
                job: label,
                nodes,
                run: String::new(),
                failed: Vec::new(),
                refused: Some(e.to_string()),
                exit: Some(e.exit()),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(node: &str, kind: Kind, subject: &str) -> Finding {
        Finding {
            node: node.into(),
            kind,
            subject: subject.into(),
            expected: String::new(),
            actual: String::new(),
            detail: String::new(),
            task: None,
            ignored: None,
        }
    }

    #[test]
    fn repairs_group_nodes_per_job_and_skip_ignored_and_hostile_names() {
        let mut ignored = finding("n3", Kind::AgentVersion, "a");
        ignored.ignored = Some("drift.toml:1: canary".into());
        let report = Report {
            findings: vec![
                finding("n1", Kind::AgentVersion, "a"),
                finding("n2", Kind::AgentDigest, "a"),
                ignored,
                finding("n1", Kind::Playbook, "play web"),
                finding("n2", Kind::UnknownAgent, "rogue"),
                finding("n2", Kind::UnknownAgent, "x;rm -rf /"),
            ],
            ..Report::default()
        };
        let jobs = repairs(&report);
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert!(jobs.contains(&(
            JobSpec::Deploy {
                agent: "a".into(),
                version: None,
                slot: crate::agent::Slot::Primary,
            },
            vec!["n1".into(), "n2".into()]
        )));
        assert!(jobs.contains(&(
            JobSpec::Play {
                playbook: "web".into()
            },
            vec!["n1".into()]
        )));
        assert!(
            jobs.iter()
                .any(|(j, n)| matches!(j, JobSpec::Exec { command } if command.contains("MAESTRO_AGENT=rogue"))
                    && n == &vec!["n2".to_string()])
        );
        assert!(
            !jobs
                .iter()
                .any(|(j, _)| matches!(j, JobSpec::Exec { command } if command.contains("rm -rf"))),
            "a name a node reported is never put into a command"
        );
        assert!(!report.is_clean());
    }

    #[test]
    fn kinds_round_trip() {
        for n in Kind::NAMES {
            assert_eq!(Kind::parse(n).unwrap().as_str(), n);
        }
        assert_eq!(Kind::parse("file"), None);
    }
}
