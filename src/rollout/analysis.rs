//! Gate measurements: the telemetry of one agent version across a step's
//! nodes over one interval, and the verdict of the gate's conditions on it.
//!
//! A measurement compares two snapshots of the agents' counters (requests,
//! errors, starts), taken `interval` apart, per node and instance (the
//! primary slot `NAME` and the preview slot `NAME@preview` are separate
//! instances, each with its own version). Missing metrics, fewer requests
//! than `min_requests`, or a condition naming a value nobody reported make
//! the measurement **inconclusive**: no data is never a pass.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use super::spec::GateSpec;
use crate::store::GateOutcome as Outcome;
use crate::telemetry::TelemetryState;
use crate::telemetry::sample::{Process, Scrape};

/// One instance's counters at a moment.
#[derive(Debug, Clone, PartialEq)]
struct Counters {
    version: String,
    scraped: bool,
    requests: Option<f64>,
    errors: Option<f64>,
    starts: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    cpu: Option<f64>,
    rss: Option<u64>,
}

/// The counters of every instance of one agent on some nodes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    instances: HashMap<(String, String), Counters>,
}

/// The instance names of `agent` in the telemetry (primary, preview).
fn is_instance(agent: &str, name: &str) -> bool {
    name == agent || name.strip_prefix(agent) == Some("@preview")
}

/// Read `agent`'s instances on `nodes` from the telemetry state.
pub fn snapshot(state: &TelemetryState, agent: &str, nodes: &[String], at: Instant) -> Snapshot {
    let mut instances = HashMap::new();
    for node in nodes {
        let Some(n) = state.node(node) else { continue };
        for (name, a) in &n.agents {
            if !is_instance(agent, name) {
                continue;
            }
            let Some(version) = a.latest.version.clone() else {
                continue;
            };
            let running = matches!(a.latest.process, Process::Running { .. });
            let (scraped, starts) = match &a.latest.scrape {
                Scrape::Ok { metrics } => (true, metrics.starts),
                _ => (false, None),
            };
            let p = a.point;
            instances.insert(
                (node.clone(), name.clone()),
                Counters {
                    version,
                    scraped: scraped && running,
                    requests: p.requests_total.filter(|_| scraped),
                    errors: p.errors_total.filter(|_| scraped),
                    starts,
                    p50: p.p50_s,
                    p90: p.p90_s,
                    p99: p.p99_s,
                    cpu: p.cpu_pct.map(f64::from),
                    rss: p.rss_bytes,
                },
            );
        }
    }
    Snapshot { at, instances }
}

/// Whether every node in `nodes` has reported at least one sample.
pub fn all_sampled(state: &TelemetryState, nodes: &[String]) -> bool {
    nodes
        .iter()
        .all(|n| state.node(n).is_some_and(|t| t.samples >= 2))
}

/// What one version did during a measurement (absent values: no data).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Values {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p90: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<f64>,
    pub nodes: f64,
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `version`'s values between two snapshots. Instances that changed
/// version, restarted their counters or were not scraped in both add
/// nothing to the counts.
pub fn measure(before: &Snapshot, after: &Snapshot, version: &str) -> Values {
    let dt = after.at.duration_since(before.at).as_secs_f64();
    let mut v = Values::default();
    let (mut cpu, mut rss) = (Vec::new(), Vec::new());
    let mut nodes = std::collections::HashSet::new();
    for (key, now) in &after.instances {
        if now.version != version {
            continue;
        }
        if let Some(c) = now.cpu {
            cpu.push(c);
        }
        if let Some(r) = now.rss {
            rss.push(r as f64 / (1024.0 * 1024.0));
        }
        let Some(then) = before.instances.get(key).filter(|t| t.version == version) else {
            continue;
        };
        if let (Some(a), Some(b)) = (then.starts, now.starts) {
            v.restarts = Some(v.restarts.unwrap_or(0.0) + (b - a).max(0.0));
        }
        if !(now.scraped && then.scraped) {
            continue;
        }
        let (Some(r0), Some(r1)) = (then.requests, now.requests) else {
            continue;
        };
        if r1 < r0 {
            continue; // a reset: this interval's counts are unknown
        }
        nodes.insert(key.0.clone());
        v.requests = Some(v.requests.unwrap_or(0.0) + (r1 - r0));
        if let (Some(e0), Some(e1)) = (then.errors, now.errors)
            && e1 >= e0
        {
            v.errors = Some(v.errors.unwrap_or(0.0) + (e1 - e0));
        }
        v.latency_p50 = max(v.latency_p50, now.p50);
        v.latency_p90 = max(v.latency_p90, now.p90);
        v.latency_p99 = max(v.latency_p99, now.p99);
    }
    v.nodes = nodes.len() as f64;
    if let Some(r) = v.requests {
        if dt > 0.0 {
            v.request_rate = Some(r / dt);
        }
        if r > 0.0 {
            v.error_rate = Some(v.errors.unwrap_or(0.0) / r);
        }
    }
    v.cpu = mean(&cpu);
    v.memory = mean(&rss);
    v
}

