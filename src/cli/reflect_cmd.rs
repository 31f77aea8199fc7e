//! `maestro reflect [ID]`, `maestro reflect stats` and `maestro lesson
//! list|promote`: the headless face of [`crate::reflect`].

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::fleet_cmd::{InvalidInput, identity, load_source};
use super::out;
use super::printer::sanitize;
use crate::exit::Exit;
use crate::reflect::answer::{Cited, ItemAnswer};
use crate::reflect::{self, Answers};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReflectArgs {
    #[command(subcommand)]
    pub command: Option<ReflectCommand>,
    /// The reflection to answer (none: list the pending ones)
    pub id: Option<String>,
    /// The answers as TOML (`--template` writes one to fill in)
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,
    /// Print an answers file for the reflection, its questions as comments
    #[arg(long)]
    pub template: bool,
    /// With no ID: answered reflections too
    #[arg(long)]
    pub all: bool,
}

#[derive(Subcommand, Debug)]
pub enum ReflectCommand {
    /// Adoption (answered / triggered, per checklist), time to answer, lessons in STM and LTM
    Stats {
        /// Only reflections triggered in this window (`30d`, `12h`)
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum LessonCommand {
    /// Every lesson: memory, scope, evidenced uses, whether it can be promoted or should retire
    List,
    /// Move a lesson with three evidenced uses to long-term memory (a reviewed, policy-checked commit)
    Promote {
        id: String,
        /// Why it is promoted (the commit message)
        #[arg(long)]
        reason: String,
    },
}

fn age(ms: i64) -> String {
    let s = (reflect::now_ms() - ms).max(0) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn reflect(root: &Path, db: &Path, args: ReflectArgs, json: bool) -> anyhow::Result<Exit> {
    if let Some(ReflectCommand::Stats { since }) = args.command {
        return stats(root, db, since.as_deref(), json);
    }
    let Some(id) = args.id else {
        return list(root, db, args.all, json);
    };
    let source = load_source(root)?;
    let store = crate::store::open_path(db)?;
    let (reflection, checklist) = reflect::answer::pending(&source.sot, &*store, &id)?;
    if args.template {
        out!("{}", Answers::template(checklist, &reflection).trim_end());
        return Ok(Exit::Ok);
    }
    let answers = match &args.answers {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| InvalidInput(format!("{}: {e}", path.display())))?;
            Answers::parse(path, text).map_err(reflect::ReflectError::Diagnostics)?
        }
        None if std::io::stdin().is_terminal() => ask(checklist, &reflection)?,
        None => {
            return Err(InvalidInput(format!(
                "no terminal to ask the questions on: answer with --answers FILE (`maestro reflect {} --template > FILE` writes one to fill in)",
                reflection.id
            ))
            .into());
        }
    };
    drop(store);
    let done = reflect::answer::answer(root, db, &reflection.id, &answers, &identity())?;
    if json {
        out!(
            "{}",
            json!({"event": "reflection_answered", "answered": done})
        );
    } else {
        out!("{}", done.summary());
        for l in &done.lessons {
            out!("lesson {l} recorded (short-term memory)");
        }
        for l in &done.applied {
            out!("lesson {l} applied: one more use");
        }
    }
    Ok(Exit::Ok)
}

/// The questions asked one by one on the terminal.
fn ask(
    checklist: &reflect::Checklist,
    reflection: &crate::store::Reflection,
) -> anyhow::Result<Answers> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut read = |prompt: &str| -> anyhow::Result<String> {
        print!("{prompt}");
        std::io::stdout().flush()?;
        Ok(lines.next().transpose()?.unwrap_or_default())
    };
    println!(
        "{} — {} after {}",
        reflection.id,
        checklist.title,
        sanitize(reflection.description.as_bytes())
    );
    println!(
        "Evidence is KIND:VALUE, space-separated (run:ID rollout:ID ledger:HASH commit:REV file:PATH url:URL lesson:ID)."
    );
    let mut answers = Answers::default();
    for item in &checklist.items {
        println!(
            "\n{}{}",
            item.question,
            if item.required { " (required)" } else { "" }
        );
        let text = read("> ")?;
        let evidence = if item.evidence.is_empty() {
            String::new()
        } else {
            let kinds: Vec<&str> = item.evidence.iter().map(|k| k.key()).collect();
            read(&format!("evidence ({}): ", kinds.join(", ")))?
        };
        answers.items.insert(
            item.id.clone(),
            ItemAnswer {
                text,
                evidence: evidence.split_whitespace().map(Cited::new).collect(),
                span: None,
            },
        );
    }
    Ok(answers)
}

