//! `people.toml`: the people who operate the fleet, their teams and the SSH
//! public keys that prove who they are (`[person.NAME]`). Policies name
//! people and teams; approvals and the identity of a job's actor are SSH
//! signatures checked against these keys.

use std::collections::BTreeMap;

use super::Loader;
use super::rules::check_name;
use super::tables::Named;
use crate::diag::Code;
use crate::identity::parse_public_key;
use crate::sot::model::Person;
use crate::sot::schema::{Table, get};

pub const PEOPLE_FILE: &str = "people.toml";

impl Loader<'_> {
    pub(super) fn people(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Person>) {
        let mut seen_keys: BTreeMap<String, String> = BTreeMap::new();
        for Named {
            name,
            what,
            header,
            table: pt,
        } in self.named_tables(idx, t, "person", PEOPLE_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(pt, &["email", "teams", "keys"], &what);
            let email = cx.string(pt, "email", &what);
            match &email {
                None if get(pt, "email").is_none() => {
                    cx.missing(header.clone(), "email", &what, "\"ada@example.org\"")
                }
                Some(e) if !e.value.contains('@') => cx.error(
                    Code::BadValue,
                    e.span.clone(),
                    format!("the email of {what} has no `@`"),
                ),
                _ => {}
            }
            let teams = cx.strings(pt, "teams", &what);
            for team in &teams {
                check_name(&mut cx, &team.value, team.span.clone(), "team");
            }
            let keys = cx.strings(pt, "keys", &what);
            if keys.is_empty() && get(pt, "keys").is_none() {
                cx.missing(
                    header.clone(),
                    "keys",
                    &what,
                    "[\"ssh-ed25519 AAAA… ada@laptop\"]",
                );
            }
            let mut parsed = Vec::new();
            for key in &keys {
                match parse_public_key(&key.value) {
                    Ok(k) => {
                        let fp = k.fingerprint(Default::default()).to_string();
                        if let Some(other) = seen_keys.get(&fp) {
                            cx.error(
                                Code::Duplicate,
                                key.span.clone(),
                                format!("this key ({fp}) is already the key of person `{other}`; a key proves one person"),
                            );
                        } else {
                            seen_keys.insert(fp, name.clone());
                        }
                        parsed.push(key.value.trim().to_string());
                    }
                    Err(e) => cx.error_hint(
                        Code::BadValue,
                        key.span.clone(),
                        format!("a key of {what} is not an SSH public key: {e}"),
                        "paste one line of a `.pub` file, as `ssh-ed25519 AAAA… comment`",
                    ),
                }
            }
            out.insert(
                name.clone(),
                Person {
                    name,
                    email: email.map(|e| e.value).unwrap_or_default(),
                    teams: teams.into_iter().map(|t| t.value).collect(),
                    keys: parsed,
                },
            );
        }
    }
}
