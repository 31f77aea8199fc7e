use std::path::{Path, PathBuf};

use super::answer::{Cited, ItemAnswer};
use super::*;
use crate::identity::Actor;
use crate::store::{AnswerRecord, NewReflection, ReflectionStore, SqliteStore};

/// The example SoT with some files replaced or added (paths relative to it).
fn example_with(files: &[(&str, &str)]) -> std::result::Result<Sot, crate::sot::SotError> {
    let overrides = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_string()))
        .collect();
    crate::sot::load_with(Path::new("sot"), &overrides)
}

fn diagnostics(e: crate::sot::SotError) -> Vec<String> {
    match e {
        crate::sot::SotError::Invalid(d) => d
            .iter()
            .map(|d| format!("{}:{}:{} {}", d.file.display(), d.line, d.col, d.message))
            .collect(),
        other => panic!("not diagnostics: {other}"),
    }
}

#[test]
fn the_example_checklist_loads_with_its_triggers_items_and_answerers() {
    let sot = example_with(&[]).unwrap();
    let c = &sot.checklists["law-reflect-001"];
    assert!(c.title.starts_with("LAW-REFLECT-001"));
    assert!(c.on.rollout_aborted && c.on.failed_nodes && c.on.kill_engaged);
    assert!(!c.on.rollout_completed);
    assert_eq!(c.on.audit_below, Some(80.0));
    assert_eq!(c.on.deploy_autonomy, Some(Autonomy(4)));
    assert!(c.block_rollouts);
    assert_eq!(c.items.len(), 7);
    assert!(!c.items.last().unwrap().required);
    assert_eq!(c.teams, ["platform", "team-sre"]);
    assert!(c.may_answer(&sot.people["ada"]));
    assert!(!c.may_answer(&sot.people["linus"]));
}

#[test]
fn a_checklist_with_an_unknown_trigger_team_or_evidence_is_located() {
    let bad = "[checklist.review]\ntitle = \"Review\"\nteams = [\"platfrom\"]\n\n\
               [checklist.review.on]\nrollout_abort = true\n\n\
               [[checklist.review.item]]\nid = \"what\"\nquestion = \"What?\"\nevidence = [\"ticket\"]\n";
    let d = diagnostics(example_with(&[("checklists/review.toml", bad)]).unwrap_err());
    let all = d.join("\n");
    assert!(
        all.contains("checklists/review.toml:6:1 unknown key `rollout_abort`"),
        "{all}"
    );
    assert!(
        all.contains("checklists/review.toml:3:10 checklist `review` names team `platfrom`"),
        "{all}"
    );
    assert!(
        all.contains("checklists/review.toml:11:13 `ticket` is not a kind of evidence"),
        "{all}"
    );
}

#[test]
fn thresholds_decide_which_operations_trigger() {
    let sot = example_with(&[]).unwrap();
    let on = &sot.checklists["law-reflect-001"].on;
    let op = |trigger, measure| Operation {
        trigger,
        source: "run:r1".into(),
        agent: None,
        description: "d".into(),
        measure,
    };
    assert!(on.matches(&op(Trigger::AuditBelow, Some(79.9))));
    assert!(!on.matches(&op(Trigger::AuditBelow, Some(80.0))));
    assert!(on.matches(&op(Trigger::DeployAutonomy, Some(4.0))));
    assert!(!on.matches(&op(Trigger::DeployAutonomy, Some(3.0))));
    assert!(!on.matches(&op(Trigger::RolloutCompleted, None)));
    assert!(on.matches(&op(Trigger::RolloutAborted, None)));
}

fn store() -> (tempfile::TempDir, SqliteStore) {
    let tmp = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&tmp.path().join("runs.db")).unwrap();
    (tmp, s)
}