fn list(root: &Path, db: &Path, all: bool, json: bool) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let store = crate::store::open_path(db)?;
    let rows = store.reflections(!all)?;
    if json {
        for r in &rows {
            out!("{}", json!({"event": "reflection", "reflection": r}));
        }
        return Ok(Exit::Ok);
    }
    if rows.is_empty() {
        out!(
            "no {}reflections ({} checklists in the SoT)",
            if all { "" } else { "pending " },
            source.sot.checklists.len()
        );
        return Ok(Exit::Ok);
    }
    out!(
        "{:15} {:18} {:17} {:14} {:>5}  {:9}  OPERATION",
        "ID",
        "CHECKLIST",
        "TRIGGER",
        "AGENT",
        "AGE",
        "STATE"
    );
    for r in &rows {
        out!(
            "{:15} {:18} {:17} {:14} {:>5}  {:9}  {}",
            r.id,
            r.checklist,
            r.trigger,
            sanitize(r.agent.as_deref().unwrap_or("-").as_bytes()),
            age(r.created_ms),
            match &r.answered_by {
                Some(by) => sanitize(by.as_bytes()),
                None => "pending".into(),
            },
            sanitize(r.description.as_bytes())
        );
    }
    Ok(Exit::Ok)
}

fn stats(root: &Path, db: &Path, since: Option<&str>, json: bool) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let since_ms = since
        .map(|s| {
            crate::freeze::parse_duration(s)
                .map(|d| reflect::now_ms() - d.num_milliseconds())
                .map_err(|e| InvalidInput(format!("--since: {e}")))
        })
        .transpose()?;
    let store = crate::store::open_path(db)?;
    let s = reflect::stats::compute(&source.sot, &store.reflections(false)?, since_ms);
    if json {
        out!("{}", json!({"event": "reflect_stats", "stats": s}));
        return Ok(Exit::Ok);
    }
    out!("{}", render_stats(&s));
    Ok(Exit::Ok)
}

/// `reflect stats` as text.
pub fn render_stats(s: &reflect::Stats) -> String {
    let pct = |p: Option<f64>| p.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "-".into());
    let mut t = format!(
        "adoption {} ({} answered of {} triggered, {} pending; target {:.0}%)\n",
        pct(s.adoption_percent),
        s.answered,
        s.triggered,
        s.pending,
        s.target_percent
    );
    for c in &s.checklists {
        t.push_str(&format!(
            "  {:24} {:>6}  {} of {}\n",
            c.checklist,
            pct(c.adoption_percent),
            c.answered,
            c.triggered
        ));
    }
    match &s.time_to_answer {
        Some(a) => t.push_str(&format!(
            "time to answer: median {}, mean {}, max {}\n",
            crate::rollout::spec::human_ms(a.median_ms.max(0) as u64),
            crate::rollout::spec::human_ms(a.mean_ms.max(0) as u64),
            crate::rollout::spec::human_ms(a.max_ms.max(0) as u64)
        )),
        None => t.push_str("time to answer: nothing answered yet\n"),
    }
    t.push_str(&format!(
        "lessons: {} in short-term memory, {} in long-term memory",
        s.lessons_stm, s.lessons_ltm
    ));
    if !s.uses_before_promotion.is_empty() {
        let uses: Vec<String> = s
            .uses_before_promotion
            .iter()
            .map(|(l, n)| format!("{l} {n}"))
            .collect();
        t.push_str(&format!("\nuses before promotion: {}", uses.join(", ")));
    }
    t
}

pub fn lesson(root: &Path, db: &Path, cmd: LessonCommand, json: bool) -> anyhow::Result<Exit> {
    match cmd {
        LessonCommand::List => {
            let source = load_source(root)?;
            let store = crate::store::open_path(db)?;
            let all = reflect::lesson::statuses(&source.sot, &*store, reflect::now_ms())?;
            if json {
                for l in &all {
                    out!("{}", json!({"event": "lesson", "lesson": l}));
                }
                return Ok(Exit::Ok);
            }
            if all.is_empty() {
                out!("no lessons in {}", reflect::LESSONS_FILE);
                return Ok(Exit::Ok);
            }
            out!(
                "{:28} {:4} {:>4}  {:10} {:32} TEXT",
                "LESSON",
                "MEM",
                "USES",
                "STATE",
                "SCOPE"
            );
            for l in &all {
                let state = if l.promotable {
                    "promotable"
                } else if l.retire {
                    "retire?"
                } else {
                    ""
                };
                out!(
                    "{:28} {:4} {:>4}  {:10} {:32} {}",
                    l.lesson.id,
                    l.lesson.memory.as_str(),
                    l.uses,
                    state,
                    sanitize(l.lesson.scope.describe().as_bytes()),
                    sanitize(l.lesson.text.as_bytes())
                );
            }
            Ok(Exit::Ok)
        }
        LessonCommand::Promote { id, reason } => {
            load_source(root)?;
            let done = reflect::lesson::promote(root, db, &id, &identity(), &reason)?;
            if json {
                out!("{}", json!({"event": "lesson_promoted", "promoted": done}));
            } else {
                out!(
                    "lesson {} promoted to long-term memory after {} uses: commit {}, ledger entry {}",
                    done.lesson,
                    done.uses,
                    &done.commit[..12.min(done.commit.len())],
                    &done.ledger[..12.min(done.ledger.len())]
                );
            }
            Ok(Exit::Ok)
        }
    }
}
