//! Answering a pending reflection: the answers (from `--answers FILE`, the
//! terminal or the console's form) are checked against the checklist —
//! every required item answered, every cited piece of evidence of a kind
//! the item accepts and resolving (the run or rollout is in the store, the
//! ledger entry's hash verifies, the commit is in the SoT's history, the
//! file is in the SoT, the URL is one) — and scanned for secrets; then the
//! reflection (and its lessons) is committed into the SoT as one commit by
//! the verified person who signs it, and a ledger entry refers to it.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::lesson::LessonScope;
use super::{Checklist, EvidenceKind, LESSONS_FILE, REFLECTIONS_DIR, ReflectError, Result};
use crate::diag::{Code, Diagnostic, Diagnostics, SourceFile};
use crate::identity::Actor;
use crate::sot::change::{Intent, Transaction};
use crate::sot::edit::{self, Kind};
use crate::sot::model::Sot;
use crate::sot::schema::{Cx, Table, Value, get};
use crate::store::{AnswerRecord, Reflection, Store};

/// A string and where it was written (none when it was typed or picked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cited {
    pub value: String,
    pub span: Option<Range<usize>>,
}

impl Cited {
    pub fn new(value: impl Into<String>) -> Cited {
        Cited {
            value: value.into(),
            span: None,
        }
    }
}

/// The answer to one item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemAnswer {
    pub text: String,
    pub evidence: Vec<Cited>,
    /// Where the item's table was written.
    pub span: Option<Range<usize>>,
}

/// A lesson a reflection records (short-term memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewLesson {
    pub id: Cited,
    pub text: String,
    pub scope: LessonScope,
    pub evidence: Vec<Cited>,
    pub span: Option<Range<usize>>,
}

impl Default for Cited {
    fn default() -> Self {
        Cited::new("")
    }
}

/// Everything answered, from whichever face.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    /// By item id, with where the item id was written.
    pub items: BTreeMap<String, ItemAnswer>,
    pub lessons: Vec<NewLesson>,
    /// The answers file, when they came from one (diagnostics point into it).
    pub file: Option<SourceFile>,
}

/// One problem with the answers: located when they came from a file.
struct Problem {
    span: Option<Range<usize>>,
    message: String,
    hint: Option<String>,
}

