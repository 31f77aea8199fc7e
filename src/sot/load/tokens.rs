//! `tokens.toml`: tokens of the read-only HTTP API, `[token.NAME]` with the
//! person it acts as and the token's SHA-256 (`maestro token add` writes
//! both). A token bound to nobody, or holding something other than a hash,
//! is an error here rather than a door that silently stays shut.

use std::collections::BTreeMap;

use super::Loader;
use super::tables::Named;
use crate::api::token::{ApiToken, FILE, is_sha256_hex};
use crate::diag::Code;
use crate::sot::model::Person;
use crate::sot::schema::{Table, get};

impl Loader<'_> {
    pub(super) fn tokens(
        &mut self,
        idx: usize,
        t: &Table<'_>,
        people: &BTreeMap<String, Person>,
        out: &mut BTreeMap<String, ApiToken>,
    ) {
        for Named {
            name,
            what,
            header,
            table: tt,
        } in self.named_tables(idx, t, "token", FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(tt, &["person", "sha256", "created", "by", "reason"], &what);
            let person = cx.string(tt, "person", &what);
            if get(tt, "person").is_none() {
                cx.missing(header.clone(), "person", &what, "\"ada\"");
            }
            let sha256 = cx.string(tt, "sha256", &what);
            if get(tt, "sha256").is_none() {
                cx.missing(
                    header.clone(),
                    "sha256",
                    &what,
                    "\"<64 hex digits>\" (maestro token add writes it)",
                );
            }
            if let Some(p) = &person
                && !people.contains_key(&p.value)
            {
                let hint = crate::diag::suggest(&p.value, people.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "people are defined in people.toml".into());
                cx.error_hint(
                    Code::DanglingRef,
                    p.span.clone(),
                    format!("{what} acts as `{}`, who is not in people.toml", p.value),
                    hint,
                );
            }
            if let Some(h) = &sha256
                && !is_sha256_hex(&h.value)
            {
                cx.error_hint(
                    Code::BadValue,
                    h.span.clone(),
                    format!("`sha256` of {what} is not a SHA-256 in lowercase hex"),
                    "the file holds the token's hash, never the token: make one with `maestro token add`",
                );
            }
            let created = cx.string(tt, "created", &what).map(|c| c.value);
            if let (Some(person), Some(sha256)) = (person, sha256) {
                out.insert(
                    name.clone(),
                    ApiToken {
                        name,
                        person: person.value,
                        sha256: sha256.value,
                        created,
                    },
                );
            }
        }
    }
}
