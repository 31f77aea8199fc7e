//! `maestro freeze add|remove`: freeze.toml changed through the SoT's one
//! write path (reason required, the SoT validated as it would be, one commit
//! with the actor).

use std::path::{Path, PathBuf};

use toml_edit::Value;

use super::FILE;
use crate::sot::change::{Committed, Intent, Transaction};
use crate::sot::edit::{self, Kind};
use crate::sot::{Result, SotError};

/// A window to add; its reason is the change's reason.
#[derive(Debug, Clone, Default)]
pub struct NewWindow {
    pub name: String,
    pub start: Option<String>,
    pub end: Option<String>,
    pub cron: Option<String>,
    pub duration: Option<String>,
    pub timezone: Option<String>,
    pub agents: Vec<String>,
    pub targets: Option<String>,
}

pub fn add(root: &Path, window: &NewWindow, intent: &Intent) -> Result<Committed> {
    let what = format!("freeze add {}", window.name);
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if sot.freeze.iter().any(|w| w.name == window.name) {
        return Err(SotError::Exists {
            kind: "freeze window",
            name: window.name.clone(),
            file: Some(PathBuf::from(FILE)),
        });
    }
    let text = |s: &str| Value::from(s);
    let time = |s: &str| -> Result<Value> {
        // Written as a TOML datetime; the loader checks it has an offset.
        let t = super::parse_time(s).map_err(|e| SotError::Refused(e.to_string()))?;
        let dt = super::stamp(&t)
            .parse::<toml_edit::Datetime>()
            .map_err(|e| SotError::Refused(format!("`{s}`: {e}")))?;
        Ok(Value::from(dt))
    };
    let mut fields = vec![("reason", text(intent.reason.trim()))];
    match (&window.start, &window.end, &window.cron, &window.duration) {
        (Some(start), Some(end), None, None) => {
            fields.push(("start", time(start)?));
            fields.push(("end", time(end)?));
        }
        (None, None, Some(cron), Some(duration)) => {
            fields.push(("cron", text(cron)));
            fields.push(("duration", text(duration)));
            fields.push((
                "timezone",
                text(window.timezone.as_deref().unwrap_or("UTC")),
            ));
        }
        _ => {
            return Err(SotError::Refused(
                "a freeze window is either --start and --end (RFC 3339), or --cron and --duration (with --timezone, default UTC)".into(),
            ));
        }
    }
    if window.timezone.is_some() && window.cron.is_none() {
        return Err(SotError::Refused(
            "--timezone reads a --cron expression; a --start/--end window carries its own offsets"
                .into(),
        ));
    }
    if !window.agents.is_empty() {
        fields.push(("agents", edit::string_array(&window.agents)));
    }
    if let Some(t) = &window.targets {
        fields.push(("targets", text(t)));
    }
    fields.push(("by", text(&tx.actor().to_string())));
    let file = PathBuf::from(FILE);
    let new = edit::add(&tx.read(&file)?, Kind::Freeze, &window.name, fields)?;
    tx.commit(vec![(file, new)], &what)
}

pub fn remove(root: &Path, name: &str, intent: &Intent) -> Result<Committed> {
    let what = format!("freeze remove {name}");
    let mut tx = Transaction::begin(root, intent, &what)?;
    let sot = tx.load()?;
    if !sot.freeze.iter().any(|w| w.name == name) {
        return Err(SotError::Unknown {
            kind: "freeze window",
            name: name.to_string(),
            suggestion: crate::diag::suggest(name, sot.freeze.iter().map(|w| w.name.as_str()))
                .map(str::to_string),
        });
    }
    let file = PathBuf::from(FILE);
    let new = edit::remove(&tx.read(&file)?, Kind::Freeze, name)?;
    tx.commit(vec![(file, new)], &what)
}