#[test]
fn one_operation_makes_one_reflection_per_checklist_however_often_it_fires() {
    let sot = example_with(&[]).unwrap();
    let (_tmp, mut s) = store();
    let op = Operation {
        trigger: Trigger::RolloutAborted,
        source: "rollout:ro-1".into(),
        agent: Some("fleet-doctor".into()),
        description: "rollout ro-1 aborted".into(),
        measure: None,
    };
    let made = fire(&sot, &mut s, std::slice::from_ref(&op), 1_000).unwrap();
    assert_eq!(made.len(), 1);
    assert!(fire(&sot, &mut s, &[op], 2_000).unwrap().is_empty());
    let blocking = blocking_rollout(&sot, &s, "fleet-doctor").unwrap().unwrap();
    assert_eq!(blocking.id, made[0].id);
    assert!(blocking_rollout(&sot, &s, "sql-pilot").unwrap().is_none());
    let refusal = blocking_refusal(&sot, &blocking);
    assert_eq!(refusal.class.exit(), crate::exit::Exit::Blocked);
    assert!(refusal.reasons[0].contains(&made[0].id), "{refusal:?}");
}

/// A scripted sequence of triggers and answers, and the figures it must give.
#[test]
fn stats_match_a_scripted_sequence_exactly() {
    let sot = example_with(&[(
        "checklists/release.toml",
        "[checklist.release]\ntitle = \"Release retro\"\n[checklist.release.on]\nrollout_completed = true\n\
         [[checklist.release.item]]\nid = \"notes\"\nquestion = \"Notes?\"\n",
    )])
    .unwrap();
    let (_tmp, mut s) = store();
    const MIN: i64 = 60_000;
    let mut add = |id: &str, checklist: &str, at: i64| {
        s.add_reflection(&NewReflection {
            id: id.into(),
            checklist: checklist.into(),
            trigger: "rollout_aborted".into(),
            source: format!("rollout:{id}"),
            agent: Some("fleet-doctor".into()),
            description: "d".into(),
            created_ms: at,
        })
        .unwrap()
        .unwrap();
    };
    // Five reviews and three release retros; one review is before the window.
    add("r1", "law-reflect-001", 0);
    add("r2", "law-reflect-001", 100 * MIN);
    add("r3", "law-reflect-001", 110 * MIN);
    add("r4", "law-reflect-001", 120 * MIN);
    add("r5", "law-reflect-001", 130 * MIN);
    add("q1", "release", 100 * MIN);
    add("q2", "release", 105 * MIN);
    add("q3", "release", 140 * MIN);
    let answer = |s: &mut SqliteStore, id: &str, at: i64| {
        s.answer_reflection(
            id,
            &AnswerRecord {
                by: "ada".into(),
                at_ms: at,
                commit: "c".into(),
                ledger: "l".into(),
            },
        )
        .unwrap()
    };
    answer(&mut s, "r1", 10 * MIN); // 10 min, outside the window
    answer(&mut s, "r2", 130 * MIN); // 30 min
    answer(&mut s, "r3", 120 * MIN); // 10 min
    answer(&mut s, "r5", 190 * MIN); // 60 min
    answer(&mut s, "q1", 120 * MIN); // 20 min
    // Answering twice is refused.
    assert!(
        s.answer_reflection(
            "r2",
            &AnswerRecord {
                by: "b".into(),
                at_ms: 1,
                commit: "c".into(),
                ledger: "l".into()
            }
        )
        .is_err()
    );
    let all = s.reflections(false).unwrap();
    let w = stats::compute(&sot, &all, Some(50 * MIN));
    assert_eq!((w.triggered, w.answered, w.pending), (7, 4, 3));
    assert_eq!(w.adoption_percent, Some(57.1));
    let by: Vec<(&str, usize, usize, Option<f64>)> = w
        .checklists
        .iter()
        .map(|c| {
            (
                c.checklist.as_str(),
                c.triggered,
                c.answered,
                c.adoption_percent,
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("law-reflect-001", 4, 3, Some(75.0)),
            ("release", 3, 1, Some(33.3))
        ]
    );
    let t = w.time_to_answer.unwrap();
    // 10, 20, 30, 60 minutes.
    assert_eq!(
        (t.median_ms, t.mean_ms, t.max_ms),
        (25 * MIN, 30 * MIN, 60 * MIN)
    );
    let everything = stats::compute(&sot, &all, None);
    assert_eq!((everything.triggered, everything.answered), (8, 5));
    assert_eq!(everything.adoption_percent, Some(62.5));
    assert_eq!(everything.time_to_answer.unwrap().median_ms, 20 * MIN);
}

/// A git SoT made from the example, with a run store beside it.
struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    db: PathBuf,
}

