//! `groups.toml`: named groups of nodes with shared variables.

use std::collections::BTreeMap;

use super::GROUPS_FILE;
use super::Loader;
use super::refs::RefKind;
use super::tables::Named;
use crate::sot::model::*;
use crate::sot::schema::Table;

impl Loader<'_> {
    pub(super) fn groups(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Group>) {
        for Named {
            name,
            what,
            header: _,
            table: gt,
        } in self.named_tables(idx, t, "group", GROUPS_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(gt, &["description", "members", "vars"], &what);
            let description = cx.string(gt, "description", &what).map(|d| d.value);
            let members = cx.strings(gt, "members", &what);
            let vars = cx.vars(gt, "vars", &what);
            for m in &members {
                self.refer(RefKind::Node, idx, m);
            }
            out.insert(
                name.clone(),
                Group {
                    name,
                    description,
                    members: members.into_iter().map(|m| m.value).collect(),
                    vars,
                },
            );
        }
    }
}
