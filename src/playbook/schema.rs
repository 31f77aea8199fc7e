//! Checking a playbook file against its schema on toml's span-preserving tree
//! (`toml::de::DeTable`), so that `play` and `sot check` report every problem
//! at once, each at its file:line:col, in source order — serde would stop at
//! the first. A file that passes is then built by serde ([`super::model`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::sot::diag::{Code, Diagnostic, SourceFile, suggest};

/// The type a key's value must have.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    Strs,
    StrOrStrs,
    /// `changed_when`/`failed_when`: a boolean or an expression.
    Cond,
    Table,
    Tables,
    /// A string, one of these.
    OneOf(&'static [&'static str]),
}

impl Ty {
    fn describe(self) -> String {
        match self {
            Ty::Str => "a string".into(),
            Ty::Bool => "true or false".into(),
            Ty::Int => "an integer".into(),
            Ty::Strs => "an array of strings".into(),
            Ty::StrOrStrs => "a string or an array of strings".into(),
            Ty::Cond => "true, false or an expression string".into(),
            Ty::Table => "a table".into(),
            Ty::Tables => "an array of tables ([[...]])".into(),
            Ty::OneOf(v) => format!("one of {}", v.join(", ")),
        }
    }
}

const PRESENCE: &[&str] = &["present", "absent"];
const TOP: &[(&str, Ty)] = &[
    ("name", Ty::Str),
    ("description", Ty::Str),
    ("become", Ty::Bool),
    ("become_user", Ty::Str),
    ("vars", Ty::Table),
    ("task", Ty::Tables),
    ("handler", Ty::Tables),
];
const TASK: &[(&str, Ty)] = &[
    ("name", Ty::Str),
    ("when", Ty::Str),
    ("notify", Ty::Strs),
    ("tags", Ty::Strs),
    ("become", Ty::Bool),
    ("become_user", Ty::Str),
];
const FILE: &[(&str, Ty)] = &[
    ("path", Ty::Str),
    ("content", Ty::Str),
    ("src", Ty::Str),
    ("mode", Ty::Str),
    ("owner", Ty::Str),
    ("group", Ty::Str),
    ("sensitive", Ty::Bool),
];

/// Keys with the types of their values.
type Keys = &'static [(&'static str, Ty)];

/// Each module: its keys and the keys it requires.
const MODULES: &[(&str, Keys, &[&str])] = &[
    (
        "dir",
        &[
            ("path", Ty::Str),
            ("mode", Ty::Str),
            ("owner", Ty::Str),
            ("group", Ty::Str),
        ],
        &["path"],
    ),
    ("file", FILE, &["path"]),
    ("template", FILE, &["path"]),
    (
        "line",
        &[
            ("path", Ty::Str),
            ("line", Ty::Str),
            ("regexp", Ty::Str),
            ("state", Ty::OneOf(PRESENCE)),
            ("create", Ty::Bool),
            ("mode", Ty::Str),
            ("owner", Ty::Str),
            ("group", Ty::Str),
            ("sensitive", Ty::Bool),
        ],
        &["path"],
    ),
    ("absent", &[("path", Ty::Str)], &["path"]),
    (
        "command",
        &[
            ("run", Ty::Str),
            ("creates", Ty::Str),
            ("removes", Ty::Str),
            ("unless", Ty::Str),
            ("chdir", Ty::Str),
            ("changed_when", Ty::Cond),
            ("failed_when", Ty::Cond),
        ],
        &["run"],
    ),
    (
        "package",
        &[("name", Ty::StrOrStrs), ("state", Ty::OneOf(PRESENCE))],
        &["name"],
    ),
    (
        "service",
        &[
            ("name", Ty::Str),
            ("state", Ty::OneOf(&["started", "stopped", "restarted"])),
            ("enabled", Ty::Bool),
            ("command", Ty::Str),
            ("pidfile", Ty::Str),
            ("user", Ty::Str),
        ],
        &["name", "state"],
    ),
    (
        "user",
        &[
            ("name", Ty::Str),
            ("state", Ty::OneOf(PRESENCE)),
            ("system", Ty::Bool),
            ("home", Ty::Str),
            ("shell", Ty::Str),
            ("uid", Ty::Int),
            ("group", Ty::Str),
            ("groups", Ty::Strs),
            ("create_home", Ty::Bool),
        ],
        &["name"],
    ),
    (
        "group",
        &[
            ("name", Ty::Str),
            ("state", Ty::OneOf(PRESENCE)),
            ("system", Ty::Bool),
            ("gid", Ty::Int),
        ],
        &["name"],
    ),
    (
        "sysctl",
        &[("key", Ty::Str), ("value", Ty::Str), ("file", Ty::Str)],
        &["key", "value"],
    ),
    (
        "checksum",
        &[("path", Ty::Str), ("sha256", Ty::Str)],
        &["path", "sha256"],
    ),
];