fn scratch() -> Scratch {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sot");
    let actor = crate::sot::git::Actor::new("Test", "test@example.org").unwrap();
    crate::sot::git::init_repo(&root, &crate::sot::example::scaffold("t"), &actor, "init").unwrap();
    let db = tmp.path().join("runs.db");
    Scratch {
        _tmp: tmp,
        root,
        db,
    }
}

fn ada() -> Actor {
    Actor::Person {
        name: "ada".into(),
        key: "SHA256:test".into(),
    }
}

fn pending(s: &Scratch) -> crate::store::Reflection {
    let sot = crate::sot::load(&s.root).unwrap();
    let mut store = SqliteStore::open(&s.db).unwrap();
    let op = Operation {
        trigger: Trigger::RolloutAborted,
        source: "rollout:ro-test".into(),
        agent: Some("fleet-doctor".into()),
        description: "rollout ro-test aborted".into(),
        measure: None,
    };
    fire(&sot, &mut store, &[op], now_ms()).unwrap().remove(0)
}

fn answers(s: &Scratch, evidence: &str) -> Answers {
    let head = crate::sot::git::SotRepo::open(&s.root)
        .unwrap()
        .head()
        .unwrap();
    let mut a = Answers::default();
    for (id, text) in [
        (
            "what-happened",
            "the canary's error rate rose past its gate",
        ),
        ("impact", "one node served errors for a minute"),
        ("detection", "the analysis gate, 40 s after the deploy"),
        ("response", "maestro rolled back by itself"),
        ("keep", "small first steps"),
        ("change", "raise min_requests"),
    ] {
        let ev = match id {
            "keep" => Vec::new(),
            "change" => vec![Cited::new("file:agents.toml")],
            "impact" => vec![Cited::new("https://status.example.org/incidents/7")],
            "response" => vec![Cited::new(format!("commit:{head}"))],
            _ => vec![Cited::new(evidence)],
        };
        a.items.insert(
            id.into(),
            ItemAnswer {
                text: text.into(),
                evidence: ev,
                span: None,
            },
        );
    }
    a
}

#[test]
fn an_answer_citing_a_run_that_does_not_exist_is_refused_and_nothing_is_committed() {
    let s = scratch();
    let r = pending(&s);
    let head = crate::sot::git::SotRepo::open(&s.root).unwrap().head();
    let e = answer::answer(&s.root, &s.db, &r.id, &answers(&s, "run:r-nope"), &ada()).unwrap_err();
    assert_eq!(e.exit(), crate::exit::Exit::InvalidInput);
    assert!(e.to_string().contains("there is no run `r-nope`"), "{e}");
    assert_eq!(
        crate::sot::git::SotRepo::open(&s.root).unwrap().head(),
        head
    );
    let store = SqliteStore::open(&s.db).unwrap();
    assert!(store.reflection(&r.id).unwrap().unwrap().is_pending());
}

