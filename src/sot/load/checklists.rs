//! `checklists/*.toml`: reflection checklists, `[checklist.NAME]` with a
//! `title`, the triggers it applies to (`[checklist.NAME.on]`, one field
//! per trigger), its items (`[[checklist.NAME.item]]`: id, question,
//! required, the kinds of evidence an answer must cite), who may answer
//! (`people`, `teams` of people.toml) and whether a pending reflection
//! holds the agent's next rollout (`block_rollouts`).

use std::collections::BTreeMap;
use std::path::Path;

use super::Loader;
use super::rules::check_name;
use super::tables::Named;
use crate::diag::Code;
use crate::reflect::{Checklist, EvidenceKind, Item, Trigger, Triggers};
use crate::sot::model::{Autonomy, Person};
use crate::sot::schema::{Value, get};

impl Loader<'_> {
    pub(super) fn checklists(
        &mut self,
        idx: usize,
        rel: &Path,
        t: &crate::sot::schema::Table<'_>,
        people: &BTreeMap<String, Person>,
        out: &mut BTreeMap<String, Checklist>,
    ) {
        let file = rel.display().to_string();
        for Named {
            name,
            what,
            header,
            table: ct,
        } in self.named_tables(idx, t, "checklist", &file)
        {
            let mut cx = cx!(self, idx);
            if let Some(other) = out.get(&name) {
                cx.error(
                    Code::Duplicate,
                    header.clone(),
                    format!("{what} is defined twice (also in {})", other.file.display()),
                );
                continue;
            }
            cx.check_keys(
                ct,
                &["title", "on", "item", "people", "teams", "block_rollouts"],
                &what,
            );
            let title = cx.string(ct, "title", &what).map(|t| t.value);
            if get(ct, "title").is_none() {
                cx.missing(
                    header.clone(),
                    "title",
                    &what,
                    "\"LAW-REFLECT-001: operations review\"",
                );
            }
            let mut on = Triggers::default();
            match cx.table(ct, "on", &what) {
                None if get(ct, "on").is_none() => cx.error_hint(
                    Code::MissingKey,
                    header.clone(),
                    format!("{what} says no operation it applies to"),
                    "add [checklist.NAME.on] with e.g. rollout_aborted = true, failed_nodes = true",
                ),
                None => {}
                Some(on_t) => {
                    let owhat = format!("the triggers of {what}");
                    let keys: Vec<&str> = Trigger::ALL.iter().map(|t| t.key()).collect();
                    cx.check_keys(on_t.value, &keys, &owhat);
                    let flag = |cx: &mut crate::sot::schema::Cx<'_>, key: &str| {
                        cx.boolean(on_t.value, key, &owhat).is_some_and(|b| b.value)
                    };
                    on.rollout_aborted = flag(&mut cx, "rollout_aborted");
                    on.rollout_completed = flag(&mut cx, "rollout_completed");
                    on.kill_engaged = flag(&mut cx, "kill_engaged");
                    on.kill_released = flag(&mut cx, "kill_released");
                    on.failed_nodes = flag(&mut cx, "failed_nodes");
                    on.break_glass = flag(&mut cx, "break_glass");
                    if let Some(p) = cx.number(on_t.value, "audit_below", &owhat) {
                        if (0.0..=100.0).contains(&p.value) {
                            on.audit_below = Some(p.value);
                        } else {
                            cx.error(
                                Code::BadValue,
                                p.span,
                                format!(
                                    "`audit_below` in {owhat} is a compliance percent, 0 to 100"
                                ),
                            );
                        }
                    }
                    if let Some(level) = cx.string(on_t.value, "deploy_autonomy", &owhat) {
                        match level.value.parse::<Autonomy>() {
                            Ok(a) => on.deploy_autonomy = Some(a),
                            Err(e) => cx.error(Code::BadValue, level.span, e.to_string()),
                        }
                    }
                    if !on.any() && cx.diags.is_empty() {
                        cx.error_hint(
                            Code::BadValue,
                            on_t.span,
                            format!("{what} turns on no trigger"),
                            format!("set one of {} (true, or a threshold)", keys.join(", ")),
                        );
                    }
                }
            }
            let mut items: Vec<Item> = Vec::new();
            match get(ct, "item") {
                None => cx.missing(
                    header.clone(),
                    "item",
                    &what,
                    "[[checklist.NAME.item]] id = \"what-happened\", question = \"…\"",
                ),
                Some(v) => match v.get_ref() {
                    Value::Array(list) => {
                        for (i, entry) in list.iter().enumerate() {
                            let iwhat = format!("item {} of {what}", i + 1);
                            let Value::Table(it) = entry.get_ref() else {
                                cx.error(
                                    Code::Type,
                                    entry.span(),
                                    format!("{iwhat} must be a table ([[checklist.{name}.item]])"),
                                );
                                continue;
                            };
                            cx.check_keys(it, &["id", "question", "required", "evidence"], &iwhat);
                            let id = cx.string(it, "id", &iwhat);
                            if get(it, "id").is_none() {
                                cx.missing(entry.span(), "id", &iwhat, "\"what-happened\"");
                            }
                            let question = cx.string(it, "question", &iwhat);
                            if get(it, "question").is_none() {
                                cx.missing(entry.span(), "question", &iwhat, "\"What happened?\"");
                            }
                            let required = cx.boolean(it, "required", &iwhat).is_none_or(|b| b.value);
                            let mut evidence = Vec::new();
                            for k in cx.strings(it, "evidence", &iwhat) {
                                match EvidenceKind::parse(&k.value) {
                                    Some(kind) => evidence.push(kind),
                                    None => cx.error_hint(
                                        Code::BadValue,
                                        k.span,
                                        format!("`{}` is not a kind of evidence", k.value),
                                        format!(
                                            "one of {}",
                                            EvidenceKind::ALL.map(|k| k.key()).join(", ")
                                        ),
                                    ),
                                }
                            }
                            let Some(id) = id else { continue };
                            if !check_name(&mut cx, &id.value, id.span.clone(), "item") {
                                continue;
                            }
                            if items.iter().any(|x| x.id == id.value) {
                                cx.error(
                                    Code::Duplicate,
                                    id.span,
                                    format!("{what} has two items `{}`", id.value),
                                );
                                continue;
                            }
                            items.push(Item {
                                id: id.value,
                                question: question.map(|q| q.value).unwrap_or_default(),
                                required,
                                evidence,
                            });
                        }
                    }
                    _ => cx.error(
                        Code::Type,
                        v.span(),
                        format!("`item` in {what} must be an array of tables ([[checklist.{name}.item]])"),
                    ),
                },
            }
            let who = cx.strings(ct, "people", &what);
            for p in &who {
                if !people.contains_key(&p.value) {
                    let hint = crate::diag::suggest(&p.value, people.keys().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "people are defined in people.toml".into());
                    cx.error_hint(
                        Code::DanglingRef,
                        p.span.clone(),
                        format!(
                            "{what} names person `{}`, who is not in people.toml",
                            p.value
                        ),
                        hint,
                    );
                }
            }
            let teams = cx.strings(ct, "teams", &what);
            let known: std::collections::BTreeSet<&str> = people
                .values()
                .flat_map(|p| p.teams.iter().map(String::as_str))
                .collect();
            for team in &teams {
                if !known.contains(team.value.as_str()) {
                    let hint = crate::diag::suggest(&team.value, known.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            "a team is any name in a person's `teams` in people.toml".into()
                        });
                    cx.error_hint(
                        Code::DanglingRef,
                        team.span.clone(),
                        format!(
                            "{what} names team `{}`, which nobody in people.toml is in",
                            team.value
                        ),
                        hint,
                    );
                }
            }
            let block_rollouts = cx
                .boolean(ct, "block_rollouts", &what)
                .is_some_and(|b| b.value);
            out.insert(
                name.clone(),
                Checklist {
                    name: name.clone(),
                    title: title.unwrap_or(name),
                    on,
                    items,
                    people: who.into_iter().map(|p| p.value).collect(),
                    teams: teams.into_iter().map(|t| t.value).collect(),
                    block_rollouts,
                    file: rel.to_path_buf(),
                },
            );
        }
    }
}
