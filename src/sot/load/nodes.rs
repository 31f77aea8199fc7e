//! `nodes.toml` and `nodes/*.toml`: the managed machines, and the checks
//! that need all of them (tags against the taxonomy, duplicate names and
//! endpoints).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::Loader;
use super::refs::{Origin, RefKind};
use super::rules::*;
use super::tables::Named;
use crate::diag::{Code, suggest};
use crate::sot::model::*;
use crate::sot::schema::{Table, get};

impl Loader<'_> {
    pub(super) fn nodes(
        &mut self,
        idx: usize,
        rel: &Path,
        t: &Table<'_>,
        settings: Option<&Settings>,
        out: &mut Vec<Node>,
    ) {
        let file_name = rel.display().to_string();
        let (default_user, default_port) = settings
            .map(|s| (s.default_user.clone(), s.default_port))
            .unwrap_or(("root".into(), 22));
        for Named {
            name,
            what,
            header,
            table: nt,
        } in self.named_tables(idx, t, "node", &file_name)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(
                nt,
                &[
                    "address",
                    "port",
                    "user",
                    "groups",
                    "tags",
                    "vars",
                    "profile",
                    "description",
                ],
                &what,
            );
            let address = match cx.string(nt, "address", &what) {
                Some(a) => {
                    check_address(&mut cx, &a);
                    a.value
                }
                None => {
                    if get(nt, "address").is_none() {
                        cx.missing(header.clone(), "address", &what, "\"10.0.0.1\"");
                    }
                    String::new()
                }
            };
            let port = cx
                .integer(nt, "port", &what)
                .and_then(|p| check_port(&mut cx, &p));
            let user = cx.string(nt, "user", &what);
            if let Some(u) = &user {
                check_user(&mut cx, u);
            }
            let groups = cx.strings(nt, "groups", &what);
            let tags = cx.string_map(nt, "tags", &what);
            let vars = cx.vars(nt, "vars", &what);
            let profile = cx.string(nt, "profile", &what);
            let _ = cx.string(nt, "description", &what);
            for g in &groups {
                self.refer(RefKind::Group, idx, g);
            }
            if let Some(p) = &profile {
                self.refer(RefKind::Profile, idx, p);
            }
            let tag_map = tags
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect();
            self.node_tags.push((idx, tags, header.clone()));
            out.push(Node {
                name,
                address,
                port: port.unwrap_or(default_port),
                port_set: port.is_some(),
                user_set: user.is_some(),
                user: user.map_or_else(|| default_user.clone(), |u| u.value),
                groups: groups.into_iter().map(|g| g.value).collect(),
                tags: tag_map,
                vars,
                profile: profile.map(|p| p.value),
                file: rel.to_path_buf(),
            });
            self.node_origins.push(Origin {
                file: idx,
                span: header,
            });
        }
    }

    pub(super) fn check_node_tags(
        &mut self,
        s: &Settings,
        nodes: &[Node],
        profiles: &BTreeMap<String, Profile>,
    ) {
        let node_tags = std::mem::take(&mut self.node_tags);
        for ((idx, tags, header), node) in node_tags.iter().zip(nodes) {
            let mut cx = cx!(self, *idx);
            for (k, v) in tags {
                if !check_tag_key(&mut cx, k) {
                    continue;
                }
                if !check_tag_value(&mut cx, k, v) {
                    continue;
                }
                if let Some(allowed) = s.tag_values.get(&k.value)
                    && !allowed.contains(&v.value)
                {
                    let hint = match suggest(&v.value, allowed.iter().map(String::as_str)) {
                        Some(x) => {
                            format!("did you mean `{x}`? allowed: {}", allowed.join(", "))
                        }
                        None => format!(
                            "allowed values: {} (see [tags.values] in maestro.toml)",
                            allowed.join(", ")
                        ),
                    };
                    cx.error_hint(
                        Code::BadTag,
                        v.span.clone(),
                        format!("`{}` is not an allowed value of tag `{}`", v.value, k.value),
                        hint,
                    );
                }
            }
            let profile_name = node.profile.as_ref().or(s.default_profile.as_ref());
            let profile_required = profile_name
                .and_then(|p| profiles.get(p))
                .map(|p| p.required_tags.as_slice())
                .unwrap_or(&[]);
            for req in s.required_tags.iter().chain(profile_required) {
                if !node.tags.contains_key(req) {
                    let by = if s.required_tags.contains(req) {
                        "maestro.toml requires it".to_string()
                    } else {
                        format!(
                            "profile `{}` requires it",
                            profile_name.expect("profile tags")
                        )
                    };
                    cx.error_hint(
                        Code::MissingTag,
                        header.clone(),
                        format!("node `{}` has no `{req}` tag", node.name),
                        format!("{by}: add `{req} = \"...\"` to its tags"),
                    );
                }
            }
        }
    }

    pub(super) fn check_duplicate_nodes(&mut self, nodes: &[Node]) {
        let definitions = std::mem::take(&mut self.node_origins);
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
        let mut by_endpoint: HashMap<(&str, u16), usize> = HashMap::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if let Some(&first) = by_name.get(n.name.as_str()) {
                let at = self.location(&definitions[first]);
                let o = &definitions[i];
                cx!(self, o.file).error_hint(
                    Code::Duplicate,
                    o.span.clone(),
                    format!("node `{}` is defined twice", n.name),
                    format!("first defined at {at}"),
                );
                continue;
            }
            by_name.insert(&n.name, i);
            if n.address.is_empty() {
                continue;
            }
            if let Some(&first) = by_endpoint.get(&(n.address.as_str(), n.port)) {
                let at = self.location(&definitions[first]);
                let o = &definitions[i];
                cx!(self, o.file).error_hint(
                    Code::Duplicate,
                    o.span.clone(),
                    format!(
                        "node `{}` has the same address and port ({}:{}) as node `{}`",
                        n.name, n.address, n.port, nodes[first].name
                    ),
                    format!("`{}` is defined at {at}", nodes[first].name),
                );
                continue;
            }
            by_endpoint.insert((&n.address, n.port), i);
        }
    }
}
