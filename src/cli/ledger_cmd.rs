//! `maestro ledger show [--run ID]` and `maestro ledger verify`.

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use super::fleet_cmd::InvalidInput;
use super::out;
use super::printer::sanitize;
use crate::exit::Exit;
use crate::ledger::{self, LedgerError};
use crate::ops::evidence;

#[derive(Subcommand, Debug)]
pub enum LedgerCommand {
    /// The ledger's entries: who did what, the decision, the deciding policies, per-node results
    Show {
        /// Only the entries of this run
        #[arg(long)]
        run: Option<String>,
        /// Only the newest N entries
        #[arg(short = 'n', long)]
        limit: Option<usize>,
    },
    /// A run's entries as an in-toto Statement v1 in a DSSE envelope signed by the ledger key
    Export {
        /// The run to export
        #[arg(long)]
        run: String,
    },
    /// Check the hash chain and the signed checkpoints committed in the SoT (exit 1 names the first bad entry)
    Verify,
}

/// A ledger that cannot be read as one (a garbage line or row) is bad input.
fn input(e: LedgerError) -> anyhow::Error {
    match e {
        LedgerError::Syntax { .. } | LedgerError::Row { .. } => InvalidInput(e.to_string()).into(),
        other => other.into(),
    }
}

pub fn ledger(root: &Path, db: &Path, cmd: LedgerCommand, json: bool) -> anyhow::Result<Exit> {
    let place = evidence::ledger_place(db);
    match cmd {
        LedgerCommand::Show { run, limit } => {
            let mut entries = ledger::read(&place, run.as_deref()).map_err(input)?;
            if let Some(n) = limit {
                let skip = entries.len().saturating_sub(n);
                entries.drain(..skip);
            }
            for e in &entries {
                if json {
                    out!("{}", json!({"event": "ledger_entry", "entry": e}));
                    continue;
                }
                let b = &e.body;
                let who = if b.actor.verified {
                    b.actor.name.clone()
                } else {
                    format!("{} (unverified)", b.actor.name)
                };
                let policies: Vec<String> = b
                    .policy
                    .iter()
                    .map(|p| format!("{}:{}", p.decision, p.policy))
                    .collect();
                out!(
                    "#{:<5} {}  {:<8} {:<22} {:<9} {}{}{}",
                    e.seq,
                    &e.time[..19.min(e.time.len())],
                    b.action,
                    sanitize(who.as_bytes()),
                    b.decision,
                    sanitize(b.description.as_bytes()),
                    if policies.is_empty() {
                        String::new()
                    } else {
                        format!("  [{}]", policies.join(" "))
                    },
                    if b.nodes.is_empty() {
                        String::new()
                    } else {
                        let ok = b.nodes.iter().filter(|n| n.outcome == "ok").count();
                        format!("  {ok}/{} nodes ok", b.nodes.len())
                    }
                );
            }
            Ok(Exit::Ok)
        }
        LedgerCommand::Export { run } => {
            let entries = ledger::read(&place, Some(&run)).map_err(input)?;
            if entries.is_empty() {
                return Err(InvalidInput(format!("the ledger has no entries of run {run}")).into());
            }
            let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
            let checkpoints_file = root.join(ledger::CHECKPOINTS_FILE);
            let checkpoints = if checkpoints_file.exists() {
                ledger::checkpoint::read_all(&checkpoints_file).map_err(input)?
            } else {
                Vec::new()
            };
            let covering = checkpoints
                .iter()
                .filter(|c| c.size >= last)
                .min_by_key(|c| c.size);
            let key = ledger::LedgerKey::load(evidence::key_path(db)).map_err(input)?;
            let envelope = ledger::export::export(&run, &entries, covering, &key)?;
            out!("{}", serde_json::to_string(&envelope)?);
            Ok(Exit::Ok)
        }
        LedgerCommand::Verify => {
            let ledger::AgainstSot {
                report,
                checkpoints,
                signatures_checked,
            } = ledger::verify_against_sot(&place, root).map_err(input)?;
            if json {
                out!("{}", json!({"event": "ledger_verify", "report": report}));
            } else {
                match &report.problem {
                    None => out!(
                        "{}: ok — {} entries, head {}, {} signed checkpoints checked{}",
                        place,
                        report.entries,
                        &report.head[..16.min(report.head.len())],
                        report.checkpoints_checked,
                        if !signatures_checked && !checkpoints.is_empty() {
                            " (no ledger/key.pub in the SoT: signatures not checked)"
                        } else {
                            ""
                        }
                    ),
                    Some(p) => out!("{place}: {p}"),
                }
            }
            Ok(if report.is_ok() {
                Exit::Ok
            } else {
                Exit::TargetsFailed
            })
        }
    }
}
