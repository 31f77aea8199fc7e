//! Engaging and releasing a kill switch in the SoT: `killswitch.toml`
//! changed through the SoT's one write path (reason required, the SoT
//! validated as it would be, one commit with the actor).

use std::path::{Path, PathBuf};

use chrono::Utc;
use toml_edit::Value;

use super::{ALL, Engaged, FILE};
use crate::sot::change::{Committed, Intent, Transaction};
use crate::sot::edit::{self, Kind};
use crate::sot::{Result, SotError};

/// What engaging did to the SoT.
#[derive(Debug, Clone)]
pub enum Engagement {
    /// A new (or widened) kill switch, committed.
    Committed { commit: Committed, engaged: Engaged },
    /// Already engaged over this scope: nothing to commit (the nodes are
    /// still stopped and confirmed again).
    Already(Engaged),
}

impl Engagement {
    pub fn engaged(&self) -> &Engaged {
        match self {
            Engagement::Committed { engaged, .. } | Engagement::Already(engaged) => engaged,
        }
    }
}

/// The scope of two engagements of one agent together: `None` is every node.
fn widen(old: Option<&str>, new: Option<&str>) -> Option<String> {
    match (old, new) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) if a == b => Some(a.to_string()),
        (Some(a), Some(b)) => Some(format!("{a},{b}")),
    }
}

/// Engage the kill switch of `agent` (or [`ALL`]) on `limit` (none: every
/// node). Engaging it again over a wider scope widens it; over the same or
/// a narrower one changes nothing.
pub fn engage(
    root: &Path,
    agent: &str,
    limit: Option<&str>,
    intent: &Intent,
) -> Result<Engagement> {
    let what = format!("kill {agent}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if agent != ALL && !sot.agents.contains_key(agent) {
        return Err(SotError::Unknown {
            kind: "agent",
            name: agent.to_string(),
            suggestion: crate::diag::suggest(agent, sot.agents.keys().map(String::as_str))
                .map(str::to_string),
        });
    }
    let existing = sot.killswitch.iter().find(|e| e.agent == agent).cloned();
    let scope = match &existing {
        Some(e) => {
            let wider = widen(e.limit.as_deref(), limit);
            if wider == e.limit {
                return Ok(Engagement::Already(e.clone()));
            }
            wider
        }
        None => limit.map(str::to_string),
    };
    let file = PathBuf::from(FILE);
    let mut text = tx.read(&file)?;
    if existing.is_some() {
        text = edit::remove(&text, Kind::Engaged, agent)?;
    }
    let engaged = Engaged {
        agent: agent.to_string(),
        by: tx.actor().to_string(),
        at: Utc::now(),
        reason: intent.reason.trim().to_string(),
        limit: scope,
    };
    let at = crate::freeze::stamp(&engaged.at)
        .parse::<toml_edit::Datetime>()
        .map_err(|e| SotError::Refused(format!("the time of the kill switch: {e}")))?;
    let mut fields = vec![
        ("by", Value::from(engaged.by.as_str())),
        ("at", Value::from(at)),
        ("reason", Value::from(engaged.reason.as_str())),
    ];
    if let Some(l) = &engaged.limit {
        fields.push(("limit", Value::from(l.as_str())));
    }
    let new = edit::add(&text, Kind::Engaged, agent, fields)?;
    let commit = tx.commit(vec![(file, new)], &what)?;
    Ok(Engagement::Committed { commit, engaged })
}

/// Lift the kill switch of `agent` (or [`ALL`]). `None` when it was not
/// engaged: nothing to commit (markers left on nodes are still removed).
pub fn release(root: &Path, agent: &str, intent: &Intent) -> Result<Option<(Committed, Engaged)>> {
    let what = format!("kill --release {agent}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    let Some(engaged) = sot.killswitch.iter().find(|e| e.agent == agent).cloned() else {
        if agent != ALL && !sot.agents.contains_key(agent) {
            return Err(SotError::Unknown {
                kind: "agent",
                name: agent.to_string(),
                suggestion: crate::diag::suggest(agent, sot.agents.keys().map(String::as_str))
                    .map(str::to_string),
            });
        }
        return Ok(None);
    };
    let file = PathBuf::from(FILE);
    let new = edit::remove(&tx.read(&file)?, Kind::Engaged, agent)?;
    Ok(Some((tx.commit(vec![(file, new)], &what)?, engaged)))
}
