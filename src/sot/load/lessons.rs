//! `lessons.toml`: what reflections learned, `[lesson.ID]` with its text,
//! memory (`stm`, `ltm`), scope (agent, group, kind of operation), the
//! evidence it was learned from, and, once promoted, by whom and after how
//! many uses. maestro writes this file (`reflect`, `lesson promote`); the
//! loader checks what a hand edit could break.

use std::collections::BTreeMap;

use super::Loader;
use super::refs::RefKind;
use super::tables::Named;
use crate::diag::Code;
use crate::reflect::{LESSONS_FILE, Lesson, LessonScope, Memory, lesson::Promotion};
use crate::sot::schema::{Table, get};

impl Loader<'_> {
    pub(super) fn lessons(
        &mut self,
        idx: usize,
        t: &Table<'_>,
        out: &mut BTreeMap<String, Lesson>,
    ) {
        for Named {
            name,
            what,
            header,
            table: lt,
        } in self.named_tables(idx, t, "lesson", LESSONS_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(
                lt,
                &[
                    "text",
                    "memory",
                    "scope",
                    "evidence",
                    "reflection",
                    "by",
                    "created",
                    "promoted_by",
                    "promoted",
                    "uses_at_promotion",
                ],
                &what,
            );
            let text = cx.string(lt, "text", &what);
            if get(lt, "text").is_none() {
                cx.missing(header.clone(), "text", &what, "\"what to do differently\"");
            }
            let memory = match cx.string(lt, "memory", &what) {
                None => Memory::Stm,
                Some(m) if m.value == "stm" => Memory::Stm,
                Some(m) if m.value == "ltm" => Memory::Ltm,
                Some(m) => {
                    cx.error_hint(
                        Code::BadValue,
                        m.span,
                        format!("`memory` of {what} is `{}`", m.value),
                        "\"stm\" (short-term) or \"ltm\" (long-term, after `maestro lesson promote`)",
                    );
                    Memory::Stm
                }
            };
            let mut scope = LessonScope::default();
            let mut refs = Vec::new();
            if let Some(st) = cx.table(lt, "scope", &what) {
                let swhat = format!("the scope of {what}");
                cx.check_keys(st.value, &["agent", "group", "operation"], &swhat);
                let agent = cx.string(st.value, "agent", &swhat);
                let group = cx.string(st.value, "group", &swhat);
                if let Some(o) = cx.string(st.value, "operation", &swhat) {
                    if !crate::policy::ACTIONS.iter().any(|(a, _)| *a == o.value) {
                        cx.error_hint(
                            Code::BadValue,
                            o.span.clone(),
                            format!("`{}` in {swhat} is not a kind of operation", o.value),
                            format!(
                                "one of {}",
                                crate::policy::ACTIONS
                                    .iter()
                                    .map(|(a, _)| *a)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                    scope.operation = Some(o.value);
                }
                scope.agent = agent.as_ref().map(|a| a.value.clone());
                scope.group = group.as_ref().map(|g| g.value.clone());
                refs.extend(agent.map(|a| (RefKind::Agent, a)));
                refs.extend(group.map(|g| (RefKind::Group, g)));
                if scope.is_empty() {
                    cx.error(
                        Code::BadValue,
                        st.span,
                        format!("{swhat} is empty: name an agent, a group or a kind of operation"),
                    );
                }
            } else if get(lt, "scope").is_none() {
                cx.missing(header.clone(), "scope", &what, "{ agent = \"AGENT\" }");
            }
            let evidence = cx.strings(lt, "evidence", &what);
            let reflection = cx.string(lt, "reflection", &what).map(|r| r.value);
            let by = cx.string(lt, "by", &what).map(|r| r.value);
            let created = cx.string(lt, "created", &what).map(|r| r.value);
            let promoted_by = cx.string(lt, "promoted_by", &what).map(|r| r.value);
            let promoted_at = cx.string(lt, "promoted", &what).map(|r| r.value);
            let uses = cx.integer(lt, "uses_at_promotion", &what).map(|u| u.value);
            let promoted = match (promoted_by, promoted_at) {
                (Some(by), Some(at)) => Some(Promotion {
                    by,
                    at,
                    uses: uses.unwrap_or(0).max(0) as usize,
                }),
                _ => None,
            };
            if memory == Memory::Ltm && promoted.is_none() {
                cx.error_hint(
                    Code::BadValue,
                    header.clone(),
                    format!("{what} is in long-term memory without a promotion"),
                    "lessons reach ltm through `maestro lesson promote ID` (promoted_by, promoted)",
                );
            }
            for (kind, r) in refs {
                self.refer(kind, idx, &r);
            }
            out.insert(
                name.clone(),
                Lesson {
                    id: name,
                    text: text.map(|t| t.value).unwrap_or_default(),
                    memory,
                    scope,
                    evidence: evidence.into_iter().map(|e| e.value).collect(),
                    reflection,
                    by,
                    created,
                    promoted,
                },
            );
        }
    }
}