/// The versions some instance runs in a snapshot, with how many instances.
pub fn versions(s: &Snapshot) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in s.instances.values() {
        *out.entry(c.version.clone()).or_insert(0) += 1;
    }
    out
}

/// The verdict of `gate` on `values` (and the stable version's), with why.
pub fn judge(gate: &GateSpec, values: &Values, stable: Option<&Values>) -> (Outcome, String) {
    if values.nodes == 0.0 {
        return (
            Outcome::Inconclusive,
            "no metrics: no node of this version reported request counters".into(),
        );
    }
    let requests = values.requests.unwrap_or(0.0);
    if requests < gate.min_requests as f64 {
        return (
            Outcome::Inconclusive,
            format!(
                "too little data: {requests} requests, fewer than min_requests = {}",
                gate.min_requests
            ),
        );
    }
    let mut ctx = serde_json::to_value(values).unwrap_or_default();
    if let (Some(s), Some(obj)) = (stable, ctx.as_object_mut()) {
        obj.insert("stable".into(), serde_json::to_value(s).unwrap_or_default());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let eval = |src: &str| -> Result<bool, String> {
        let expr = env
            .compile_expression(src)
            .map_err(|e| format!("`{src}` does not parse: {e}"))?;
        let mut needed: Vec<String> = expr.undeclared_variables(true).into_iter().collect();
        needed.sort();
        for n in needed.iter().filter(|n| *n != "stable") {
            let mut at = &ctx;
            for part in n.split('.') {
                match at.get(part) {
                    Some(v) => at = v,
                    None => return Err(format!("no data for `{n}`")),
                }
            }
        }
        let value = expr
            .eval(minijinja::Value::from(minijinja::value::Serde(&ctx)))
            .map_err(|e| format!("`{src}`: {e}"))?;
        Ok(value.is_true())
    };
    let shown = |src: &str| format!("`{src}`");
    if let Some(f) = &gate.failure {
        match eval(f) {
            Ok(true) => {
                return (
                    Outcome::Fail,
                    format!("failure condition {} is true", shown(f)),
                );
            }
            Ok(false) => {}
            Err(e) => return (Outcome::Inconclusive, e),
        }
    }
    match (&gate.success, &gate.failure) {
        (Some(s), failure) => match eval(s) {
            Ok(true) => (
                Outcome::Pass,
                format!("success condition {} is true", shown(s)),
            ),
            // Only a success condition: not met is a failure (Argo's rule);
            // with both, neither met is inconclusive.
            Ok(false) if failure.is_none() => (
                Outcome::Fail,
                format!("success condition {} is false", shown(s)),
            ),
            Ok(false) => (
                Outcome::Inconclusive,
                format!("neither {} nor the failure condition holds", shown(s)),
            ),
            Err(e) => (Outcome::Inconclusive, e),
        },
        (None, Some(f)) => (
            Outcome::Pass,
            format!("failure condition {} is false", shown(f)),
        ),
        (None, None) => (Outcome::Inconclusive, "the gate has no condition".into()),
    }
}

/// What a run of measurements decides (Argo's rules with maestro's fix:
/// a gate with no passing measurement never succeeds).
pub fn decide(gate: &GateSpec, outcomes: &[Outcome]) -> Option<Outcome> {
    let fails = outcomes.iter().filter(|o| **o == Outcome::Fail).count() as u32;
    let inconclusive = outcomes
        .iter()
        .filter(|o| **o == Outcome::Inconclusive)
        .count() as u32;
    if fails > gate.failure_limit {
        return Some(Outcome::Fail);
    }
    if inconclusive > gate.inconclusive_limit {
        return Some(Outcome::Inconclusive);
    }
    if (outcomes.len() as u32) < gate.count {
        return None;
    }
    if outcomes.contains(&Outcome::Pass) {
        Some(Outcome::Pass)
    } else {
        Some(Outcome::Inconclusive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(success: Option<&str>, failure: Option<&str>) -> GateSpec {
        GateSpec {
            name: "g".into(),
            interval_ms: 1000,
            count: 3,
            initial_delay_ms: 0,
            failure_limit: 0,
            inconclusive_limit: 0,
            min_requests: 10,
            success: success.map(str::to_string),
            failure: failure.map(str::to_string),
        }
    }

    fn values(requests: f64, errors: f64) -> Values {
        Values {
            requests: Some(requests),
            errors: Some(errors),
            error_rate: Some(errors / requests),
            request_rate: Some(requests),
            nodes: 1.0,
            ..Values::default()
        }
    }

    #[test]
    fn an_error_rate_over_the_limit_fails_and_under_it_passes() {
        let g = gate(Some("error_rate < 0.05"), Some("error_rate >= 0.1"));
        assert_eq!(judge(&g, &values(100.0, 20.0), None).0, Outcome::Fail);
        assert_eq!(judge(&g, &values(100.0, 1.0), None).0, Outcome::Pass);
        // between the two: neither holds
        assert_eq!(
            judge(&g, &values(100.0, 7.0), None).0,
            Outcome::Inconclusive
        );
    }

    #[test]
    fn no_metrics_or_too_few_requests_is_inconclusive_never_a_pass() {
        let g = gate(Some("error_rate < 0.05"), None);
        let none = Values::default();
        let (o, why) = judge(&g, &none, None);
        assert_eq!(o, Outcome::Inconclusive);
        assert!(why.contains("no metrics"), "{why}");
        let (o, why) = judge(&g, &values(3.0, 0.0), None);
        assert_eq!(o, Outcome::Inconclusive);
        assert!(why.contains("min_requests = 10"), "{why}");
        // a value nobody reported
        let g = gate(Some("latency_p99 < 0.5"), None);
        let (o, why) = judge(&g, &values(100.0, 0.0), None);
        assert_eq!(o, Outcome::Inconclusive);
        assert!(why.contains("latency_p99"), "{why}");
    }

    #[test]
    fn conditions_compare_with_the_stable_version() {
        let g = gate(Some("error_rate <= stable.error_rate + 0.01"), None);
        let stable = values(100.0, 1.0);
        assert_eq!(
            judge(&g, &values(100.0, 1.0), Some(&stable)).0,
            Outcome::Pass
        );
        assert_eq!(
            judge(&g, &values(100.0, 9.0), Some(&stable)).0,
            Outcome::Fail
        );
        let (o, _) = judge(&g, &values(100.0, 1.0), None);
        assert_eq!(o, Outcome::Inconclusive);
    }

    #[test]
    fn the_decision_follows_the_limits() {
        use Outcome::*;
        let g = gate(Some("x"), None);
        assert_eq!(decide(&g, &[Pass, Pass]), None);
        assert_eq!(decide(&g, &[Pass, Pass, Pass]), Some(Pass));
        assert_eq!(decide(&g, &[Pass, Fail]), Some(Fail));
        assert_eq!(decide(&g, &[Inconclusive]), Some(Inconclusive));
        let lenient = GateSpec {
            inconclusive_limit: 5,
            ..g
        };
        assert_eq!(
            decide(&lenient, &[Inconclusive, Inconclusive, Inconclusive]),
            Some(Inconclusive)
        );
    }
}
