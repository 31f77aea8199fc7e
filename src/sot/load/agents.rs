//! `agents.toml`: the agent registry (model, autonomy, owner, versions).

use std::collections::BTreeMap;

use super::AGENTS_FILE;
use super::Loader;
use super::refs::{Origin, RefKind, Reference};
use super::rules::*;
use super::tables::Named;
use crate::diag::{Code, suggest};
use crate::sot::model::*;
use crate::sot::schema::{Table, Value, entries_in_order, get};

impl Loader<'_> {
    pub(super) fn agents(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Agent>) {
        for Named {
            name,
            what,
            header,
            table: at,
        } in self.named_tables(idx, t, "agent", AGENTS_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(
                at,
                &[
                    "description",
                    "model",
                    "provider",
                    "autonomy",
                    "owner",
                    "profile",
                    "current",
                    "tags",
                    "versions",
                ],
                &what,
            );
            let model = cx.string(at, "model", &what);
            if model.is_none() && get(at, "model").is_none() {
                cx.missing(header.clone(), "model", &what, "\"llama-3.1-8b-instruct\"");
            }
            let provider = cx.string(at, "provider", &what);
            if let Some(p) = &provider {
                check_name(&mut cx, &p.value, p.span.clone(), "provider");
            }
            let autonomy = match cx.string(at, "autonomy", &what) {
                Some(a) => match a.value.parse::<Autonomy>() {
                    Ok(l) => l,
                    Err(e) => {
                        let hint = suggest(
                            &a.value.to_uppercase(),
                            ["L0", "L1", "L2", "L3", "L4", "L5"],
                        )
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "L0 suggests only; L5 acts without a human".into());
                        cx.error_hint(Code::BadValue, a.span, e.to_string(), hint);
                        Autonomy(0)
                    }
                },
                None => {
                    if get(at, "autonomy").is_none() {
                        cx.missing(header.clone(), "autonomy", &what, "\"L1\"");
                    }
                    Autonomy(0)
                }
            };
            let tags = cx.string_map(at, "tags", &what);
            for (tk, tv) in &tags {
                check_tag_key(&mut cx, tk);
                check_tag_value(&mut cx, tk, tv);
            }
            let mut versions = Vec::new();
            if let Some(vt) = cx.table(at, "versions", &what) {
                for (vk, vv) in entries_in_order(vt.value) {
                    let version = vk.get_ref().to_string();
                    let vwhat = format!("version `{version}` of agent `{name}`");
                    check_version(&mut cx, &version, vk.span());
                    let Value::Table(vtab) = vv.get_ref() else {
                        cx.error(Code::Type, vv.span(), format!("{vwhat} must be a table"));
                        continue;
                    };
                    cx.check_keys(vtab, &["artifact", "sha256"], &vwhat);
                    let artifact = cx.string(vtab, "artifact", &vwhat);
                    if artifact.is_none() && get(vtab, "artifact").is_none() {
                        cx.missing(
                            vk.span(),
                            "artifact",
                            &vwhat,
                            "\"artifacts/agent-1.0.0.tar.gz\"",
                        );
                    }
                    let sha = cx.string(vtab, "sha256", &vwhat);
                    match &sha {
                        Some(s) => check_sha256(&mut cx, s),
                        None if get(vtab, "sha256").is_none() => {
                            cx.missing(vk.span(), "sha256", &vwhat, "\"<64 hex digits>\"")
                        }
                        None => {}
                    }
                    versions.push(AgentVersion {
                        version,
                        artifact: artifact.map(|a| a.value).unwrap_or_default(),
                        sha256: sha.map(|s| s.value).unwrap_or_default(),
                    });
                }
            }
            let current = cx.string(at, "current", &what);
            let profile = cx.string(at, "profile", &what);
            let description = cx.string(at, "description", &what).map(|d| d.value);
            let owner = cx.string(at, "owner", &what).map(|d| d.value);
            if let Some(m) = &model {
                self.refer(RefKind::Model, idx, m);
            }
            if let Some(c) = &current {
                self.refs.push(Reference {
                    kind: RefKind::AgentVersion,
                    name: c.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: c.span.clone(),
                    },
                    agent: Some(name.clone()),
                });
            }
            if let Some(p) = &profile {
                self.refer(RefKind::Profile, idx, p);
            }
            out.insert(
                name.clone(),
                Agent {
                    name,
                    description,
                    model: model.map(|m| m.value).unwrap_or_default(),
                    provider: provider.map(|p| p.value),
                    autonomy,
                    owner,
                    profile: profile.map(|p| p.value),
                    current: current.map(|c| c.value),
                    tags: tags.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
                    versions,
                },
            );
        }
    }
}
