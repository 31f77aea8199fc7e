//! `maestro policy list|explain|test`, `maestro whoami`, and the two-person
//! rule's `maestro approvals` and `maestro approve ID`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::fleet_cmd::{InvalidInput, resolve_identity};
use super::out;
use super::printer::sanitize;
use crate::exit::Exit;
use crate::identity::{self, Actor};
use crate::policy::{JobContext, Question};
use crate::sot;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// List the SoT's policies: id, effect, where, why
    List,
    /// The decision for ACTOR doing ACTION on each node of TARGET, with the deciding policies
    Explain(ExplainArgs),
    /// Run policies/tests.toml (exit 1 when a test fails)
    Test,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The action: exec, play, install, harden, audit, deploy, enable, disable, gateway, kill, release, status
    pub action: String,
    /// The target nodes (a pattern, as with --limit)
    pub target: String,
    /// Who asks: a person of people.toml (taken as proven), or any name (taken as unverified)
    #[arg(long)]
    pub actor: Option<String>,
    /// The agent the job is about (deploy, enable, kill, …)
    #[arg(long)]
    pub agent: Option<String>,
    /// Distinct people's approvals to assume
    #[arg(long, default_value_t = 0)]
    pub approvals: usize,
    /// Assume a freeze window covers the job
    #[arg(long)]
    pub frozen: bool,
    /// Assume --break-glass was given
    #[arg(long)]
    pub break_glass: bool,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The approval request id (`maestro approvals` lists them)
    pub id: String,
}

fn policies(sot: &sot::Sot) -> anyhow::Result<&crate::policy::Policies> {
    sot.policies.as_deref().ok_or_else(|| {
        InvalidInput(format!(
            "{} has no {}/ directory: every job is allowed (`maestro init` writes example policies)",
            sot.root.display(),
            crate::policy::DIR
        ))
        .into()
    })
}

pub fn policy(root: &Path, cmd: PolicyCommand, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    match cmd {
        PolicyCommand::List => list(&sot, json),
        PolicyCommand::Explain(args) => explain(&sot, args, json),
        PolicyCommand::Test => test(&sot, json),
    }
}

fn list(sot: &sot::Sot, json: bool) -> anyhow::Result<Exit> {
    let policies = policies(sot)?;
    for (id, o) in policies.list() {
        if json {
            out!(
                "{}",
                json!({"event": "policy", "id": id, "effect": o.effect,
                       "file": o.file, "line": o.line, "reason": o.reason})
            );
        } else {
            out!(
                "{:<7} {:<32} {}:{}  {}",
                o.effect,
                sanitize(id.as_bytes()),
                o.file.display(),
                o.line,
                sanitize(o.reason.as_deref().unwrap_or("").as_bytes())
            );
        }
    }
    Ok(Exit::Ok)
}

fn explain(sot: &sot::Sot, args: ExplainArgs, json: bool) -> anyhow::Result<Exit> {
    let policies = policies(sot)?;
    let actor = match &args.actor {
        Some(name) if sot.people.contains_key(name) => Actor::Person {
            name: name.clone(),
            key: "assumed by policy explain".into(),
        },
        Some(name) => Actor::unverified(name.clone()),
        None => resolve_identity(sot)?,
    };
    let nodes: Vec<String> = crate::fleet::target::select(sot, &args.target)
        .map_err(|e| InvalidInput(e.to_string()))?
        .into_iter()
        .map(|i| sot.nodes[i].name.clone())
        .collect();
    let changes = crate::policy::ACTIONS
        .iter()
        .any(|(a, g)| *a == args.action && *g == "change");
    let mut context = JobContext::now(nodes.len(), changes);
    context.approvals = args.approvals;
    context.frozen = args.frozen;
    context.break_glass = args.break_glass;
    let answer = policies
        .decide(
            &Question {
                actor: &actor,
                action: &args.action,
                agent: args.agent.as_deref(),
                nodes: &nodes,
                context,
            },
            sot,
        )
        .map_err(|e| InvalidInput(e.to_string()))?;
    if json {
        out!("{}", json!({"event": "policy_decision", "answer": answer}));
    } else {
        out!(
            "{} {} {}{} on {} nodes:",
            sanitize(actor.label().as_bytes()),
            args.action,
            args.target,
            args.agent
                .as_deref()
                .map(|a| format!(" (agent {a})"))
                .unwrap_or_default(),
            nodes.len()
        );
        for n in &answer.nodes {
            if n.allowed {
                out!("  {:<24} allow  by {}", n.node, n.policies.join(", "));
            } else {
                out!(
                    "  {:<24} deny   {}",
                    n.node,
                    sanitize(n.reason(policies).as_bytes())
                );
            }
        }
        let denied = answer.denied().count();
        if denied == 0 {
            out!("allowed on every node");
        } else {
            out!(
                "denied on {denied} of {} nodes: the whole job would be refused (exit 3)",
                answer.nodes.len()
            );
        }
    }
    Ok(if answer.allowed() {
        Exit::Ok
    } else {
        Exit::PolicyDenied
    })
}

