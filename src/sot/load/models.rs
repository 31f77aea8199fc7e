//! `models.toml`: the model registry.

use std::collections::BTreeMap;

use super::Loader;
use super::MODELS_FILE;
use super::rules::*;
use super::tables::Named;
use crate::sot::model::*;
use crate::sot::schema::{Table, get};

impl Loader<'_> {
    pub(super) fn models(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Model>) {
        for Named {
            name,
            what,
            header,
            table: mt,
        } in self.named_tables(idx, t, "model", MODELS_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(
                mt,
                &[
                    "provider",
                    "description",
                    "artifact",
                    "sha256",
                    "jurisdictions",
                ],
                &what,
            );
            let provider = match cx.string(mt, "provider", &what) {
                Some(p) => {
                    check_name(&mut cx, &p.value, p.span.clone(), "provider");
                    p.value
                }
                None => {
                    if get(mt, "provider").is_none() {
                        cx.missing(header.clone(), "provider", &what, "\"vllm\"");
                    }
                    String::new()
                }
            };
            let sha256 = cx.string(mt, "sha256", &what);
            if let Some(s) = &sha256 {
                check_sha256(&mut cx, s);
            }
            out.insert(
                name.clone(),
                Model {
                    name,
                    provider,
                    description: cx.string(mt, "description", &what).map(|d| d.value),
                    artifact: cx.string(mt, "artifact", &what).map(|d| d.value),
                    sha256: sha256.map(|s| s.value),
                    jurisdictions: cx
                        .strings(mt, "jurisdictions", &what)
                        .into_iter()
                        .map(|j| j.value)
                        .collect(),
                },
            );
        }
    }
}
