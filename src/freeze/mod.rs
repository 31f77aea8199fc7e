//! Freeze windows: times when changes to (part of) the fleet are held back.
//!
//! `freeze.toml` in the SoT holds named windows, one-off (`start`/`end`,
//! RFC 3339) or recurring (a 5-field cron expression for when a window
//! opens, how long it lasts, and the IANA time zone the expression is read
//! in). A window may be scoped to agents and/or a target pattern; one with
//! neither covers the whole fleet.
//!
//! The [`FreezeCheck`] of the admission gate holds every job that changes
//! nodes inside an active window that covers it: deploys, enables, plays,
//! installs, `harden --apply` and kill-switch releases. It never holds a
//! kill, a `disable` (both stop things) or an ad-hoc `exec` (what incident
//! response reaches for). `--break-glass --reason TEXT` lets a held job
//! through; the override is recorded with the run.
//!
//! This module is the model and the evaluation; the SoT loader reads the
//! file (`sot/load/freeze.rs`) and [`change`] writes it. It never prints.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Serialize, Serializer};

use crate::ops::gate::{Check, Verdict};
use crate::ops::{JobSpec, Prepared};
use crate::sot::Sot;

pub mod change;

/// The SoT file of freeze windows.
pub const FILE: &str = "freeze.toml";

/// One named window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub name: String,
    pub reason: String,
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Only jobs that start one of these agents are held (empty: any job).
    pub agents: Vec<String>,
    /// Only jobs on these nodes are held (a target pattern; none: every node).
    pub targets: Option<String>,
    /// Who added it (`freeze add` records the actor).
    pub by: Option<String>,
}

/// When a window is open.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Once {
        #[serde(serialize_with = "rfc3339")]
        start: DateTime<Utc>,
        #[serde(serialize_with = "rfc3339")]
        end: DateTime<Utc>,
    },
    Recurring {
        /// As written; `cron` below is its parsed form.
        cron: String,
        #[serde(skip)]
        parsed: Box<croner::Cron>,
        /// As written (`2h30m`); `length` below is its value.
        duration: String,
        #[serde(skip)]
        length: TimeDelta,
        timezone: String,
        #[serde(skip)]
        tz: chrono_tz::Tz,
    },
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// One opening of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// A recurring schedule from its three texts; each error says which part
    /// is wrong and how it should look.
    pub fn recurring(cron: &str, duration: &str, timezone: &str) -> Result<Schedule> {
        let parsed = parse_cron(cron)?;
        let length = parse_duration(duration)?;
        let tz = parse_timezone(timezone)?;
        Ok(Schedule::Recurring {
            cron: cron.to_string(),
            parsed: Box::new(parsed),
            duration: duration.to_string(),
            length,
            timezone: timezone.to_string(),
            tz,
        })
    }

    /// The opening that contains `now`, if the window is open then.
    pub fn open_at(&self, now: DateTime<Utc>) -> Option<Opening> {
        match self {
            Schedule::Once { start, end } => (*start <= now && now < *end).then_some(Opening {
                start: *start,
                end: *end,
            }),
            Schedule::Recurring {
                parsed, length, tz, ..
            } => {
                // The latest opening at or before now ends latest of all that
                // began before now: if it is over, every earlier one is too.
                let start = parsed
                    .find_previous_occurrence(&now.with_timezone(tz), true)
                    .ok()?
                    .with_timezone(&Utc);
                let end = start + *length;
                (now < end).then_some(Opening { start, end })
            }
        }
    }

    /// The next opening that starts after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<Opening> {
        match self {
            Schedule::Once { start, end } => (*start > now).then_some(Opening {
                start: *start,
                end: *end,
            }),
            Schedule::Recurring {
                parsed, length, tz, ..
            } => {
                let start = parsed
                    .find_next_occurrence(&now.with_timezone(tz), false)
                    .ok()?
                    .with_timezone(&Utc);
                Some(Opening {
                    start,
                    end: start + *length,
                })
            }
        }
    }

    /// `cron "0 18 * * FRI" for 62h (Europe/Berlin)` or `2026-11-27T00:00:00Z .. 2026-11-30T00:00:00Z`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Once { start, end } => format!("{} .. {}", stamp(start), stamp(end)),
            Schedule::Recurring {
                cron,
                duration,
                timezone,
                ..
            } => format!("cron \"{cron}\" for {duration} ({timezone})"),
        }
    }
}

/// A time as maestro prints it: RFC 3339, UTC, whole seconds.
pub fn stamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A freeze window's text that does not parse; each says how it should look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    #[error(
        "`{expr}` is not a cron expression ({reason}); write 5 fields: minute hour day-of-month month day-of-week, e.g. \"0 18 * * FRI\""
    )]
    Cron { expr: String, reason: String },
    #[error(
        "`{0}` is not a duration; write numbers and units (s, m, h, d, w), e.g. \"2h30m\" or \"1d\""
    )]
    Duration(String),
    #[error(
        "`{0}` is not an IANA time zone; write e.g. \"UTC\", \"Europe/Berlin\" or \"America/New_York\""
    )]
    Timezone(String),
    #[error(
        "`{0}` is not an RFC 3339 time with an offset; write e.g. \"2026-11-27T00:00:00Z\" or \"2026-11-27T01:00:00+01:00\""
    )]
    Time(String),
}

pub type Result<T> = std::result::Result<T, FreezeError>;

