//! `rollouts.toml`: progressive delivery strategies (`[strategy.NAME]` with
//! exactly one of `canary`, `blue_green`, `shadow`) and metric gates
//! (`[gate.NAME]`). Agents name a strategy with `rollout = "NAME"`.

use std::ops::Range;

use super::Loader;
use super::tables::Named;
use crate::diag::{Code, suggest};
use crate::rollout::FILE;
use crate::rollout::spec::{
    Definitions, GateSpec, Kind, METRICS, Step, Strategy, Traffic, Unavailable,
};
use crate::sot::schema::{At, Cx, Table, Value, get};

/// A gate name used by a strategy, checked once every gate is read.
struct GateRef {
    name: String,
    span: Range<usize>,
}

impl Loader<'_> {
    pub(super) fn rollouts(&mut self, idx: usize, t: &Table<'_>, out: &mut Definitions) {
        cx!(self, idx).check_keys(t, &["strategy", "gate"], FILE);
        let mut gate_refs = Vec::new();
        for Named {
            name,
            header,
            table: at,
            ..
        } in self.named_tables_of(idx, t, "gate", FILE)
        {
            let mut cx = cx!(self, idx);
            if let Some(g) = gate(&mut cx, &name, header, at) {
                out.gates.insert(name, g);
            }
        }
        for Named {
            name,
            header,
            table: at,
            ..
        } in self.named_tables_of(idx, t, "strategy", FILE)
        {
            let mut cx = cx!(self, idx);
            if let Some(s) = strategy(&mut cx, &name, header, at, &mut gate_refs) {
                out.strategies.insert(name.clone(), s);
            }
        }
        let mut cx = cx!(self, idx);
        for r in gate_refs {
            if !out.gates.contains_key(&r.name) {
                let hint = match suggest(&r.name, out.gates.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("define it as [gate.{}] in {FILE}", r.name),
                };
                cx.error_hint(
                    Code::DanglingRef,
                    r.span,
                    format!("unknown gate `{}`", r.name),
                    hint,
                );
            }
        }
    }
}

fn duration_ms(cx: &mut Cx<'_>, t: &Table<'_>, key: &str, what: &str) -> Option<u64> {
    let d = cx.string(t, key, what)?;
    match crate::sot::model::parse_duration(&d.value) {
        Some(v) => Some(v.as_millis() as u64),
        None => {
            cx.error_hint(
                Code::BadValue,
                d.span,
                format!("`{key}` in {what} is not a duration: `{}`", d.value),
                "write a number and a unit: \"500ms\", \"30s\", \"5m\"",
            );
            None
        }
    }
}

fn bounded(cx: &mut Cx<'_>, t: &Table<'_>, key: &str, what: &str, max: i64) -> Option<i64> {
    let v = cx.integer(t, key, what)?;
    if (0..=max).contains(&v.value) {
        Some(v.value)
    } else {
        cx.error(
            Code::BadValue,
            v.span,
            format!(
                "`{key}` in {what} must be between 0 and {max}, found {}",
                v.value
            ),
        );
        None
    }
}

fn gate(cx: &mut Cx<'_>, name: &str, header: Range<usize>, t: &Table<'_>) -> Option<GateSpec> {
    let what = format!("gate `{name}`");
    cx.check_keys(
        t,
        &[
            "interval",
            "count",
            "initial_delay",
            "failure_limit",
            "inconclusive_limit",
            "min_requests",
            "success",
            "failure",
        ],
        &what,
    );
    let success = cx.string(t, "success", &what);
    let failure = cx.string(t, "failure", &what);
    if success.is_none() && failure.is_none() && get(t, "success").is_none() {
        cx.missing(header.clone(), "success", &what, "\"error_rate < 0.05\"");
    }
    for e in success.iter().chain(failure.iter()) {
        check_expression(cx, e, &what);
    }
    let count = bounded(cx, t, "count", &what, 10_000).unwrap_or(1);
    if count == 0
        && let Some(v) = get(t, "count")
    {
        cx.error(
            Code::BadValue,
            v.span(),
            format!("`count` in {what} must be at least 1"),
        );
    }
    Some(GateSpec {
        name: name.to_string(),
        interval_ms: duration_ms(cx, t, "interval", &what)
            .unwrap_or(60_000)
            .max(100),
        count: count.max(1) as u32,
        initial_delay_ms: duration_ms(cx, t, "initial_delay", &what).unwrap_or(0),
        failure_limit: bounded(cx, t, "failure_limit", &what, 10_000).unwrap_or(0) as u32,
        inconclusive_limit: bounded(cx, t, "inconclusive_limit", &what, 10_000).unwrap_or(0) as u32,
        min_requests: bounded(cx, t, "min_requests", &what, i64::MAX).unwrap_or(1) as u64,
        success: success.map(|s| s.value),
        failure: failure.map(|s| s.value),
    })
}