#[test]
fn a_missing_required_answer_a_wrong_kind_of_evidence_and_a_typed_name_are_refused() {
    let s = scratch();
    let r = pending(&s);
    let mut a = answers(&s, "url:https://tickets.example.org/INC-7");
    a.items.remove("impact");
    a.items.get_mut("change").unwrap().evidence = vec![Cited::new("url:not a url")];
    let head = crate::sot::git::SotRepo::open(&s.root)
        .unwrap()
        .head()
        .unwrap();
    a.items.get_mut("detection").unwrap().evidence = vec![Cited::new(format!("commit:{head}"))];
    let e = answer::answer(&s.root, &s.db, &r.id, &a, &ada()).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("`impact` is required and not answered"),
        "{text}"
    );
    assert!(
        text.contains("`url:not a url` is not an http or https URL")
            || text.contains("is not an http or https URL"),
        "{text}"
    );
    assert!(
        text.contains("`detection` answers with commit evidence"),
        "{text}"
    );
    let e = answer::answer(
        &s.root,
        &s.db,
        &r.id,
        &answers(&s, "url:https://x.example"),
        &Actor::unverified("ada"),
    )
    .unwrap_err();
    assert_eq!(e.exit(), crate::exit::Exit::PolicyDenied);
    let linus = Actor::Person {
        name: "linus".into(),
        key: "k".into(),
    };
    let e = answer::answer(
        &s.root,
        &s.db,
        &r.id,
        &answers(&s, "url:https://x.example"),
        &linus,
    )
    .unwrap_err();
    assert!(e.to_string().contains("teams platform, team-sre"), "{e}");
}

#[test]
fn an_answers_file_with_an_api_key_is_refused_by_the_scanner_with_its_location() {
    let s = scratch();
    let r = pending(&s);
    let key = format!(
        "sk-ant-api03-{}AA",
        "x7Kq2mZ9pL4vR8tW1nB6cY3dF5gH0jS".repeat(3)
    );
    let text = format!(
        "[answer.what-happened]\ntext = \"we rotated {key}\"\nevidence = [\"url:https://x.example\"]\n"
    );
    let path = s.root.parent().unwrap().join("answers.toml");
    let a = Answers::parse(&path, text).unwrap();
    let e = answer::answer(&s.root, &s.db, &r.id, &a, &ada()).unwrap_err();
    assert_eq!(e.exit(), crate::exit::Exit::InvalidInput);
    let crate::reflect::ReflectError::Diagnostics(d) = &e else {
        panic!("{e}")
    };
    let d = d.iter().next().unwrap();
    assert_eq!((d.line, d.code), (2, crate::diag::Code::Secret), "{d:?}");
    assert!(!e.to_string().contains(&key), "{e}");
}