fn test(sot: &sot::Sot, json: bool) -> anyhow::Result<Exit> {
    let policies = policies(sot)?;
    let results = policies.run_tests(sot);
    let file = PathBuf::from(crate::policy::DIR).join(crate::policy::TESTS_FILE);
    for r in &results {
        if json {
            out!("{}", json!({"event": "policy_test", "result": r}));
        } else if r.passed {
            out!("ok    {}", sanitize(r.name.as_bytes()));
        } else {
            out!(
                "FAIL  {} ({}:{}): {}",
                sanitize(r.name.as_bytes()),
                file.display(),
                r.line,
                sanitize(r.problem.as_deref().unwrap_or("").as_bytes())
            );
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if !json {
        out!(
            "{} tests, {} passed, {failed} failed",
            results.len(),
            results.len() - failed
        );
    }
    Ok(if failed == 0 {
        Exit::Ok
    } else {
        Exit::TargetsFailed
    })
}

pub fn whoami(root: &Path, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let actor = resolve_identity(&sot)?;
    if json {
        out!("{}", json!({"event": "identity", "actor": actor}));
    } else {
        match &actor {
            Actor::Person { name, key } => out!("{name} (proven by {key})"),
            Actor::Unverified { claimed } => out!(
                "{} (unverified: no key of people.toml signed; set MAESTRO_IDENTITY=KEYFILE or load the key into ssh-agent)",
                sanitize(claimed.as_bytes())
            ),
        }
    }
    Ok(Exit::Ok)
}

pub fn approvals(root: &Path, db: &Path, all: bool, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let list = crate::approval::list(db, &sot, !all)?;
    if list.is_empty() && !json {
        out!("no {}approval requests", if all { "" } else { "pending " });
    }
    for p in &list {
        if json {
            out!("{}", json!({"event": "approval", "approval": p}));
            continue;
        }
        out!(
            "{}  {}  requested by {}  {} of {} approvals  {}",
            p.approval.id,
            p.approval.state.as_str(),
            sanitize(p.approval.requested_by.as_bytes()),
            p.valid,
            p.quorum,
            sanitize(p.approval.summary.as_bytes())
        );
        for s in &p.signatures {
            match &s.rejected {
                None => out!("    approved by {} ({})", s.person, s.key),
                Some(why) => out!("    not counted: {} ({why})", s.person),
            }
        }
    }
    Ok(Exit::Ok)
}

pub fn approve(root: &Path, db: &Path, args: ApproveArgs, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let (message, expires) = crate::approval::signing_message(db, &sot, &args.id)?;
    let signature = match std::env::var_os("MAESTRO_IDENTITY").filter(|v| !v.is_empty()) {
        Some(path) => identity::Signer::from_file(Path::new(&path))?
            .sign(identity::APPROVAL_NAMESPACE, &message)?,
        None if std::env::var_os("SSH_AUTH_SOCK").is_some() => {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(identity::sign_with_agent(
                    &sot,
                    identity::APPROVAL_NAMESPACE,
                    &message,
                ))?
        }
        None => return Err(crate::approval::ApprovalError::NoKey.into()),
    };
    let signed = crate::approval::add_signature(db, &sot, &args.id, expires, &signature).map_err(
        |e| match e {
            crate::approval::ApprovalError::Store(_) => anyhow::Error::from(e),
            other => InvalidInput(other.to_string()).into(),
        },
    )?;
    if json {
        out!("{}", json!({"event": "approved", "approval": signed}));
    } else {
        out!(
            "{} approved {}: {} of {} valid approvals{}",
            signed.person,
            signed.approval,
            signed.valid,
            signed.quorum,
            if signed.valid >= signed.quorum {
                "; the job runs when it is started again"
            } else {
                ""
            }
        );
    }
    Ok(Exit::Ok)
}