impl Answers {
    /// Read an answers file:
    ///
    /// ```toml
    /// [answer.what-happened]
    /// text = "…"
    /// evidence = ["rollout:ro-…", "run:r-…"]
    ///
    /// [[lesson]]
    /// id = "warm-the-cache-first"
    /// text = "…"
    /// scope = { agent = "fleet-doctor", operation = "deploy" }
    /// evidence = ["rollout:ro-…"]
    /// ```
    pub fn parse(path: &Path, text: String) -> std::result::Result<Answers, Diagnostics> {
        let file = SourceFile::new(path.to_path_buf(), text);
        let mut diags = Vec::new();
        let mut out = Answers::default();
        {
            let (table, errors) = toml::de::DeTable::parse_recoverable(&file.text);
            if !errors.is_empty() {
                return Err(Diagnostics(
                    errors
                        .iter()
                        .map(|e| Diagnostic::from_toml_error(&file, e))
                        .collect(),
                ));
            }
            let t = table.into_inner();
            let mut cx = Cx {
                file: &file,
                diags: &mut diags,
            };
            cx.check_keys(&t, &["answer", "lesson"], "an answers file");
            if let Some(answers) = cx.table(&t, "answer", "an answers file") {
                for (key, item) in answers.value.iter() {
                    let id = key.get_ref().to_string();
                    let what = format!("answer `{id}`");
                    let Value::Table(it) = item.get_ref() else {
                        cx.error(
                            Code::Type,
                            item.span(),
                            format!("{what} must be a table: [answer.{id}] with text = \"…\""),
                        );
                        continue;
                    };
                    cx.check_keys(it, &["text", "evidence"], &what);
                    out.items.insert(
                        id,
                        ItemAnswer {
                            text: cx
                                .string(it, "text", &what)
                                .map(|s| s.value)
                                .unwrap_or_default(),
                            evidence: cited(&mut cx, it, &what),
                            span: Some(key.span()),
                        },
                    );
                }
            }
            if let Some(v) = get(&t, "lesson") {
                match v.get_ref() {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let what = format!("lesson {} of the answers", i + 1);
                            let Value::Table(lt) = item.get_ref() else {
                                cx.error(
                                    Code::Type,
                                    item.span(),
                                    format!("{what} must be a table ([[lesson]])"),
                                );
                                continue;
                            };
                            out.lessons.push(lesson(&mut cx, lt, item.span(), &what));
                        }
                    }
                    _ => cx.error(
                        Code::Type,
                        v.span(),
                        "`lesson` must be an array of tables: [[lesson]]",
                    ),
                }
            }
        }
        if !diags.is_empty() {
            return Err(Diagnostics(diags));
        }
        out.file = Some(file);
        Ok(out)
    }

    /// A template answers file for `checklist`: each item's question as a
    /// comment, what evidence it wants, and an example lesson.
    pub fn template(checklist: &Checklist, reflection: &Reflection) -> String {
        let mut s = format!(
            "# Answers to {} ({}), for {} after {} ({}).\n# Fill in, then: maestro reflect {} --answers THIS_FILE\n# Evidence is KIND:VALUE with KIND one of run, rollout, ledger, commit, file, url, lesson.\n",
            reflection.id,
            checklist.title,
            reflection.agent.as_deref().unwrap_or("the fleet"),
            one_line(&reflection.description),
            reflection.source,
            reflection.id
        );
        // The operation as evidence names the run or rollout, not its attempt.
        let source = reflection.source.split('#').next().unwrap_or_default();
        for item in &checklist.items {
            s.push_str(&format!(
                "\n# {}{}\n",
                item.question,
                if item.required { " (required)" } else { "" }
            ));
            if !item.evidence.is_empty() {
                let kinds: Vec<&str> = item.evidence.iter().map(|k| k.key()).collect();
                s.push_str(&format!("# cite at least one of: {}\n", kinds.join(", ")));
            }
            let example = if item.evidence.contains(&EvidenceKind::Rollout)
                && source.starts_with("rollout:")
                || item.evidence.contains(&EvidenceKind::Run) && source.starts_with("run:")
            {
                format!("\"{source}\"")
            } else {
                String::new()
            };
            s.push_str(&format!(
                "[answer.{}]\ntext = \"\"\nevidence = [{example}]\n",
                item.id
            ));
        }
        s.push_str("\n# Lessons learned (optional), in short-term memory until applied three times:\n# [[lesson]]\n# id = \"a-short-name\"\n# text = \"what to do differently\"\n# scope = { agent = \"AGENT\", operation = \"deploy\" }\n# evidence = [\"");
        s.push_str(source);
        s.push_str("\"]\n");
        s
    }
}

fn cited(cx: &mut Cx<'_>, t: &Table<'_>, what: &str) -> Vec<Cited> {
    cx.strings(t, "evidence", what)
        .into_iter()
        .map(|s| Cited {
            value: s.value,
            span: Some(s.span),
        })
        .collect()
}

fn lesson(cx: &mut Cx<'_>, t: &Table<'_>, span: Range<usize>, what: &str) -> NewLesson {
    cx.check_keys(t, &["id", "text", "scope", "evidence"], what);
    let id = cx
        .string(t, "id", what)
        .map(|s| Cited {
            value: s.value,
            span: Some(s.span),
        })
        .unwrap_or_default();
    let mut scope = LessonScope::default();
    if let Some(st) = cx.table(t, "scope", what) {
        let swhat = format!("the scope of {what}");
        cx.check_keys(st.value, &["agent", "group", "operation"], &swhat);
        scope.agent = cx.string(st.value, "agent", &swhat).map(|s| s.value);
        scope.group = cx.string(st.value, "group", &swhat).map(|s| s.value);
        scope.operation = cx.string(st.value, "operation", &swhat).map(|s| s.value);
    }
    NewLesson {
        id,
        text: cx
            .string(t, "text", what)
            .map(|s| s.value)
            .unwrap_or_default(),
        scope,
        evidence: cited(cx, t, what),
        span: Some(span),
    }
}

