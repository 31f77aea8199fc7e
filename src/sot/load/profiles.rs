//! Installer profiles, and the playbook and baseline names beside them (their
//! contents are checked by `crate::playbook` and `crate::harden`).

use std::collections::BTreeMap;

use super::Loader;
use super::files::Role;
use super::refs::RefKind;
use super::rules::*;
use super::stem;
use crate::sot::model::*;

impl Loader<'_> {
    /// Profiles, playbooks and hardening baselines referenced by the SoT.
    pub(super) fn library(&mut self) -> (BTreeMap<String, Profile>, Vec<String>, Vec<String>) {
        let mut profiles = BTreeMap::new();
        for (idx, rel) in self.files_of(Role::Profile) {
            let name = stem(&rel);
            let Some(t) = self.parse(idx) else { continue };
            let what = format!("profile `{name}`");
            let mut cx = cx!(self, idx);
            cx.check_keys(
                &t,
                &[
                    "description",
                    "playbooks",
                    "hardening",
                    "min_compliance",
                    "required_tags",
                    "vars",
                    "validate",
                ],
                &what,
            );
            let mut validate = ProfileRules::default();
            if let Some(v) = cx.table(&t, "validate", &what) {
                let vwhat = format!("[validate] of {what}");
                cx.check_keys(v.value, &["absolute_paths", "names", "not_root"], &vwhat);
                let mut list = |key| -> Vec<String> {
                    cx.strings(v.value, key, &vwhat)
                        .into_iter()
                        .map(|s| s.value)
                        .collect()
                };
                validate.absolute_paths = list("absolute_paths");
                validate.names = list("names");
                validate.not_root = list("not_root");
            }
            let playbooks = cx.strings(&t, "playbooks", &what);
            let hardening = cx.string(&t, "hardening", &what);
            let min_compliance = cx.integer(&t, "min_compliance", &what).and_then(|m| {
                match u8::try_from(m.value).ok().filter(|p| *p <= 100) {
                    Some(p) => Some(p),
                    None => {
                        cx.error(
                            crate::sot::diag::Code::BadValue,
                            m.span,
                            format!("`min_compliance` in {what} is a percentage: 0 to 100"),
                        );
                        None
                    }
                }
            });
            let required = cx.strings(&t, "required_tags", &what);
            for r in &required {
                check_tag_key(&mut cx, r);
            }
            let profile = Profile {
                name: name.clone(),
                description: cx.string(&t, "description", &what).map(|d| d.value),
                playbooks: playbooks.iter().map(|p| p.value.clone()).collect(),
                hardening: hardening.as_ref().map(|h| h.value.clone()),
                min_compliance,
                required_tags: required.into_iter().map(|r| r.value).collect(),
                vars: cx.vars(&t, "vars", &what),
                validate,
            };
            for p in playbooks {
                self.refer(RefKind::Playbook, idx, &p);
            }
            if let Some(h) = hardening {
                self.refer(RefKind::Baseline, idx, &h);
            }
            profiles.insert(name, profile);
        }
        // Playbooks and baselines are checked by their own modules, so a broken
        // task or rule is caught by `sot check`, before any run.
        let mut names = |role| {
            let mut out = Vec::new();
            for (idx, rel) in self.files_of(role) {
                if self.parse(idx).is_some() {
                    let file = &self.files[idx];
                    let problems = match role {
                        Role::Playbook => crate::playbook::check(file),
                        _ => crate::harden::check(file),
                    };
                    self.diags.extend(problems.0);
                }
                out.push(stem(&rel));
            }
            out
        };
        let playbooks = names(Role::Playbook);
        let baselines = names(Role::Baseline);
        (profiles, playbooks, baselines)
    }
}
