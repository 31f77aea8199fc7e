//! The shape every registry shares: a file holding one table of named tables
//! (`[node.NAME]`, `[group.NAME]`, `[model.NAME]`, `[agent.NAME]`), and names
//! that must resolve elsewhere. A new registry (deploy settings, freeze
//! windows, policies, checklists) walks its file with [`Loader::named_tables`]
//! and records what it refers to with [`Loader::refer`].

use std::ops::Range;

use super::Loader;
use super::refs::{Origin, RefKind, Reference};
use super::rules::check_name;
use crate::diag::Code;
use crate::sot::schema::{At, Table, Value, entries_in_order};

/// One `[key.NAME]` table.
pub(super) struct Named<'t, 'i> {
    pub name: String,
    /// How messages name it: "node `gpu-eu-01`".
    pub what: String,
    /// The span of its name, where "missing key" problems point.
    pub header: Range<usize>,
    pub table: &'t Table<'i>,
}

impl Loader<'_> {
    /// The `[key.NAME]` tables of file `idx` (`file` as messages name it), in
    /// source order. The file may hold nothing but `key`, each name must be a
    /// valid name, each entry must be a table; problems are recorded and an
    /// entry that is not a table is left out.
    pub(super) fn named_tables<'t, 'i>(
        &mut self,
        idx: usize,
        t: &'t Table<'i>,
        key: &str,
        file: &str,
    ) -> Vec<Named<'t, 'i>> {
        cx!(self, idx).check_keys(t, &[key], file);
        self.named_tables_of(idx, t, key, file)
    }

    /// [`Loader::named_tables`] for a file that holds more than one kind of
    /// table (`[strategy.NAME]` and `[gate.NAME]`): its keys are the
    /// caller's to check.
    pub(super) fn named_tables_of<'t, 'i>(
        &mut self,
        idx: usize,
        t: &'t Table<'i>,
        key: &str,
        file: &str,
    ) -> Vec<Named<'t, 'i>> {
        let mut cx = cx!(self, idx);
        let Some(all) = cx.table(t, key, file) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries_in_order(all.value) {
            let name = k.get_ref().to_string();
            let what = format!("{key} `{name}`");
            check_name(&mut cx, &name, k.span(), key);
            let Value::Table(table) = v.get_ref() else {
                cx.error_hint(
                    Code::Type,
                    v.span(),
                    format!("{what} must be a table, found {}", v.get_ref().type_str()),
                    format!("write it as `[{key}.{name}]` followed by its keys"),
                );
                continue;
            };
            out.push(Named {
                name,
                what,
                header: k.span(),
                table,
            });
        }
        out
    }

    /// Record that the name at `at` in file `idx` must resolve to a `kind`.
    pub(super) fn refer(&mut self, kind: RefKind, idx: usize, at: &At<String>) {
        self.refs.push(Reference {
            kind,
            name: at.value.clone(),
            origin: Origin {
                file: idx,
                span: at.span.clone(),
            },
            agent: None,
        });
    }
}