/// A crontab expression: minute hour day-of-month month day-of-week.
pub fn parse_cron(expr: &str) -> Result<croner::Cron> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| FreezeError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })
}

/// `90m`, `2h`, `2h30m`, `1d`, `1w`: a positive length of time, in the
/// SoT's one duration syntax ([`crate::sot::model::parse_duration`]).
pub fn parse_duration(text: &str) -> Result<TimeDelta> {
    crate::sot::model::parse_duration(text)
        .filter(|d| !d.is_zero())
        .and_then(|d| TimeDelta::from_std(d).ok())
        .ok_or_else(|| FreezeError::Duration(text.to_string()))
}

/// An IANA time zone name (`UTC`, `Europe/Berlin`).
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz> {
    chrono_tz::Tz::from_str(name).map_err(|_| FreezeError::Timezone(name.to_string()))
}

/// An RFC 3339 time with an offset (`2026-11-27T00:00:00Z`, `…+01:00`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| FreezeError::Time(text.to_string()))
}

impl Window {
    /// `window `weekend` (cron "0 18 * * FRI" for 62h (UTC), open until …): no changes on weekends`
    pub fn describe(&self, opening: Option<Opening>) -> String {
        let when = match opening {
            Some(o) => format!(", open {} until {}", stamp(&o.start), stamp(&o.end)),
            None => String::new(),
        };
        let mut scope = Vec::new();
        if !self.agents.is_empty() {
            scope.push(format!("agents {}", self.agents.join(", ")));
        }
        if let Some(t) = &self.targets {
            scope.push(format!("targets {t}"));
        }
        let scope = if scope.is_empty() {
            String::new()
        } else {
            format!(", {}", scope.join("; "))
        };
        format!(
            "freeze window `{}` ({}{when}{scope}): {}",
            self.name,
            self.schedule.describe(),
            self.reason
        )
    }

    /// Whether the window covers a job on `nodes` (SoT indices) that starts
    /// `agents` (`None`: the job starts no agent but changes nodes).
    fn covers(&self, sot: &Sot, nodes: &[usize], agents: &[String]) -> bool {
        if !self.agents.is_empty() && !agents.iter().any(|a| self.agents.contains(a)) {
            return false;
        }
        match &self.targets {
            None => true,
            Some(pattern) => match crate::fleet::target::select(sot, pattern) {
                Ok(frozen) => nodes.iter().any(|n| frozen.contains(n)),
                // The loader checks patterns; one that stops resolving holds
                // everything rather than nothing.
                Err(_) => true,
            },
        }
    }
}

/// The windows of `sot` open at `now`, with their openings.
pub fn open_windows(sot: &Sot, now: DateTime<Utc>) -> Vec<(&Window, Opening)> {
    sot.freeze
        .iter()
        .filter_map(|w| w.schedule.open_at(now).map(|o| (w, o)))
        .collect()
}

/// Who broke the glass and why: lets a job through the freeze windows that
/// would hold it, and is recorded with its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlass {
    pub by: String,
    pub reason: String,
}

/// The gate's freeze-window check.
#[derive(Debug, Clone, Default)]
pub struct FreezeCheck {
    pub break_glass: Option<BreakGlass>,
    /// The time to judge at (tests); `None`: the clock at admission.
    pub now: Option<DateTime<Utc>>,
}

impl FreezeCheck {
    /// The windows that would hold `job` now.
    pub(crate) fn holding<'a>(&self, job: &'a Prepared) -> Vec<(&'a Window, Opening)> {
        let sot = job.sot();
        let agents: Vec<String> = match job.job() {
            // Jobs that stop things, and ad-hoc commands, are never held.
            JobSpec::Exec { .. } | JobSpec::Disable { .. } => return Vec::new(),
            JobSpec::Kill { release: false, .. } => return Vec::new(),
            JobSpec::Kill {
                agent,
                release: true,
            } => {
                if agent == crate::killswitch::ALL {
                    sot.agents.keys().cloned().collect()
                } else {
                    vec![agent.clone()]
                }
            }
            _ if !job.changes_nodes() => return Vec::new(),
            _ => job.agents_started(),
        };
        let nodes: Vec<usize> = job
            .nodes()
            .iter()
            .filter_map(|n| sot.node_index.get(n).copied())
            .collect();
        open_windows(sot, self.now.unwrap_or_else(Utc::now))
            .into_iter()
            .filter(|(w, _)| w.covers(sot, &nodes, &agents))
            .collect()
    }
}

impl Check for FreezeCheck {
    fn name(&self) -> &'static str {
        "freeze"
    }

    fn check(&self, job: &Prepared) -> Verdict {
        let holding = self.holding(job);
        if holding.is_empty() || self.break_glass.is_some() {
            return Verdict::Allow;
        }
        let mut reasons: Vec<String> = holding.iter().map(|(w, o)| w.describe(Some(*o))).collect();
        reasons.push(
            "to go ahead anyway: --break-glass --reason \"why\" (recorded with the run)".into(),
        );
        Verdict::Block(reasons)
    }

    fn overrides(&self, job: &Prepared) -> Vec<String> {
        let Some(glass) = &self.break_glass else {
            return Vec::new();
        };
        self.holding(job)
            .iter()
            .map(|(w, o)| {
                format!(
                    "break-glass by {}: {} (overrides {})",
                    glass.by,
                    glass.reason,
                    w.describe(Some(*o))
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
