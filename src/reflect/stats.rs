//! `maestro reflect stats`: reflection adoption (answered over triggered,
//! overall and per checklist, for the reflections triggered in a window),
//! time to answer, and the lessons in short- and long-term memory with the
//! uses each promoted lesson had when it was promoted. Seed 002 sets the
//! target: at least 95% of reflections answered.

use serde::Serialize;

use super::lesson::Memory;
use crate::sot::model::Sot;
use crate::store::Reflection;

/// The adoption seed 002 asks for, percent.
pub const TARGET_PERCENT: f64 = 95.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChecklistStats {
    pub checklist: String,
    pub triggered: usize,
    pub answered: usize,
    pub adoption_percent: Option<f64>,
}

/// Time from trigger to answer over the answered reflections.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerTimes {
    pub median_ms: i64,
    pub mean_ms: i64,
    pub max_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Reflections triggered at or after this time count (none: all).
    pub since_ms: Option<i64>,
    pub triggered: usize,
    pub answered: usize,
    pub pending: usize,
    pub adoption_percent: Option<f64>,
    pub target_percent: f64,
    pub checklists: Vec<ChecklistStats>,
    pub time_to_answer: Option<AnswerTimes>,
    pub lessons_stm: usize,
    pub lessons_ltm: usize,
    /// Each promoted lesson and its evidenced uses when promoted.
    pub uses_before_promotion: Vec<(String, usize)>,
}

fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

/// The figures over `reflections` triggered since `since_ms`.
pub fn compute(sot: &Sot, reflections: &[Reflection], since_ms: Option<i64>) -> Stats {
    let counted: Vec<&Reflection> = reflections
        .iter()
        .filter(|r| since_ms.is_none_or(|s| r.created_ms >= s))
        .collect();
    let answered: Vec<&&Reflection> = counted.iter().filter(|r| !r.is_pending()).collect();
    let mut names: Vec<&str> = sot.checklists.keys().map(String::as_str).collect();
    for r in &counted {
        if !names.contains(&r.checklist.as_str()) {
            names.push(&r.checklist);
        }
    }
    let checklists = names
        .into_iter()
        .map(|name| {
            let triggered = counted.iter().filter(|r| r.checklist == name).count();
            let done = answered.iter().filter(|r| r.checklist == name).count();
            ChecklistStats {
                checklist: name.to_string(),
                triggered,
                answered: done,
                adoption_percent: percent(done, triggered),
            }
        })
        .collect();
    let mut times: Vec<i64> = answered
        .iter()
        .filter_map(|r| r.answered_ms.map(|a| a - r.created_ms))
        .collect();
    times.sort_unstable();
    let time_to_answer = (!times.is_empty()).then(|| {
        let n = times.len();
        let median = if n % 2 == 1 {
            times[n / 2]
        } else {
            (times[n / 2 - 1] + times[n / 2]) / 2
        };
        AnswerTimes {
            median_ms: median,
            mean_ms: times.iter().sum::<i64>() / n as i64,
            max_ms: times[n - 1],
        }
    });
    Stats {
        since_ms,
        triggered: counted.len(),
        answered: answered.len(),
        pending: counted.len() - answered.len(),
        adoption_percent: percent(answered.len(), counted.len()),
        target_percent: TARGET_PERCENT,
        checklists,
        time_to_answer,
        lessons_stm: sot
            .lessons
            .values()
            .filter(|l| l.memory == Memory::Stm)
            .count(),
        lessons_ltm: sot
            .lessons
            .values()
            .filter(|l| l.memory == Memory::Ltm)
            .count(),
        uses_before_promotion: sot
            .lessons
            .values()
            .filter_map(|l| l.promoted.as_ref().map(|p| (l.id.clone(), p.uses)))
            .collect(),
    }
}