struct Cx<'a> {
    file: &'a SourceFile,
    diags: Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, code: Code, span: Range<usize>, message: String, hint: Option<String>) {
        let mut d = self.file.diagnostic(code, span, message);
        d.hint = hint;
        self.diags.push(d);
    }

    /// Check every key of `table` against `allowed`; returns whether all were fine.
    fn keys(&mut self, table: &DeTable<'_>, allowed: &[(&str, Ty)], what: &str) -> bool {
        let mut ok = true;
        for (k, v) in table.iter() {
            let key: &str = k.get_ref();
            match allowed.iter().find(|(a, _)| *a == key) {
                None => {
                    ok = false;
                    let names = allowed.iter().map(|(a, _)| *a);
                    let hint = match suggest(key, names.clone()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!(
                            "allowed keys here: {}",
                            names.collect::<Vec<_>>().join(", ")
                        ),
                    };
                    self.error(
                        Code::UnknownKey,
                        k.span(),
                        format!("unknown key `{key}` in {what}"),
                        Some(hint),
                    );
                }
                Some((_, ty)) => ok &= self.typed(v, key, *ty, what),
            }
        }
        ok
    }

    fn typed(&mut self, v: &Spanned<DeValue<'_>>, key: &str, ty: Ty, what: &str) -> bool {
        let strings = |a: &[Spanned<DeValue<'_>>]| {
            a.iter().all(|x| matches!(x.get_ref(), DeValue::String(_)))
        };
        let fine = match (ty, v.get_ref()) {
            (Ty::Str, DeValue::String(_))
            | (Ty::Bool, DeValue::Boolean(_))
            | (Ty::Int, DeValue::Integer(_))
            | (Ty::Table, DeValue::Table(_))
            | (Ty::StrOrStrs, DeValue::String(_))
            | (Ty::Cond, DeValue::String(_) | DeValue::Boolean(_)) => true,
            (Ty::Strs | Ty::StrOrStrs, DeValue::Array(a)) => strings(a),
            (Ty::Tables, DeValue::Array(a)) => {
                a.iter().all(|x| matches!(x.get_ref(), DeValue::Table(_)))
            }
            (Ty::OneOf(allowed), DeValue::String(s)) => {
                if allowed.contains(&s.as_ref()) {
                    true
                } else {
                    let hint =
                        suggest(s, allowed.iter().copied()).map(|x| format!("did you mean `{x}`?"));
                    self.error(
                        Code::BadValue,
                        v.span(),
                        format!("`{key}` in {what} must be {}, not `{s}`", ty.describe()),
                        hint,
                    );
                    return false;
                }
            }
            _ => false,
        };
        if !fine {
            self.error(
                Code::Type,
                v.span(),
                format!(
                    "`{key}` in {what} must be {}, found {}",
                    ty.describe(),
                    v.get_ref().type_str()
                ),
                None,
            );
        }
        fine
    }
}

fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// Every syntax and schema problem in the file (empty: serde can build it).
pub(super) fn check(file: &SourceFile) -> Vec<Diagnostic> {
    let (table, errors) = DeTable::parse_recoverable(&file.text);
    let mut cx = Cx {
        file,
        diags: Vec::new(),
    };
    if !errors.is_empty() {
        for e in errors {
            let message = e
                .message()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            cx.error(Code::Syntax, e.span().unwrap_or(0..0), message, None);
        }
        return cx.diags;
    }
    let top = table.get_ref();
    cx.keys(top, TOP, "the playbook");
    if let Some(v) = get(top, "vars")
        && let DeValue::Table(vars) = v.get_ref()
    {
        check_vars(&mut cx, vars);
    }
    let tables = |kind: &str| -> Vec<&Spanned<DeValue<'_>>> {
        match get(top, kind).map(Spanned::get_ref) {
            Some(DeValue::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        }
    };
    let handlers: Vec<String> = tables("handler")
        .iter()
        .filter_map(|h| match h.get_ref() {
            DeValue::Table(t) => match get(t, "name").map(Spanned::get_ref) {
                Some(DeValue::String(s)) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    for kind in ["task", "handler"] {
        for item in tables(kind) {
            if let DeValue::Table(t) = item.get_ref() {
                check_task(&mut cx, t, item.span(), kind, &handlers);
            }
        }
    }
    cx.diags
}

fn check_task(
    cx: &mut Cx<'_>,
    t: &DeTable<'_>,
    span: Range<usize>,
    kind: &str,
    handlers: &[String],
) {
    let name = match get(t, "name").map(Spanned::get_ref) {
        Some(DeValue::String(s)) => s.to_string(),
        _ => String::new(),
    };
    let what = if name.is_empty() {
        format!("a {kind}")
    } else {
        format!("{kind} `{name}`")
    };
    if get(t, "name").is_none() {
        cx.error(
            Code::MissingKey,
            span.start..span.start,
            format!("{what} has no `name`"),
            Some("add e.g. `name = \"what this task does\"`".into()),
        );
    }
    let mut allowed: Vec<(&str, Ty)> = TASK.to_vec();
    allowed.extend(MODULES.iter().map(|(m, _, _)| (*m, Ty::Table)));
    let mut ok = cx.keys(t, &allowed, &what);
    if let Some(v) = get(t, "notify")
        && let DeValue::Array(items) = v.get_ref()
    {
        for h in items.iter() {
            let DeValue::String(name) = h.get_ref() else {
                continue;
            };
            if !handlers.iter().any(|x| x == name.as_ref()) {
                let hint = suggest(name, handlers.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"));
                cx.error(
                    Code::DanglingRef,
                    h.span(),
                    format!("{what} notifies `{name}`, which is not a handler"),
                    hint,
                );
            }
        }
    }
    let used: Vec<(&str, &Spanned<DeValue<'_>>)> = MODULES
        .iter()
        .filter_map(|(m, _, _)| get(t, m).map(|v| (*m, v)))
        .collect();
    if used.len() != 1 {
        let mut names = BTreeSet::new();
        names.extend(used.iter().map(|(m, _)| *m));
        cx.error(
            Code::BadValue,
            span.start..span.start,
            format!(
                "{what} must use exactly one module, it uses {}{}",
                used.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.into_iter().collect::<Vec<_>>().join(", "))
                }
            ),
            Some(format!("modules: {}", super::model::MODULES)),
        );
        ok = false;
    }
    for (module, v) in &used {
        let DeValue::Table(args) = v.get_ref() else {
            continue;
        };
        let (_, keys, required) = MODULES
            .iter()
            .find(|(m, _, _)| m == module)
            .expect("a known module");
        ok &= cx.keys(args, keys, &format!("`{module}` of {what}"));
        for r in *required {
            if get(args, r).is_none() {
                ok = false;
                cx.error(
                    Code::MissingKey,
                    v.span(),
                    format!("`{module}` of {what} has no `{r}`"),
                    None,
                );
            }
        }
    }
    // Keys and types are right: the rules between values (modes, names, ...).
    if ok && get(t, "name").is_some() {
        let value = toml::Value::Table(to_toml(t));
        match super::model::Task::deserialize(value) {
            Ok(task) => {
                if let Some(why) = super::model::module_problem(task.module()) {
                    let at = used.first().map_or(span.clone(), |(_, v)| v.span());
                    cx.error(Code::BadValue, at, format!("{what}: {why}"), None);
                }
            }
            Err(e) => cx.error(
                Code::BadValue,
                span.start..span.start,
                e.message().to_string(),
                None,
            ),
        }
    }
}

fn to_toml(t: &DeTable<'_>) -> toml::Table {
    fn value(v: &DeValue<'_>) -> toml::Value {
        match v {
            DeValue::String(s) => toml::Value::String(s.to_string()),
            DeValue::Integer(i) => toml::Value::Integer(
                i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).unwrap_or(0),
            ),
            DeValue::Float(f) => {
                toml::Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
            }
            DeValue::Boolean(b) => toml::Value::Boolean(*b),
            DeValue::Datetime(d) => toml::Value::Datetime(*d),
            DeValue::Array(a) => toml::Value::Array(a.iter().map(|x| value(x.get_ref())).collect()),
            DeValue::Table(t) => toml::Value::Table(to_toml(t)),
        }
    }
    t.iter()
        .map(|(k, v)| (k.get_ref().to_string(), value(v.get_ref())))
        .collect()
}

/// `[vars]` values that are templates: their syntax, and cycles between them.
fn check_vars(cx: &mut Cx<'_>, vars: &DeTable<'_>) {
    let renderer = super::vars::Renderer::new();
    let mut deps: BTreeMap<String, (BTreeSet<String>, Range<usize>)> = BTreeMap::new();
    for (k, v) in vars.iter() {
        let DeValue::String(s) = v.get_ref() else {
            continue;
        };
        if !super::vars::is_template(s) {
            continue;
        }
        match renderer.references(s) {
            Ok(names) => {
                deps.insert(k.get_ref().to_string(), (names, v.span()));
            }
            Err(e) => cx.error(
                Code::BadValue,
                v.span(),
                format!("variable `{}` is not a valid template: {e}", k.get_ref()),
                None,
            ),
        }
    }
    for (name, (_, span)) in &deps {
        if let Some(cycle) = super::vars::find_cycle(name, &|n| deps.get(n).map(|d| d.0.clone())) {
            cx.error(
                Code::BadValue,
                span.clone(),
                format!("variable `{name}` refers to itself: {}", cycle.join(" -> ")),
                Some("a variable's template may use other variables, but not in a circle".into()),
            );
        }
    }
}
