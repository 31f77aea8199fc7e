//! `maestro freeze list|add|remove`, and `--break-glass` for the commands a
//! freeze window holds.

use std::path::Path;

use clap::{Args, Subcommand};
use serde_json::json;

use super::printer::sanitize;
use super::{Change, out};
use crate::exit::Exit;
use crate::freeze::change::{self, NewWindow};
use crate::freeze::{BreakGlass, stamp};
use crate::sot;

#[derive(Subcommand, Debug)]
pub enum FreezeCommand {
    /// List freeze windows: open now, next opening, scope, reason
    List,
    /// Add a window: --start/--end (RFC 3339), or --cron/--duration [--timezone]
    Add(FreezeAdd),
    /// Remove a window
    Remove {
        name: String,
        #[command(flatten)]
        change: Change,
    },
}

#[derive(Args, Debug)]
pub struct FreezeAdd {
    /// The window's name (lowercase letters, digits, `-`, `_`, `.`)
    pub name: String,
    /// When a one-off window opens (RFC 3339 with an offset, e.g. 2026-11-27T00:00:00Z)
    #[arg(long, requires = "end", conflicts_with_all = ["cron", "duration"])]
    pub start: Option<String>,
    /// When a one-off window closes
    #[arg(long, requires = "start")]
    pub end: Option<String>,
    /// When a recurring window opens: minute hour day-of-month month day-of-week (e.g. "0 18 * * FRI")
    #[arg(long, requires = "duration")]
    pub cron: Option<String>,
    /// How long each opening lasts (e.g. 62h, 2h30m, 1d)
    #[arg(long, requires = "cron")]
    pub duration: Option<String>,
    /// The IANA time zone the cron expression is read in [default: UTC]
    #[arg(long, requires = "cron")]
    pub timezone: Option<String>,
    /// Hold only jobs that start this agent (repeatable) [default: every job]
    #[arg(long = "agent", value_name = "AGENT")]
    pub agents: Vec<String>,
    /// Hold only jobs on these nodes (a target pattern) [default: every node]
    #[arg(long, value_name = "TARGET")]
    pub targets: Option<String>,
    /// Why (the window's reason and the commit message)
    #[command(flatten)]
    pub change: Change,
}

/// `--break-glass --reason TEXT`: go ahead inside a freeze window.
#[derive(Args, Debug, Clone, Default)]
pub struct BreakGlassArgs {
    /// Go ahead although a freeze window holds the job (recorded with the run; needs --reason)
    #[arg(long, requires = "glass_reason")]
    pub break_glass: bool,
    /// Why the glass is broken
    #[arg(
        long = "reason",
        id = "glass_reason",
        requires = "break_glass",
        value_name = "TEXT"
    )]
    pub reason: Option<String>,
}

impl BreakGlassArgs {
    pub fn glass(&self) -> Option<BreakGlass> {
        glass(self.break_glass, self.reason.as_deref())
    }
}

/// A break-glass by the operator running this command.
pub fn glass(broken: bool, reason: Option<&str>) -> Option<BreakGlass> {
    let reason = reason?.trim();
    (broken && !reason.is_empty()).then(|| BreakGlass {
        by: super::fleet_cmd::actor(),
        reason: reason.to_string(),
    })
}

pub fn freeze(root: &Path, cmd: FreezeCommand, json: bool) -> anyhow::Result<Exit> {
    match cmd {
        FreezeCommand::List => list(root, json),
        FreezeCommand::Add(a) => {
            let window = NewWindow {
                name: a.name,
                start: a.start,
                end: a.end,
                cron: a.cron,
                duration: a.duration,
                timezone: a.timezone,
                agents: a.agents,
                targets: a.targets,
            };
            let c = change::add(root, &window, &super::sot_cmd::intent(&a.change))?;
            Ok(super::sot_cmd::committed(c, json))
        }
        FreezeCommand::Remove { name, change } => {
            let c = change::remove(root, &name, &super::sot_cmd::intent(&change))?;
            Ok(super::sot_cmd::committed(c, json))
        }
    }
}

fn list(root: &Path, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let now = chrono::Utc::now();
    if json {
        for w in &sot.freeze {
            let open = w.schedule.open_at(now);
            let next = w.schedule.next_after(now);
            out!(
                "{}",
                json!({"event": "freeze_window", "window": w,
                       "open": open.map(|o| json!({"start": stamp(&o.start), "end": stamp(&o.end)})),
                       "next": next.map(|o| json!({"start": stamp(&o.start), "end": stamp(&o.end)}))})
            );
        }
        return Ok(Exit::Ok);
    }
    if sot.freeze.is_empty() {
        out!("no freeze windows (add one with `maestro freeze add NAME ...`)");
        return Ok(Exit::Ok);
    }
    out!(
        "{:16}  {:38}  {:34}  {:24}  REASON",
        "NAME",
        "STATE",
        "SCHEDULE",
        "SCOPE"
    );
    for w in &sot.freeze {
        let state = match (w.schedule.open_at(now), w.schedule.next_after(now)) {
            (Some(o), _) => format!("OPEN until {}", stamp(&o.end)),
            (None, Some(n)) => format!("next {}", stamp(&n.start)),
            (None, None) => "over".to_string(),
        };
        let mut scope = Vec::new();
        if !w.agents.is_empty() {
            scope.push(format!("agents {}", w.agents.join(",")));
        }
        if let Some(t) = &w.targets {
            scope.push(t.clone());
        }
        let scope = if scope.is_empty() {
            "everything".to_string()
        } else {
            scope.join(" ")
        };
        out!(
            "{:16}  {:38}  {:34}  {:24}  {}",
            sanitize(w.name.as_bytes()),
            state,
            sanitize(w.schedule.describe().as_bytes()),
            sanitize(scope.as_bytes()),
            sanitize(w.reason.as_bytes())
        );
    }
    Ok(Exit::Ok)
}
