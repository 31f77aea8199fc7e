//! `maestro.toml`: the fleet's name, connection defaults, library paths and
//! tag taxonomy.

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};

use super::Loader;
use super::refs::RefKind;
use super::rules::*;
use crate::diag::Code;
use crate::sot::model::*;
use crate::sot::paths::{Resolved, resolve_within};
use crate::sot::schema::{At, Table, Value, entries_in_order, get};

impl Loader<'_> {
    pub(super) fn settings(&mut self, idx: usize, t: &Table<'_>) -> Settings {
        let mut cx = cx!(self, idx);
        cx.check_keys(
            t,
            &[
                "maestro",
                "connection",
                "paths",
                "tags",
                "approvals",
                "store",
            ],
            "maestro.toml",
        );
        let mut s = Settings {
            name: String::new(),
            description: None,
            default_user: "root".into(),
            default_port: 22,
            known_hosts: None,
            ssh_config: None,
            default_profile: None,
            tag_values: BTreeMap::new(),
            required_tags: Vec::new(),
            profiles_dir: "profiles".into(),
            playbooks_dir: "playbooks".into(),
            hardening_dir: "hardening".into(),
            approvals: ApprovalSettings::default(),
            store_url: None,
        };
        let mut cx = cx!(self, idx);
        if let Some(st) = cx.table(t, "store", "maestro.toml") {
            let what = "[store]";
            cx.check_keys(st.value, &["url"], what);
            if let Some(u) = cx.string(st.value, "url", what) {
                match crate::store::PgUrl::parse(&u.value) {
                    None => cx.error_hint(
                        Code::BadValue,
                        u.span,
                        format!("url is a PostgreSQL URL, not `{}`", u.value),
                        "url = \"postgres://maestro@db.example.org:5432/maestro\"",
                    ),
                    Some(url) if url.has_password() => cx.error_secret(
                        Code::BadValue,
                        u.span,
                        "the store's URL carries a password, and the SoT is committed: a secret in git",
                        "leave the password out: each controller sets PGPASSWORD",
                    ),
                    Some(_) => s.store_url = Some(u.value),
                }
            }
        }
        if let Some(a) = cx.table(t, "approvals", "maestro.toml") {
            let what = "[approvals]";
            cx.check_keys(a.value, &["min_autonomy", "quorum", "expires"], what);
            if let Some(l) = cx.string(a.value, "min_autonomy", what) {
                match l.value.parse::<Autonomy>() {
                    Ok(level) => s.approvals.min_autonomy = level,
                    Err(e) => cx.error(Code::BadValue, l.span.clone(), e.to_string()),
                }
            }
            if let Some(q) = cx.integer(a.value, "quorum", what) {
                match usize::try_from(q.value) {
                    Ok(n) if (1..=10).contains(&n) => s.approvals.quorum = n,
                    _ => cx.error(
                        Code::BadValue,
                        q.span.clone(),
                        format!(
                            "quorum is how many people approve: 1 to 10, not {}",
                            q.value
                        ),
                    ),
                }
            }
            if let Some(d) = cx.string(a.value, "expires", what) {
                match parse_duration(&d.value) {
                    Some(l) if !l.is_zero() => s.approvals.lifetime = l,
                    _ => cx.error(
                        Code::BadValue,
                        d.span.clone(),
                        format!(
                            "expires is a duration such as \"24h\" or \"30m\", not \"{}\"",
                            d.value
                        ),
                    ),
                }
            }
        }
        match cx.table(t, "maestro", "maestro.toml") {
            Some(m) => {
                let what = "[maestro]";
                cx.check_keys(m.value, &["name", "description", "default_profile"], what);
                match cx.string(m.value, "name", what) {
                    Some(n) => s.name = n.value,
                    None if get(m.value, "name").is_none() => {
                        cx.missing(m.span.clone(), "name", what, "\"my-fleet\"")
                    }
                    None => {}
                }
                s.description = cx.string(m.value, "description", what).map(|a| a.value);
                if let Some(p) = cx.string(m.value, "default_profile", what) {
                    self.refer(RefKind::Profile, idx, &p);
                    s.default_profile = Some(p.value);
                }
            }
            None if get(t, "maestro").is_none() => cx.error_hint(
                Code::MissingKey,
                0..0,
                "maestro.toml has no [maestro] table",
                "start the file with `[maestro]` and `name = \"my-fleet\"`",
            ),
            None => {}
        }
        let mut cx = cx!(self, idx);
        if let Some(c) = cx.table(t, "connection", "maestro.toml") {
            let what = "[connection]";
            cx.check_keys(
                c.value,
                &["user", "port", "known_hosts", "ssh_config"],
                what,
            );
            if let Some(u) = cx.string(c.value, "user", what) {
                check_user(&mut cx, &u);
                s.default_user = u.value;
            }
            if let Some(p) = cx.integer(c.value, "port", what) {
                s.default_port = check_port(&mut cx, &p).unwrap_or(22);
            }
            for (key, slot) in [
                ("known_hosts", &mut s.known_hosts),
                ("ssh_config", &mut s.ssh_config),
            ] {
                if let Some(f) = cx.string(c.value, key, what) {
                    let path = PathBuf::from(&f.value);
                    // A path written inside the SoT must stay inside once its
                    // symlinks are resolved; one written as leaving it
                    // (absolute, `..`) says so in plain sight.
                    let written_inside = path
                        .components()
                        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                    let resolved = resolve_within(&self.root, &self.root.join(&path));
                    if !self.root.join(&path).is_file() {
                        cx.error_hint(
                            Code::MissingFile,
                            f.span,
                            format!("{key} file `{}` does not exist", f.value),
                            "paths are relative to the SoT directory",
                        );
                    } else if let Ok(Resolved::Outside(target)) = resolved
                        && written_inside
                    {
                        cx.error_hint(
                            Code::OutsideSot,
                            f.span,
                            format!(
                                "{key} file `{}` is a symlink to {}, outside the SoT",
                                f.value,
                                target.display()
                            ),
                            "replace the symlink with the file itself",
                        );
                    }
                    *slot = Some(path);
                }
            }
        }
        if let Some(p) = cx.table(t, "paths", "maestro.toml") {
            let what = "[paths]";
            cx.check_keys(p.value, &["profiles", "playbooks", "hardening"], what);
            for (key, slot) in [
                ("profiles", &mut s.profiles_dir),
                ("playbooks", &mut s.playbooks_dir),
                ("hardening", &mut s.hardening_dir),
            ] {
                if let Some(d) = cx.string(p.value, key, what) {
                    if !self.root.join(&d.value).is_dir() {
                        cx.error_hint(
                            Code::MissingFile,
                            d.span,
                            format!("{key} directory `{}` does not exist", d.value),
                            "paths are relative to the SoT directory",
                        );
                    }
                    *slot = PathBuf::from(d.value);
                }
            }
        }
        if let Some(tags) = cx.table(t, "tags", "maestro.toml") {
            let what = "[tags]";
            cx.check_keys(tags.value, &["required", "values"], what);
            for r in cx.strings(tags.value, "required", what) {
                if check_tag_key(&mut cx, &r) {
                    s.required_tags.push(r.value);
                }
            }
            if let Some(values) = cx.table(tags.value, "values", what) {
                for (k, v) in entries_in_order(values.value) {
                    let key = At {
                        value: k.get_ref().to_string(),
                        span: k.span(),
                    };
                    check_tag_key(&mut cx, &key);
                    let allowed: Vec<String> = match v.get_ref() {
                        Value::Array(a) => a
                            .iter()
                            .filter_map(|x| match x.get_ref() {
                                Value::String(s) => Some(s.to_string()),
                                _ => {
                                    cx.error(Code::Type, x.span(), "tag values must be strings");
                                    None
                                }
                            })
                            .collect(),
                        _ => {
                            cx.error(
                                Code::Type,
                                v.span(),
                                format!(
                                    "allowed values of tag `{}` must be an array of strings",
                                    key.value
                                ),
                            );
                            Vec::new()
                        }
                    };
                    s.tag_values.insert(key.value, allowed);
                }
            }
        }
        s
    }
}
