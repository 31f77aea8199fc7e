//! Variables and rendering.
//!
//! Precedence, lowest first: playbook `[vars]` < profile `[vars]` < group
//! `vars` (groups in alphabetical order) < node `vars` < `-e key=value`.
//! Templates see every variable at the top level, plus `node` (name, address,
//! port, user, groups, tags) and, when the playbook uses them, `facts`.
//! A variable whose value is a template is rendered with all the others
//! ([`resolve`]), so `name = "{{ node.name }}"` reaches the node rendered.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::fleet::quote::sh_quote;
use crate::sot::{Node, Profile, Sot};

/// Merge variables for `node` by the documented precedence.
pub fn merge(
    playbook: &toml::Table,
    profile: Option<&Profile>,
    sot: &Sot,
    node: &Node,
    extra: &[(String, String)],
) -> toml::Table {
    let mut vars = playbook.clone();
    if let Some(p) = profile {
        vars.extend(p.vars.clone());
    }
    let mut groups: Vec<&String> = node.groups.iter().collect();
    groups.sort();
    for g in groups {
        if let Some(group) = sot.groups.get(g) {
            vars.extend(group.vars.clone());
        }
    }
    vars.extend(node.vars.clone());
    for (k, v) in extra {
        vars.insert(k.clone(), toml::Value::String(v.clone()));
    }
    vars
}

/// What templates and conditions can see for one node.
pub fn context(vars: &toml::Table, node: &Node, facts: Option<&BTreeMap<String, String>>) -> Value {
    let mut ctx: BTreeMap<String, Value> = vars
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(Serde(v))))
        .collect();
    ctx.insert(
        "node".into(),
        Value::from(Serde(serde_json::json!({
            "name": node.name, "address": node.address, "port": node.port, "user": node.user,
            "groups": node.groups, "tags": node.tags,
        }))),
    );
    if let Some(f) = facts {
        ctx.insert("facts".into(), Value::from(Serde(f)));
    }
    Value::from(Serde(ctx))
}

/// Whether a value is a template (`{{ ... }}` or `{% ... %}`).
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The first cycle through `start` in a variable dependency graph, as
/// `a -> b -> a`.
pub fn find_cycle(
    start: &str,
    deps: &dyn Fn(&str) -> Option<BTreeSet<String>>,
) -> Option<Vec<String>> {
    fn walk(
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
        deps: &dyn Fn(&str) -> Option<BTreeSet<String>>,
    ) -> bool {
        for next in deps(at).unwrap_or_default() {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(&next, start, path, seen, deps) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(start, start, &mut path, &mut seen, deps).then_some(path)
}

/// Render the variables that are templates (`name = "{{ node.name }}-x"`)
/// in the context of all the others, by the same precedence: a variable is
/// rendered once the variables it uses are. A cycle is an error, never a
/// value shipped with its braces.
pub fn resolve(ctx: &Value, r: &Renderer) -> Result<Value, RenderError> {
    let Ok(keys) = ctx.try_iter() else {
        return Ok(ctx.clone());
    };
    let mut values: BTreeMap<String, Value> = BTreeMap::new();
    let mut pending: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for k in keys {
        let Some(name) = k.as_str().map(str::to_string) else {
            continue;
        };
        let v = ctx.get_attr(&name).unwrap_or_default();
        match v.as_str() {
            Some(s) if is_template(s) && name != "node" && name != "facts" => {
                let refs = r
                    .references(s)
                    .map_err(|e| RenderError(format!("variable `{name}`: {e}")))?;
                pending.insert(name, (s.to_string(), refs));
            }
            _ => {
                values.insert(name, v);
            }
        }
    }
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .iter()
            .filter(|(_, (_, refs))| refs.iter().all(|x| !pending.contains_key(x)))
            .map(|(k, _)| k.clone())
            .collect();
        if ready.is_empty() {
            let name = pending.keys().next().cloned().unwrap_or_default();
            let cycle = find_cycle(&name, &|n| pending.get(n).map(|p| p.1.clone()))
                .unwrap_or_else(|| vec![name.clone()]);
            return Err(RenderError(format!(
                "variable `{name}` refers to itself: {}",
                cycle.join(" -> ")
            )));
        }
        for name in ready {
            let (src, _) = pending.remove(&name).unwrap_or_default();
            let now = Value::from(values.clone());
            let out = r
                .text(&src, &now)
                .map_err(|e| RenderError(format!("variable `{name}`: {e}")))?;
            values.insert(name, Value::from(out));
        }
    }
    Ok(Value::from(values))
}

/// Two template environments: plain text, and shell commands where every
/// interpolated value is inserted as one quoted shell word.
pub struct Renderer {
    text: Environment<'static>,
    shell: Environment<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let mut text = Environment::new();
        text.set_undefined_behavior(UndefinedBehavior::Strict);
        // A template's last newline is content: config files end with one.
        let syntax = SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters");
        text.set_syntax(syntax);
        let mut shell = Environment::new();
        shell.set_undefined_behavior(UndefinedBehavior::Strict);
        shell.set_formatter(|out, _state, value| {
            let s = match value.as_str() {
                Some(s) => s.to_string(),
                None => value.to_string(),
            };
            out.write_str(&sh_quote(&s)).map_err(|_| {
                minijinja::Error::new(
                    minijinja::ErrorKind::WriteFailure,
                    "cannot write template output",
                )
            })
        });
        Renderer { text, shell }
    }

    pub fn text(&self, source: &str, ctx: &Value) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_string());
        }
        self.text.render_str(source, ctx).map_err(describe)
    }

    pub fn shell(&self, source: &str, ctx: &Value) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_string());
        }
        self.shell.render_str(source, ctx).map_err(describe)
    }

    /// The top-level variables a template uses.
    pub fn references(&self, source: &str) -> Result<BTreeSet<String>, RenderError> {
        let t = self.text.template_from_str(source).map_err(describe)?;
        Ok(t.undeclared_variables(false).into_iter().collect())
    }

    /// Evaluate an expression to a value (the constant parts of `changed_when`).
    pub fn value(&self, expr: &str, ctx: &Value) -> Result<Value, RenderError> {
        let e = self.text.compile_expression(expr).map_err(describe)?;
        e.eval(ctx).map_err(describe)
    }

    /// Evaluate a `when` condition.
    pub fn condition(&self, expr: &str, ctx: &Value) -> Result<bool, RenderError> {
        let e = self.text.compile_expression(expr).map_err(describe)?;
        e.eval(ctx).map(|v| v.is_true()).map_err(describe)
    }
}

fn describe(e: minijinja::Error) -> RenderError {
    let mut s = e.to_string();
    if let Some(d) = e.detail()
        && !s.contains(d)
    {
        s.push_str(": ");
        s.push_str(d);
    }
    RenderError(s)
}

/// A template or expression that could not be rendered, with minijinja's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);