#[test]
fn an_answer_with_evidence_commits_one_reflection_and_one_ledger_entry_and_records_lessons() {
    let s = scratch();
    let r = pending(&s);
    // A ledger entry to cite.
    let hash = answer::record_in_ledger(
        &s.db,
        &ada(),
        crate::ledger::Kind::Job,
        "exec",
        "n1",
        "exec n1",
        "c0",
        Default::default(),
    )
    .unwrap();
    let mut a = answers(&s, &format!("ledger:{}", &hash[..16]));
    a.lessons.push(answer::NewLesson {
        id: Cited::new("raise-min-requests"),
        text: "gate on at least 50 requests".into(),
        scope: LessonScope {
            agent: Some("fleet-doctor".into()),
            group: None,
            operation: Some("deploy".into()),
        },
        evidence: vec![Cited::new("file:agents.toml")],
        span: None,
    });
    let before = crate::ledger::read(&crate::ops::evidence::ledger_place(&s.db), None)
        .unwrap()
        .len();
    let done = answer::answer(&s.root, &s.db, &r.id, &a, &ada()).unwrap();
    let repo = crate::sot::git::SotRepo::open(&s.root).unwrap();
    assert_eq!(repo.head().as_deref(), Some(done.commit.as_str()));
    let log = repo.log(2).unwrap();
    assert!(
        log[0].summary.contains(&format!("reflect {}", r.id)),
        "{:?}",
        log[0]
    );
    let file = std::fs::read_to_string(s.root.join(&done.file)).unwrap();
    assert!(
        file.contains("the canary's error rate rose past its gate"),
        "{file}"
    );
    assert!(file.contains("answered_by = \"ada\""), "{file}");
    let entries = crate::ledger::read(&crate::ops::evidence::ledger_place(&s.db), None).unwrap();
    assert_eq!(entries.len(), before + 1);
    let last = entries.last().unwrap();
    assert_eq!(last.hash, done.ledger);
    assert_eq!(
        last.body.inputs.sot_commit.as_deref(),
        Some(done.commit.as_str())
    );
    let sot = crate::sot::load(&s.root).unwrap();
    let lesson = &sot.lessons["raise-min-requests"];
    assert_eq!(lesson.memory, Memory::Stm);
    assert_eq!(lesson.reflection.as_deref(), Some(r.id.as_str()));
    let store = SqliteStore::open(&s.db).unwrap();
    let row = store.reflection(&r.id).unwrap().unwrap();
    assert_eq!(row.commit.as_deref(), Some(done.commit.as_str()));
    // Answered once: a second answer is refused.
    let again = answer::answer(
        &s.root,
        &s.db,
        &r.id,
        &answers(&s, "url:https://x.example"),
        &ada(),
    )
    .unwrap_err();
    assert!(again.to_string().contains("was answered by ada"), "{again}");
    // An edited ledger entry no longer resolves as evidence.
    let path = s.db.with_file_name(crate::ledger::FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("exec n1", "exec n2", 1)).unwrap();
    let resolver = answer::Resolver {
        sot: &sot,
        store: &store,
        ledger: crate::ledger::Place::File(path),
    };
    let e = resolver
        .check(&format!("ledger:{}", &hash[..16]))
        .unwrap_err();
    assert!(e.contains("does not verify"), "{e}");
}

#[test]
fn promoting_a_lesson_about_production_nodes_is_for_the_teams_the_policies_name() {
    let sot = example_with(&[]).unwrap();
    let lesson = Lesson {
        id: "drain-first".into(),
        text: "drain the node from the gateway first".into(),
        memory: Memory::Stm,
        scope: LessonScope {
            agent: None,
            group: Some("gpu".into()),
            operation: Some("exec".into()),
        },
        evidence: vec!["run:r1".into()],
        reflection: None,
        by: None,
        created: None,
        promoted: None,
    };
    let person = |name: &str| Actor::Person {
        name: name.into(),
        key: "k".into(),
    };
    // The gpu nodes are production: the platform team changes what their
    // operations are shown; another team may not.
    lesson::check_policy(&sot, &lesson, &person("ada")).unwrap();
    let e = lesson::check_policy(&sot, &lesson, &person("linus")).unwrap_err();
    assert_eq!(e.exit(), crate::exit::Exit::PolicyDenied);
    assert!(
        e.to_string()
            .contains("may not promote lesson `drain-first`"),
        "{e}"
    );
}

#[test]
fn typed_answers_with_an_api_key_are_refused_before_any_other_message() {
    let s = scratch();
    let r = pending(&s);
    let key = format!(
        "sk-ant-api03-{}AA",
        "x7Kq2mZ9pL4vR8tW1nB6cY3dF5gH0jS".repeat(3)
    );
    // Typed (the terminal, the console): no file, and a bogus run as well,
    // whose message would otherwise quote the answer.
    let mut a = answers(&s, &format!("run:{key}"));
    a.items.get_mut("keep").unwrap().text = format!("we rotated {key}");
    let head = crate::sot::git::SotRepo::open(&s.root).unwrap().head();
    let e = answer::answer(&s.root, &s.db, &r.id, &a, &ada()).unwrap_err();
    assert!(
        matches!(e, crate::reflect::ReflectError::Diagnostics(_)),
        "{e}"
    );
    assert!(!e.to_string().contains(&key), "{e}");
    assert_eq!(
        crate::sot::git::SotRepo::open(&s.root).unwrap().head(),
        head
    );
}