/// A gate condition compiles as a minijinja expression and names only
/// metrics maestro measures.
fn check_expression(cx: &mut Cx<'_>, e: &At<String>, what: &str) {
    let env = minijinja::Environment::new();
    let expr = match env.compile_expression(&e.value) {
        Ok(x) => x,
        Err(err) => {
            cx.error_hint(
                Code::BadValue,
                e.span.clone(),
                format!(
                    "the condition `{}` in {what} does not parse: {err}",
                    e.value
                ),
                "write an expression such as \"error_rate < 0.05 and latency_p99 < 0.5\"",
            );
            return;
        }
    };
    let mut names: Vec<String> = expr.undeclared_variables(true).into_iter().collect();
    names.sort();
    let known: Vec<String> = METRICS
        .iter()
        .flat_map(|(m, _)| [m.to_string(), format!("stable.{m}")])
        .collect();
    for n in names {
        if n == "stable" || known.contains(&n) {
            continue;
        }
        // `stable.error_rate` is reported as both `stable` and the path.
        let hint = match suggest(&n, known.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!(
                "a condition may use: {}",
                METRICS
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        cx.error_hint(
            Code::BadValue,
            e.span.clone(),
            format!(
                "the condition `{}` in {what} uses `{n}`, which maestro does not measure",
                e.value
            ),
            hint,
        );
    }
}

fn strategy(
    cx: &mut Cx<'_>,
    name: &str,
    header: Range<usize>,
    t: &Table<'_>,
    gate_refs: &mut Vec<GateRef>,
) -> Option<Strategy> {
    let what = format!("strategy `{name}`");
    cx.check_keys(t, &["canary", "blue_green", "shadow"], &what);
    let present: Vec<&str> = ["canary", "blue_green", "shadow"]
        .into_iter()
        .filter(|k| get(t, k).is_some())
        .collect();
    if present.len() != 1 {
        cx.error_hint(
            Code::BadValue,
            header,
            format!(
                "{what} must have exactly one of `canary`, `blue_green`, `shadow`{}",
                if present.is_empty() {
                    String::new()
                } else {
                    format!(" (it has {})", present.join(", "))
                }
            ),
            "e.g. canary = { steps = [{ set_weight = 10 }, { pause = {} }, { set_weight = 100 }] }",
        );
        return None;
    }
    let mut gate_ref = |cx: &mut Cx<'_>, t: &Table<'_>, key: &str, what: &str| -> Option<String> {
        let g = cx.string(t, key, what)?;
        gate_refs.push(GateRef {
            name: g.value.clone(),
            span: g.span,
        });
        Some(g.value)
    };
    let kind = match present[0] {
        "canary" => {
            let what = format!("the canary of {what}");
            let c = cx.table(t, "canary", &what)?.value;
            cx.check_keys(
                c,
                &["traffic", "steps", "max_unavailable", "max_fail_percent"],
                &what,
            );
            let traffic = match cx.string(c, "traffic", &what) {
                None => Traffic::Nodes,
                Some(s) if s.value == "nodes" => Traffic::Nodes,
                Some(s) if s.value == "gateway" => Traffic::Gateway,
                Some(s) => {
                    cx.error_hint(
                        Code::BadValue,
                        s.span,
                        format!("`traffic` in {what} is `{}`", s.value),
                        "\"nodes\" (the share of nodes on the new version) or \"gateway\" (the share of each node's requests)",
                    );
                    Traffic::Nodes
                }
            };
            let max_unavailable = match get(c, "max_unavailable") {
                None => Unavailable::Percent(25),
                Some(v) => match v.get_ref() {
                    Value::String(s) if s.ends_with('%') => {
                        match s.trim_end_matches('%').parse::<u8>() {
                            Ok(p) if (1..=100).contains(&p) => Unavailable::Percent(p),
                            _ => {
                                cx.error(Code::BadValue, v.span(), format!("`max_unavailable` in {what} must be 1% to 100%, found `{s}`"));
                                Unavailable::Percent(25)
                            }
                        }
                    }
                    _ => match bounded(cx, c, "max_unavailable", &what, 100_000) {
                        Some(n) if n >= 1 => Unavailable::Count(n as u32),
                        Some(_) => {
                            cx.error_hint(Code::BadValue, v.span(), format!("`max_unavailable` in {what} must be at least 1"), "it is how many nodes may be deploying at once (inclusive), or a percent such as \"25%\"");
                            Unavailable::Count(1)
                        }
                        None => Unavailable::Count(1),
                    },
                },
            };
            let max_fail_percent =
                bounded(cx, c, "max_fail_percent", &what, 100).unwrap_or(0) as u8;
            let mut steps = Vec::new();
            match get(c, "steps") {
                None => cx.missing(
                    header.clone(),
                    "steps",
                    &what,
                    "[{ set_weight = 10 }, { pause = {} }, { set_weight = 100 }]",
                ),
                Some(v) => match v.get_ref() {
                    Value::Array(items) => {
                        for (i, item) in items.iter().enumerate() {
                            let swhat = format!("step {} of {what}", i + 1);
                            let Value::Table(st) = item.get_ref() else {
                                cx.error(
                                    Code::Type,
                                    item.span(),
                                    format!(
                                        "{swhat} must be a table such as {{ set_weight = 10 }}"
                                    ),
                                );
                                continue;
                            };
                            if let Some(s) = step(cx, st, item.span(), &swhat, &mut gate_ref) {
                                steps.push(s);
                            }
                        }
                    }
                    _ => cx.error(
                        Code::Type,
                        v.span(),
                        format!("`steps` in {what} must be an array of steps"),
                    ),
                },
            }
            Kind::Canary {
                traffic,
                steps,
                max_unavailable,
                max_fail_percent,
            }
        }
        "blue_green" => {
            let what = format!("the blue_green of {what}");
            let b = cx.table(t, "blue_green", &what)?.value;
            cx.check_keys(b, &["pre_promotion", "scale_down_delay"], &what);
            Kind::BlueGreen {
                pre_promotion: gate_ref(cx, b, "pre_promotion", &what),
                scale_down_delay_ms: duration_ms(cx, b, "scale_down_delay", &what)
                    .unwrap_or(30_000),
            }
        }
        _ => {
            let what = format!("the shadow of {what}");
            let s = cx.table(t, "shadow", &what)?.value;
            cx.check_keys(s, &["mirror_percent", "duration", "gate"], &what);
            let mirror_percent = bounded(cx, s, "mirror_percent", &what, 100).unwrap_or(100) as u8;
            Kind::Shadow {
                mirror_percent,
                duration_ms: duration_ms(cx, s, "duration", &what).unwrap_or(60_000),
                gate: gate_ref(cx, s, "gate", &what),
            }
        }
    };
    Some(Strategy {
        name: name.to_string(),
        kind,
    })
}

fn step(
    cx: &mut Cx<'_>,
    t: &Table<'_>,
    span: Range<usize>,
    what: &str,
    gate_ref: &mut impl FnMut(&mut Cx<'_>, &Table<'_>, &str, &str) -> Option<String>,
) -> Option<Step> {
    cx.check_keys(t, &["set_weight", "pause", "analysis"], what);
    if t.len() != 1 {
        cx.error_hint(
            Code::BadValue,
            span,
            format!("{what} must have exactly one of `set_weight`, `pause`, `analysis`"),
            "one step per table: { set_weight = 10 }, { pause = {} }, { pause = \"5m\" }, { analysis = { gate = \"NAME\" } }",
        );
        return None;
    }
    if get(t, "set_weight").is_some() {
        let w = bounded(cx, t, "set_weight", what, 100)?;
        return Some(Step::SetWeight(w as u8));
    }
    if let Some(v) = get(t, "pause") {
        return match v.get_ref() {
            Value::Table(p) if p.is_empty() => Some(Step::Pause(None)),
            Value::String(_) => duration_ms(cx, t, "pause", what).map(|ms| Step::Pause(Some(ms))),
            _ => {
                cx.error_hint(
                    Code::Type,
                    v.span(),
                    format!("`pause` in {what} must be {{}} or a duration"),
                    "pause = {} waits for `maestro rollout promote`; pause = \"5m\" waits 5 minutes",
                );
                None
            }
        };
    }
    let a = cx.table(t, "analysis", what)?;
    let awhat = format!("the analysis of {what}");
    cx.check_keys(a.value, &["gate"], &awhat);
    match gate_ref(cx, a.value, "gate", &awhat) {
        Some(gate) => Some(Step::Analysis { gate }),
        None => {
            cx.missing(a.span, "gate", &awhat, "\"error-rate\"");
            None
        }
    }
}
