//! `killswitch.toml`: the engaged kill switches, `[engaged.AGENT]` (or
//! `[engaged.all]`) with who engaged it, when, why, and on which nodes.

use super::Loader;
use super::refs::RefKind;
use super::scope::Scope;
use super::tables::Named;
use crate::diag::Code;
use crate::killswitch::{ALL, Engaged, FILE};
use crate::sot::schema::{Cx, Table, Value, get};

impl Loader<'_> {
    pub(super) fn killswitch(
        &mut self,
        idx: usize,
        t: &Table<'_>,
        out: &mut Vec<Engaged>,
        scopes: &mut Vec<Scope>,
    ) {
        for Named {
            name,
            header,
            table: at,
            ..
        } in self.named_tables(idx, t, "engaged", FILE)
        {
            let what = if name == ALL {
                "the kill switch for every agent".to_string()
            } else {
                format!("the kill switch for `{name}`")
            };
            let mut cx = cx!(self, idx);
            cx.check_keys(at, &["by", "at", "reason", "limit"], &what);
            let by = cx.string(at, "by", &what);
            if by.is_none() && get(at, "by").is_none() {
                cx.missing(
                    header.clone(),
                    "by",
                    &what,
                    "\"Ada Lovelace <ada@example.org>\"",
                );
            }
            let reason = cx.string(at, "reason", &what);
            match &reason {
                None if get(at, "reason").is_none() => {
                    cx.missing(header.clone(), "reason", &what, "\"why it was engaged\"")
                }
                Some(r) if r.value.trim().is_empty() => cx.error(
                    Code::BadValue,
                    r.span.clone(),
                    format!("the reason of {what} is empty; say why it was engaged"),
                ),
                _ => {}
            }
            let when = time(&mut cx, at, "at", &what);
            if when.is_none() && get(at, "at").is_none() {
                cx.missing(header.clone(), "at", &what, "2026-11-21T07:25:01Z");
            }
            let limit = cx.string(at, "limit", &what);
            if let Some(l) = &limit {
                scopes.push(Scope::new(idx, l, &what));
            }
            if name != ALL {
                self.refer(
                    RefKind::Agent,
                    idx,
                    &crate::sot::schema::At {
                        value: name.clone(),
                        span: header.clone(),
                    },
                );
            }
            out.push(Engaged {
                agent: name,
                by: by.map(|b| b.value).unwrap_or_default(),
                at: when.unwrap_or_default(),
                reason: reason.map(|r| r.value).unwrap_or_default(),
                limit: limit.map(|l| l.value),
            });
        }
    }
}

/// An RFC 3339 time with an offset, written as a TOML datetime or a string.
pub(super) fn time(
    cx: &mut Cx<'_>,
    table: &Table<'_>,
    key: &str,
    what: &str,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let v = get(table, key)?;
    let text = match v.get_ref() {
        Value::Datetime(d) => d.to_string(),
        Value::String(s) => s.to_string(),
        other => {
            cx.error(
                Code::Type,
                v.span(),
                format!(
                    "`{key}` in {what} must be a date and time, found {}",
                    other.type_str()
                ),
            );
            return None;
        }
    };
    match crate::freeze::parse_time(&text) {
        Ok(t) => Some(t),
        Err(e) => {
            cx.error_hint(
                Code::BadValue,
                v.span(),
                format!("`{key}` in {what}: {e}"),
                "a time zone offset is required, so every operator reads the same instant",
            );
            None
        }
    }
}
