//! `freeze.toml`: freeze windows, `[freeze.NAME]`, one-off (`start`, `end`)
//! or recurring (`cron`, `duration`, `timezone`), scoped to `agents` and/or
//! `targets`, with a `reason`.

use super::Loader;
use super::killswitch::time;
use super::refs::RefKind;
use super::scope::Scope;
use super::tables::Named;
use crate::diag::Code;
use crate::freeze::{FILE, Schedule, Window};
use crate::sot::schema::{Table, get};

impl Loader<'_> {
    pub(super) fn freeze(
        &mut self,
        idx: usize,
        t: &Table<'_>,
        out: &mut Vec<Window>,
        scopes: &mut Vec<Scope>,
    ) {
        for Named {
            name,
            header,
            table: at,
            ..
        } in self.named_tables(idx, t, "freeze", FILE)
        {
            let what = format!("freeze window `{name}`");
            let mut cx = cx!(self, idx);
            cx.check_keys(
                at,
                &[
                    "reason", "start", "end", "cron", "duration", "timezone", "agents", "targets",
                    "by",
                ],
                &what,
            );
            let reason = cx.string(at, "reason", &what);
            if reason.is_none() && get(at, "reason").is_none() {
                cx.missing(
                    header.clone(),
                    "reason",
                    &what,
                    "\"why nothing may change\"",
                );
            }
            let start = time(&mut cx, at, "start", &what);
            let end = time(&mut cx, at, "end", &what);
            let cron = cx.string(at, "cron", &what);
            let duration = cx.string(at, "duration", &what);
            let timezone = cx.string(at, "timezone", &what);
            let once = get(at, "start").is_some() || get(at, "end").is_some();
            let recurring = get(at, "cron").is_some() || get(at, "duration").is_some();
            let schedule = if once && recurring {
                cx.error_hint(
                    Code::BadValue,
                    header.clone(),
                    format!("{what} has both `start`/`end` and `cron`/`duration`"),
                    "a window is either one-off (start, end) or recurring (cron, duration, timezone)",
                );
                None
            } else if once {
                if let Some(tz) = &timezone {
                    cx.error_hint(
                        Code::BadValue,
                        tz.span.clone(),
                        format!("`timezone` in {what} reads a `cron` expression, and it has none"),
                        "one-off windows carry their offsets in `start` and `end`",
                    );
                }
                for key in ["start", "end"] {
                    if get(at, key).is_none() {
                        cx.missing(header.clone(), key, &what, "2026-11-27T00:00:00Z");
                    }
                }
                match (start, end) {
                    (Some(start), Some(end)) if end <= start => {
                        let span = get(at, "end").map(|v| v.span()).unwrap_or(header.clone());
                        cx.error(
                            Code::BadValue,
                            span,
                            format!("{what} ends before it starts"),
                        );
                        None
                    }
                    (Some(start), Some(end)) => Some(Schedule::Once { start, end }),
                    _ => None,
                }
            } else if recurring {
                if get(at, "cron").is_none() {
                    cx.missing(header.clone(), "cron", &what, "\"0 18 * * FRI\"");
                }
                if get(at, "duration").is_none() {
                    cx.missing(header.clone(), "duration", &what, "\"62h\"");
                }
                let parsed =
                    cron.as_ref()
                        .and_then(|c| match crate::freeze::parse_cron(&c.value) {
                            Ok(p) => Some(p),
                            Err(e) => {
                                cx.error(Code::BadValue, c.span.clone(), e.to_string());
                                None
                            }
                        });
                let length =
                    duration
                        .as_ref()
                        .and_then(|d| match crate::freeze::parse_duration(&d.value) {
                            Ok(l) => Some(l),
                            Err(e) => {
                                cx.error(Code::BadValue, d.span.clone(), e.to_string());
                                None
                            }
                        });
                let zone = timezone
                    .as_ref()
                    .map(|t| t.value.clone())
                    .unwrap_or_else(|| "UTC".into());
                let tz = match crate::freeze::parse_timezone(&zone) {
                    Ok(tz) => Some(tz),
                    Err(e) => {
                        let span = timezone
                            .as_ref()
                            .map(|t| t.span.clone())
                            .unwrap_or(header.clone());
                        cx.error(Code::BadValue, span, e.to_string());
                        None
                    }
                };
                match (parsed, length, tz, cron, duration) {
                    (Some(parsed), Some(length), Some(tz), Some(cron), Some(duration)) => {
                        Some(Schedule::Recurring {
                            cron: cron.value,
                            parsed: Box::new(parsed),
                            duration: duration.value,
                            length,
                            timezone: zone,
                            tz,
                        })
                    }
                    _ => None,
                }
            } else {
                cx.error_hint(
                    Code::MissingKey,
                    header.clone(),
                    format!("{what} says neither when it starts nor when it recurs"),
                    "add `start` and `end` (RFC 3339), or `cron` and `duration` (e.g. cron = \"0 18 * * FRI\", duration = \"62h\")",
                );
                None
            };
            let agents = cx.strings(at, "agents", &what);
            let targets = cx.string(at, "targets", &what);
            let by = cx.string(at, "by", &what).map(|b| b.value);
            if let Some(t) = &targets {
                scopes.push(Scope::new(idx, t, &what));
            }
            for a in &agents {
                self.refer(RefKind::Agent, idx, a);
            }
            // A window with problems is reported and left out; the SoT does
            // not load anyway.
            if let (Some(schedule), Some(reason)) = (schedule, reason) {
                out.push(Window {
                    name,
                    reason: reason.value,
                    schedule,
                    agents: agents.into_iter().map(|a| a.value).collect(),
                    targets: targets.map(|t| t.value),
                    by,
                });
            }
        }
    }
}