/// Where evidence is looked up.
pub struct Resolver<'a> {
    pub sot: &'a Sot,
    pub store: &'a dyn Store,
    /// The ledger of the store.
    pub ledger: crate::ledger::Place,
}

impl Resolver<'_> {
    /// Why `evidence` does not resolve, if it does not.
    pub fn check(&self, evidence: &str) -> std::result::Result<EvidenceKind, String> {
        let (kind, value) = evidence
            .split_once(':')
            .filter(|(k, _)| EvidenceKind::parse(k).is_some())
            .or_else(|| {
                (evidence.starts_with("https://") || evidence.starts_with("http://"))
                    .then_some(("url", evidence))
            })
            .ok_or_else(|| {
                format!(
                    "`{evidence}` is not evidence: write KIND:VALUE with KIND one of {}",
                    EvidenceKind::ALL.map(|k| k.key()).join(", ")
                )
            })?;
        let kind = EvidenceKind::parse(kind).expect("checked above");
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("`{evidence}` names no {}", kind.key()));
        }
        let found = match kind {
            // Whole ids only: `last`, a prefix or a pattern would point at
            // something else tomorrow, and the id is what gets committed.
            EvidenceKind::Run => self
                .store
                .run(value)
                .map_err(|e| e.to_string())?
                .is_some_and(|r| r.id == value)
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "there is no run `{value}` in the run store (`maestro runs` lists them)"
                    )
                }),
            EvidenceKind::Rollout => self
                .store
                .rollout(value)
                .map_err(|e| e.to_string())?
                .is_some_and(|r| r.id == value)
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "there is no rollout `{value}` in the run store (`maestro rollout list`)"
                    )
                }),
            EvidenceKind::Ledger => self.ledger_entry(value),
            EvidenceKind::Commit => {
                // A commit id (7 to 40 hex digits), not a revision like HEAD
                // or a branch, which moves.
                let hex =
                    (7..=40).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit());
                let repo =
                    crate::sot::git::SotRepo::open(&self.sot.root).map_err(|e| e.to_string())?;
                hex.then(|| repo.repo.revparse_single(value).ok())
                    .flatten()
                    .and_then(|o| o.peel_to_commit().ok())
                    .map(|_| ())
                    .ok_or_else(|| {
                        if hex {
                            format!("there is no commit `{value}` in the SoT's history")
                        } else {
                            format!("`{value}` is not a commit id: cite a commit by its hash (7 to 40 hex digits, `maestro sot log`)")
                        }
                    })
            }
            EvidenceKind::File => {
                let rel = Path::new(value);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    Err(format!(
                        "`{value}`: a file is cited by its path inside the SoT"
                    ))
                } else if crate::sot::git::SotRepo::open(&self.sot.root)
                    .map_err(|e| e.to_string())?
                    .file_at_head(rel)
                    .is_some()
                {
                    Ok(())
                } else {
                    Err(format!(
                        "there is no file `{value}` committed in the SoT (a file is cited once git tracks it; links are not followed)"
                    ))
                }
            }
            EvidenceKind::Url => {
                let rest = value
                    .strip_prefix("https://")
                    .or_else(|| value.strip_prefix("http://"));
                match rest {
                    Some(r)
                        if !r.is_empty()
                            && !r.starts_with('/')
                            && !value.contains(char::is_whitespace) =>
                    {
                        Ok(())
                    }
                    _ => Err(format!("`{value}` is not an http or https URL")),
                }
            }
            EvidenceKind::Lesson => super::lesson::check_cited(self.sot, &[value.to_string()])
                .map_err(|e| e.to_string()),
        };
        found.map(|()| kind)
    }

    /// The entry whose hash starts with `prefix` (12 or more hex digits),
    /// its hash recomputed from its contents and its links to its
    /// neighbours checked.
    fn ledger_entry(&self, prefix: &str) -> std::result::Result<(), String> {
        if prefix.len() < 12 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{prefix}`: cite a ledger entry by its hash, at least 12 hex digits (`maestro ledger show`)"
            ));
        }
        let entries = crate::ledger::read(&self.ledger, None).map_err(|e| e.to_string())?;
        let Some(i) = entries.iter().position(|e| e.hash.starts_with(prefix)) else {
            return Err(format!("there is no ledger entry {prefix}"));
        };
        let e = &entries[i];
        let computed = e.compute_hash().map_err(|e| e.to_string())?;
        let prev_ok = if i == 0 {
            e.prev == crate::ledger::GENESIS
        } else {
            entries[i - 1].hash == e.prev
        };
        let next_ok = entries.get(i + 1).is_none_or(|n| n.prev == e.hash);
        if computed != e.hash || !prev_ok || !next_ok {
            return Err(format!(
                "ledger entry {prefix} does not verify (its contents or its place in the chain were changed): run `maestro ledger verify`"
            ));
        }
        Ok(())
    }
}

/// What answering did.
#[derive(Debug, Clone, Serialize)]
pub struct Answered {
    pub reflection: String,
    pub commit: String,
    pub ledger: String,
    pub file: PathBuf,
    pub lessons: Vec<String>,
    /// Lessons whose citation counted as a use.
    pub applied: Vec<String>,
    /// The answer was already in the SoT from an earlier attempt that
    /// stopped before its ledger entry or the store's row: this finished it
    /// (the answers given this time were not used).
    pub resumed: bool,
}

impl Answered {
    /// One line for both faces.
    pub fn summary(&self) -> String {
        format!(
            "reflection {} answered: {} in commit {}, ledger entry {}{}",
            self.reflection,
            self.file.display(),
            &self.commit[..12.min(self.commit.len())],
            &self.ledger[..12.min(self.ledger.len())],
            if self.resumed {
                " (an earlier attempt had committed it and stopped: it is finished now, and the answers given this time were not used)"
            } else {
                ""
            }
        )
    }
}

/// A reflection answer to write: the reflection's file and its lessons.
#[derive(Serialize)]
struct ReflectionFile<'a> {
    id: &'a str,
    checklist: &'a str,
    title: &'a str,
    trigger: &'a str,
    operation: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    triggered: String,
    answered: String,
    answered_by: &'a str,
    key: &'a str,
    lessons: Vec<&'a str>,
    item: Vec<ItemFile<'a>>,
}

#[derive(Serialize)]
struct ItemFile<'a> {
    id: &'a str,
    question: &'a str,
    answer: &'a str,
    evidence: Vec<&'a str>,
}

fn stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Check `answers` to reflection `id` and commit them: the reflection into
/// `reflections/ID.toml`, its lessons into `lessons.toml`, one commit by
/// `actor`; then a ledger entry and the store's row. Nothing is written
/// when anything is wrong.
pub fn answer(
    root: &Path,
    db: &Path,
    id: &str,
    answers: &Answers,
    actor: &Actor,
) -> Result<Answered> {
    let sot = crate::sot::load(root)?;
    let mut store = crate::store::open_path(db)?;
    let Some(reflection) = store.reflection(id)? else {
        return Err(ReflectError::Invalid(vec![format!(
            "there is no reflection `{id}` (`maestro reflect` lists the pending ones)"
        )]));
    };
    if let (Some(by), Some(commit)) = (&reflection.answered_by, &reflection.commit) {
        return Err(ReflectError::Invalid(vec![format!(
            "reflection {} was answered by {by} in commit {}",
            reflection.id,
            &commit[..12.min(commit.len())]
        )]));
    }
    let Some(checklist) = sot.checklists.get(&reflection.checklist) else {
        return Err(ReflectError::Invalid(vec![format!(
            "reflection {} belongs to checklist `{}`, which is no longer in the SoT's checklists/",
            reflection.id, reflection.checklist
        )]));
    };
    let (name, key) = match actor {
        Actor::Person { name, key } => (name.as_str(), key.as_str()),
        Actor::Unverified { claimed } => {
            return Err(ReflectError::Denied(format!(
                "a reflection is signed by a proven person, and `{claimed}` is only a typed name (an agent may draft the answers; a person signs them): sign in with MAESTRO_IDENTITY=KEYFILE or a key in your ssh-agent"
            )));
        }
    };
    let person = sot
        .people
        .get(name)
        .ok_or_else(|| ReflectError::Denied(format!("{name} is not in people.toml")))?;
    if !checklist.may_answer(person) {
        return Err(ReflectError::Denied(format!(
            "{name} may not answer {} ({}): it is answered by {}",
            reflection.id,
            checklist.title,
            checklist.answerers()
        )));
    }
    let file = PathBuf::from(REFLECTIONS_DIR).join(format!("{}.toml", reflection.id));
    let repo = crate::sot::git::SotRepo::open(root)?;
    if let Some(committed) = repo.file_at_head(&file) {
        // An earlier answer was committed and stopped before its ledger
        // entry or the store's row: finish that one rather than commit twice.
        let commit = repo.last_change_of(&file).ok_or_else(|| {
            ReflectError::Invalid(vec![format!(
                "{} is in the SoT but no commit of HEAD's history wrote it",
                file.display()
            )])
        })?;
        let text = String::from_utf8_lossy(&committed).into_owned();
        let (lessons, applied) = committed_lessons(&text);
        let in_sot = InSot {
            file,
            text,
            commit,
            lessons,
            applied,
            resumed: true,
        };
        return record(db, &mut *store, actor, name, &reflection, checklist, in_sot);
    }
    // Secrets first: a secret is never echoed back in another message.
    let (scan_path, scan_text) = match &answers.file {
        Some(f) => (f.display_path.clone(), f.text.clone()),
        None => (PathBuf::from("(the typed answers)"), typed_text(answers)),
    };
    let found = crate::sot::secrets::scan_files(root, &[(scan_path, scan_text)]);
    if !found.is_empty() {
        return Err(ReflectError::Diagnostics(found));
    }
    let resolver = Resolver {
        sot: &sot,
        store: &*store,
        ledger: crate::ops::evidence::ledger_place(db),
    };
    let problems = check(&sot, checklist, answers, &resolver);
    if !problems.is_empty() {
        return Err(into_error(problems, answers.file.as_ref()));
    }

    let now = super::now_ms();
    let items: Vec<ItemFile<'_>> = checklist
        .items
        .iter()
        .filter_map(|item| {
            let a = answers.items.get(&item.id)?;
            (!a.text.trim().is_empty() || !a.evidence.is_empty()).then(|| ItemFile {
                id: &item.id,
                question: &item.question,
                answer: a.text.trim(),
                evidence: a.evidence.iter().map(|c| c.value.as_str()).collect(),
            })
        })
        .collect();
    let reflection_file = ReflectionFile {
        id: &reflection.id,
        checklist: &checklist.name,
        title: &checklist.title,
        trigger: &reflection.trigger,
        operation: &reflection.source,
        description: &reflection.description,
        agent: reflection.agent.as_deref(),
        triggered: stamp(reflection.created_ms),
        answered: stamp(now),
        answered_by: name,
        key,
        lessons: answers
            .lessons
            .iter()
            .map(|l| l.id.value.as_str())
            .collect(),
        item: items,
    };
    let text = format!(
        "# Reflection {} on {}, answered by {name}: committed by maestro, recorded in the ledger.\n{}",
        reflection.id,
        checklist.title,
        toml::to_string(&reflection_file)
            .map_err(|e| ReflectError::Invalid(vec![format!("writing the reflection: {e}")]))?
    );
    let intent = Intent {
        reason: format!(
            "{} answered ({}, after {})",
            reflection.id,
            checklist.title,
            one_line(&reflection.description)
        ),
        actor: Some(format!("{} <{}>", person.name, person.email)),
        wait: std::time::Duration::from_secs(10),
    };
    let what = format!("reflect {}", reflection.id);
    let mut tx = Transaction::begin(root, &intent, &what)?;
    // Under the SoT's lock: another answer may have been committed since
    // the checks above (a second terminal, a double submit).
    if store.reflection(id)?.is_some_and(|r| !r.is_pending()) || repo.file_at_head(&file).is_some()
    {
        return Err(ReflectError::Invalid(vec![format!(
            "reflection {} was answered meanwhile (`maestro reflect --all` shows by whom)",
            reflection.id
        )]));
    }
    let mut files = vec![(file.clone(), text.clone())];
    if !answers.lessons.is_empty() {
        let lessons_file = PathBuf::from(LESSONS_FILE);
        let mut lessons_text = tx.read(&lessons_file)?;
        for l in &answers.lessons {
            lessons_text = edit::add(
                &lessons_text,
                Kind::Lesson,
                &l.id.value,
                lesson_fields(l, &reflection.id, name, &stamp(now)),
            )?;
        }
        files.push((lessons_file, lessons_text));
    }
    let committed = tx.commit(files, &what)?;
    // Lessons cited as applied: each a use, evidenced by this reflection.
    let applied: Vec<String> = answers
        .items
        .values()
        .flat_map(|a| &a.evidence)
        .filter_map(|c| c.value.strip_prefix("lesson:"))
        .map(str::to_string)
        .collect();
    let in_sot = InSot {
        file,
        text,
        commit: committed.commit,
        lessons: answers.lessons.iter().map(|l| l.id.value.clone()).collect(),
        applied,
        resumed: false,
    };
    record(db, &mut *store, actor, name, &reflection, checklist, in_sot)
}

/// An answer committed into the SoT, still to be recorded in the ledger
/// and the store.
struct InSot {
    file: PathBuf,
    text: String,
    commit: String,
    lessons: Vec<String>,
    applied: Vec<String>,
    resumed: bool,
}

/// The ledger entry (unless a resumed answer has one already), the lesson
/// uses and the store's row of an answer in the SoT. Each step can be
/// repeated, so an answer interrupted anywhere here is finished by the next
/// `maestro reflect ID`.
fn record(
    db: &Path,
    store: &mut dyn crate::store::Store,
    actor: &Actor,
    name: &str,
    reflection: &Reflection,
    checklist: &Checklist,
    a: InSot,
) -> Result<Answered> {
    let ledger_place = crate::ops::evidence::ledger_place(db);
    let existing = if a.resumed {
        crate::ledger::read(&ledger_place, None)?
            .into_iter()
            .rev()
            .find(|e| {
                e.body.kind == crate::ledger::Kind::Reflection
                    && e.body.inputs.sot_commit.as_deref() == Some(a.commit.as_str())
            })
            .map(|e| e.hash)
    } else {
        None
    };
    let ledger = match existing {
        Some(hash) => hash,
        None => {
            let mut digests = BTreeMap::new();
            digests.insert(
                a.file.display().to_string(),
                crate::ledger::sha256_hex(a.text.as_bytes()),
            );
            record_in_ledger(
                db,
                actor,
                crate::ledger::Kind::Reflection,
                "reflect",
                &reflection.source,
                &format!(
                    "reflect {}: {} after {}",
                    reflection.id,
                    checklist.title,
                    one_line(&reflection.description)
                ),
                &a.commit,
                digests,
            )?
        }
    };
    let now = super::now_ms();
    super::lesson::record_uses(
        &mut *store,
        &a.applied,
        &format!("reflection:{}", reflection.id),
        name,
        now,
    )?;
    store.answer_reflection(
        &reflection.id,
        &AnswerRecord {
            by: name.to_string(),
            at_ms: now,
            commit: a.commit.clone(),
            ledger: ledger.clone(),
        },
    )?;
    Ok(Answered {
        reflection: reflection.id.clone(),
        commit: a.commit,
        ledger,
        file: a.file,
        lessons: a.lessons,
        applied: a.applied,
        resumed: a.resumed,
    })
}

/// The lessons a committed reflection file records and those it cites as
/// applied (`lesson:ID` evidence of its items).
fn committed_lessons(text: &str) -> (Vec<String>, Vec<String>) {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return (Vec::new(), Vec::new());
    };
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let lessons = strings(doc.get("lessons"));
    let applied = doc
        .get("item")
        .and_then(toml::Value::as_array)
        .map(|items| {
            items
                .iter()
                .flat_map(|i| strings(i.get("evidence")))
                .filter_map(|e| e.strip_prefix("lesson:").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (lessons, applied)
}

/// The typed answers as one text for the secret scanner.
fn typed_text(answers: &Answers) -> String {
    let mut out = String::new();
    for (id, a) in &answers.items {
        out.push_str(&format!("[answer.{id}]\ntext = {:?}\n", a.text));
        for c in &a.evidence {
            out.push_str(&format!("evidence = {:?}\n", c.value));
        }
    }
    for l in &answers.lessons {
        out.push_str(&format!(
            "[[lesson]]\nid = {:?}\ntext = {:?}\n",
            l.id.value, l.text
        ));
        for c in &l.evidence {
            out.push_str(&format!("evidence = {:?}\n", c.value));
        }
    }
    out
}

/// An operation's description on one line, without control characters: it
/// came from a command line and goes into commit messages and comments.
pub(crate) fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let words: Vec<&str> = flat.split_whitespace().collect();
    let mut line = words.join(" ");
    if line.chars().count() > 120 {
        line = line.chars().take(119).collect::<String>() + "…";
    }
    line
}

fn lesson_fields<'a>(
    l: &NewLesson,
    reflection: &str,
    by: &str,
    now: &str,
) -> Vec<(&'a str, toml_edit::Value)> {
    let mut scope = toml_edit::InlineTable::new();
    for (k, v) in [
        ("agent", &l.scope.agent),
        ("group", &l.scope.group),
        ("operation", &l.scope.operation),
    ] {
        if let Some(v) = v {
            scope.insert(k, v.as_str().into());
        }
    }
    let evidence: Vec<String> = l.evidence.iter().map(|c| c.value.clone()).collect();
    vec![
        ("text", l.text.trim().into()),
        ("memory", "stm".into()),
        ("scope", toml_edit::Value::InlineTable(scope)),
        ("evidence", edit::string_array(&evidence)),
        ("reflection", reflection.into()),
        ("by", by.into()),
        ("created", now.into()),
    ]
}

/// Every problem with `answers`, in the order a reader meets them.
fn check(sot: &Sot, checklist: &Checklist, answers: &Answers, r: &Resolver<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    for (id, a) in &answers.items {
        if !checklist.items.iter().any(|i| &i.id == id) {
            let hint = crate::diag::suggest(id, checklist.items.iter().map(|i| i.id.as_str()))
                .map(|s| format!("did you mean `{s}`?"));
            out.push(Problem {
                span: a.span.clone(),
                message: format!("{} has no item `{id}`", checklist.title),
                hint: hint.or_else(|| {
                    Some(format!(
                        "its items: {}",
                        checklist
                            .items
                            .iter()
                            .map(|i| i.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }),
            });
        }
    }
    for item in &checklist.items {
        let a = answers.items.get(&item.id);
        let answered = a.is_some_and(|a| !a.text.trim().is_empty());
        if item.required && !answered {
            out.push(Problem {
                span: a.and_then(|a| a.span.clone()),
                message: format!(
                    "`{}` is required and not answered: {}",
                    item.id, item.question
                ),
                hint: Some(format!("[answer.{}] text = \"…\"", item.id)),
            });
        }
        let Some(a) = a else { continue };
        if answered && !item.evidence.is_empty() && a.evidence.is_empty() {
            out.push(Problem {
                span: a.span.clone(),
                message: format!(
                    "the answer to `{}` cites no evidence; it must cite one of: {}",
                    item.id,
                    item.evidence
                        .iter()
                        .map(|k| k.key())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                hint: Some(
                    "evidence = [\"run:ID\"] (maestro runs), [\"rollout:ID\"], [\"ledger:HASH\"] …"
                        .into(),
                ),
            });
        }
        for c in &a.evidence {
            match r.check(&c.value) {
                Ok(kind) if !item.evidence.is_empty() && !item.evidence.contains(&kind) => out
                    .push(Problem {
                        span: c.span.clone(),
                        message: format!(
                            "`{}` answers with {} evidence, and it takes {}",
                            item.id,
                            kind.key(),
                            item.evidence
                                .iter()
                                .map(|k| k.key())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        hint: None,
                    }),
                Ok(_) => {}
                Err(message) => out.push(Problem {
                    span: c.span.clone(),
                    message,
                    hint: None,
                }),
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for l in &answers.lessons {
        let id = &l.id.value;
        let ok_name = !id.is_empty()
            && id.len() <= 63
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if !ok_name {
            out.push(Problem {
                span: l.id.span.clone().or(l.span.clone()),
                message: format!("`{id}` is not a lesson id"),
                hint: Some("1-63 lowercase letters, digits and `-`".into()),
            });
        } else if sot.lessons.contains_key(id) || !seen.insert(id.clone()) {
            out.push(Problem {
                span: l.id.span.clone(),
                message: format!("lesson `{id}` exists already"),
                hint: Some("give the new lesson its own id".into()),
            });
        }
        if l.text.trim().is_empty() {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}` has no text"),
                hint: None,
            });
        }
        if l.scope.is_empty() {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}` has no scope: say which agent, group or kind of operation it is for"),
                hint: Some("scope = { agent = \"AGENT\", operation = \"deploy\" }".into()),
            });
        }
        if let Some(a) = &l.scope.agent
            && !sot.agents.contains_key(a)
        {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}`: there is no agent `{a}`"),
                hint: None,
            });
        }
        if let Some(g) = &l.scope.group
            && !sot.groups.contains_key(g)
        {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}`: there is no group `{g}`"),
                hint: None,
            });
        }
        if let Some(o) = &l.scope.operation
            && !crate::policy::ACTIONS.iter().any(|(a, _)| a == o)
        {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}`: `{o}` is not a kind of operation"),
                hint: Some(format!(
                    "one of {}",
                    crate::policy::ACTIONS
                        .iter()
                        .map(|(a, _)| *a)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
        if l.evidence.is_empty() {
            out.push(Problem {
                span: l.span.clone(),
                message: format!("lesson `{id}` cites no evidence: what was it learned from?"),
                hint: Some("evidence = [\"rollout:ID\"]".into()),
            });
        }
        for c in &l.evidence {
            if let Err(message) = r.check(&c.value) {
                out.push(Problem {
                    span: c.span.clone(),
                    message,
                    hint: None,
                });
            }
        }
    }
    out
}