#[test]
fn evidence_names_one_thing_for_good_and_only_what_git_tracks() {
    let s = scratch();
    let sot = crate::sot::load(&s.root).unwrap();
    let store = SqliteStore::open(&s.db).unwrap();
    let head = crate::sot::git::SotRepo::open(&s.root)
        .unwrap()
        .head()
        .unwrap();
    let resolver = answer::Resolver {
        sot: &sot,
        store: &store,
        ledger: crate::ops::evidence::ledger_place(&s.db),
    };
    assert!(resolver.check(&format!("commit:{head}")).is_ok());
    assert!(resolver.check(&format!("commit:{}", &head[..10])).is_ok());
    let e = resolver.check("commit:HEAD").unwrap_err();
    assert!(e.contains("not a commit id"), "{e}");
    assert!(resolver.check("commit:main").is_err());
    assert!(resolver.check("file:agents.toml").is_ok());
    // Untracked, and a committed link out of the SoT: neither is evidence.
    std::fs::write(s.root.join("notes.md"), "draft").unwrap();
    let e = resolver.check("file:notes.md").unwrap_err();
    assert!(e.contains("committed"), "{e}");
    std::os::unix::fs::symlink("/etc", s.root.join("host-etc")).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(&s.root)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.org"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["add", "host-etc"]);
    git(&["commit", "-qm", "a link"]);
    assert!(resolver.check("file:host-etc/hostname").is_err());
    assert!(resolver.check("file:host-etc").is_err());
    assert!(resolver.check("run:last").is_err());
}

#[test]
fn an_answer_interrupted_after_its_commit_is_finished_by_the_next_and_not_committed_again() {
    let s = scratch();
    let r = pending(&s);
    // The ledger cannot be written (a directory stands where its file goes):
    // the commit is made, then the answer stops.
    let ledger = s.db.with_file_name(crate::ledger::FILE);
    std::fs::create_dir_all(&ledger).unwrap();
    let first = answers(&s, "url:https://tickets.example.org/INC-7");
    let e = answer::answer(&s.root, &s.db, &r.id, &first, &ada()).unwrap_err();
    assert!(matches!(e, crate::reflect::ReflectError::Ledger(_)), "{e}");
    let repo = crate::sot::git::SotRepo::open(&s.root).unwrap();
    let committed = repo.head().unwrap();
    assert!(repo.log(1).unwrap()[0].summary.contains(&r.id));
    let store = SqliteStore::open(&s.db).unwrap();
    assert!(store.reflection(&r.id).unwrap().unwrap().is_pending());

    // Fixed; the next answer finishes the committed one.
    std::fs::remove_dir(&ledger).unwrap();
    let mut second = answers(&s, "url:https://tickets.example.org/INC-8");
    second.items.get_mut("keep").unwrap().text = "something else".into();
    let done = answer::answer(&s.root, &s.db, &r.id, &second, &ada()).unwrap();
    assert!(done.resumed);
    assert_eq!(done.commit, committed);
    assert_eq!(
        repo.head().as_deref(),
        Some(committed.as_str()),
        "no second commit"
    );
    let entries = crate::ledger::read(&crate::ledger::Place::File(ledger), None).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].body.kind, crate::ledger::Kind::Reflection);
    assert_eq!(
        entries[0].body.inputs.sot_commit.as_deref(),
        Some(committed.as_str())
    );
    let row = store.reflection(&r.id).unwrap().unwrap();
    assert_eq!(row.commit.as_deref(), Some(committed.as_str()));
    assert_eq!(row.ledger.as_deref(), Some(done.ledger.as_str()));
    let text = std::fs::read_to_string(s.root.join(&done.file)).unwrap();
    assert!(text.contains("INC-7") && !text.contains("INC-8"), "{text}");
    // And then it is answered: once more is refused.
    let again = answer::answer(&s.root, &s.db, &r.id, &second, &ada()).unwrap_err();
    assert!(again.to_string().contains("was answered by ada"), "{again}");
}