fn into_error(problems: Vec<Problem>, file: Option<&SourceFile>) -> ReflectError {
    match file {
        Some(f) => ReflectError::Diagnostics(Diagnostics(
            problems
                .into_iter()
                .map(|p| {
                    let span = p.span.unwrap_or(0..0);
                    let mut d = f.diagnostic(Code::BadValue, span, p.message);
                    d.hint = p.hint;
                    d
                })
                .collect(),
        )),
        None => ReflectError::Invalid(problems.into_iter().map(|p| p.message).collect()),
    }
}

/// Append an entry about a SoT commit maestro made for reflection (an
/// answer, a promotion) and return its hash.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_in_ledger(
    db: &Path,
    actor: &Actor,
    kind: crate::ledger::Kind,
    action: &str,
    target: &str,
    description: &str,
    commit: &str,
    digests: BTreeMap<String, String>,
) -> Result<String> {
    let record = crate::ledger::Record {
        kind,
        actor: crate::ops::evidence::ledger_actor(actor),
        action: action.to_string(),
        target: target.to_string(),
        description: description.to_string(),
        inputs: crate::ledger::Inputs {
            sot_commit: Some(commit.to_string()),
            digests,
            ..Default::default()
        },
        decision: "committed".into(),
        ..Default::default()
    };
    let mut l = crate::ledger::Ledger::open(&crate::ops::evidence::ledger_place(db))?;
    let entry = l.append(record)?;
    l.sync()?;
    Ok(entry.hash)
}

/// The pending reflection `id` with its checklist (for the faces' forms).
pub fn pending<'s>(
    sot: &'s Sot,
    store: &dyn Store,
    id: &str,
) -> Result<(Reflection, &'s Checklist)> {
    let r = store.reflection(id)?.ok_or_else(|| {
        ReflectError::Invalid(vec![format!(
            "there is no reflection `{id}` (`maestro reflect` lists the pending ones)"
        )])
    })?;
    let c = sot.checklists.get(&r.checklist).ok_or_else(|| {
        ReflectError::Invalid(vec![format!(
            "checklist `{}` is no longer in the SoT",
            r.checklist
        )])
    })?;
    Ok((r, c))
}
