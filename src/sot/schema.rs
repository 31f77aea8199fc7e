//! Reading spanned TOML tables against a schema while collecting every problem.
//!
//! The loader walks `toml::de::DeTable` (the parser's span-preserving tree) instead
//! of deriving `Deserialize`, because serde stops at the first error and the
//! operator wants all of them, each with its exact position.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Code, Diagnostic, SourceFile, suggest};

pub(crate) type Table<'i> = DeTable<'i>;
pub(crate) type Value<'i> = DeValue<'i>;

/// A value with the byte span it came from.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// The file being read and the place diagnostics go.
pub(crate) struct Cx<'a> {
    pub file: &'a SourceFile,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    pub fn error(&mut self, code: Code, span: Range<usize>, message: impl Into<String>) {
        let d = self.file.diagnostic(code, span, message.into());
        self.diags.push(d);
    }

    pub fn error_hint(
        &mut self,
        code: Code,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let mut d = self.file.diagnostic(code, span, message.into());
        d.hint = Some(hint.into());
        self.diags.push(d);
    }

    /// [`Self::error_hint`] about a value that holds a secret: the line is
    /// shown with the value masked, so the report does not spread it.
    pub fn error_secret(
        &mut self,
        code: Code,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        let mut d = self.file.diagnostic(code, span, message.into());
        let chars: Vec<char> = d.source_line.chars().collect();
        let start = d.col.saturating_sub(1).min(chars.len());
        let end = (start + d.width).min(chars.len());
        let mask = crate::secrets::MASK;
        d.source_line = format!(
            "{}{mask}{}",
            chars[..start].iter().collect::<String>(),
            chars[end..].iter().collect::<String>()
        );
        d.width = mask.chars().count();
        d.hint = Some(hint.into());
        self.diags.push(d);
    }

    /// Report keys outside `allowed`, suggesting the nearest allowed key.
    pub fn check_keys(&mut self, table: &Table<'_>, allowed: &[&str], what: &str) {
        for (key, _) in table.iter() {
            let k: &str = key.get_ref();
            if !allowed.contains(&k) {
                let hint = match suggest(k, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("allowed keys here: {}", allowed.join(", ")),
                };
                self.error_hint(
                    Code::UnknownKey,
                    key.span(),
                    format!("unknown key `{k}` in {what}"),
                    hint,
                );
            }
        }
    }

    fn type_error(&mut self, value: &Spanned<Value<'_>>, key: &str, expected: &str, what: &str) {
        self.error(
            Code::Type,
            value.span(),
            format!(
                "`{key}` in {what} must be {expected}, found {}",
                value.get_ref().type_str()
            ),
        );
    }

    pub fn string(&mut self, table: &Table<'_>, key: &str, what: &str) -> Option<At<String>> {
        let v = get(table, key)?;
        match v.get_ref() {
            Value::String(s) => Some(At {
                value: s.to_string(),
                span: v.span(),
            }),
            _ => {
                self.type_error(v, key, "a string", what);
                None
            }
        }
    }

    pub fn integer(&mut self, table: &Table<'_>, key: &str, what: &str) -> Option<At<i64>> {
        let v = get(table, key)?;
        match v.get_ref() {
            Value::Integer(i) => match parse_integer(i.as_str(), i.radix()) {
                Some(n) => Some(At {
                    value: n,
                    span: v.span(),
                }),
                None => {
                    self.error(
                        Code::BadValue,
                        v.span(),
                        format!("`{key}` in {what} is out of range"),
                    );
                    None
                }
            },
            _ => {
                self.type_error(v, key, "an integer", what);
                None
            }
        }
    }

    pub fn boolean(&mut self, table: &Table<'_>, key: &str, what: &str) -> Option<At<bool>> {
        let v = get(table, key)?;
        match v.get_ref() {
            Value::Boolean(b) => Some(At {
                value: *b,
                span: v.span(),
            }),
            _ => {
                self.type_error(v, key, "true or false", what);
                None
            }
        }
    }

    /// An integer or a float, as f64.
    pub fn number(&mut self, table: &Table<'_>, key: &str, what: &str) -> Option<At<f64>> {
        let v = get(table, key)?;
        let n = match v.get_ref() {
            Value::Integer(i) => parse_integer(i.as_str(), i.radix()).map(|n| n as f64),
            Value::Float(f) => f.as_str().replace('_', "").parse().ok(),
            _ => {
                self.type_error(v, key, "a number", what);
                return None;
            }
        };
        match n {
            Some(value) if value.is_finite() => Some(At {
                value,
                span: v.span(),
            }),
            _ => {
                self.error(
                    Code::BadValue,
                    v.span(),
                    format!("`{key}` in {what} is not a finite number"),
                );
                None
            }
        }
    }

    pub fn strings(&mut self, table: &Table<'_>, key: &str, what: &str) -> Vec<At<String>> {
        let Some(v) = get(table, key) else {
            return Vec::new();
        };
        let Value::Array(items) = v.get_ref() else {
            self.type_error(v, key, "an array of strings", what);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items.iter() {
            match item.get_ref() {
                Value::String(s) => out.push(At {
                    value: s.to_string(),
                    span: item.span(),
                }),
                _ => self.type_error(item, key, "an array of strings", what),
            }
        }
        out
    }

    pub fn table<'t, 'i>(
        &mut self,
        table: &'t Table<'i>,
        key: &str,
        what: &str,
    ) -> Option<At<&'t Table<'i>>> {
        let v = get(table, key)?;
        match v.get_ref() {
            Value::Table(t) => Some(At {
                value: t,
                span: v.span(),
            }),
            _ => {
                self.type_error(v, key, "a table", what);
                None
            }
        }
    }

    /// A table of string values (tags).
    pub fn string_map(
        &mut self,
        table: &Table<'_>,
        key: &str,
        what: &str,
    ) -> Vec<(At<String>, At<String>)> {
        let Some(t) = self.table(table, key, what) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(t.value.len());
        for (k, v) in t.value.iter() {
            match v.get_ref() {
                Value::String(s) => out.push((
                    At {
                        value: k.get_ref().to_string(),
                        span: k.span(),
                    },
                    At {
                        value: s.to_string(),
                        span: v.span(),
                    },
                )),
                _ => self.type_error(v, k.get_ref(), "a string", &format!("{key} of {what}")),
            }
        }
        out
    }

    /// Free-form variables, converted to owned TOML values.
    pub fn vars(&mut self, table: &Table<'_>, key: &str, what: &str) -> toml::Table {
        match self.table(table, key, what) {
            Some(t) => to_toml_table(t.value),
            None => toml::Table::new(),
        }
    }

    /// Report a required key that is absent.
    pub fn missing(&mut self, header: Range<usize>, key: &str, what: &str, example: &str) {
        self.error_hint(
            Code::MissingKey,
            header,
            format!("{what} has no `{key}`"),
            format!("add e.g. `{key} = {example}`"),
        );
    }
}

pub(crate) fn get<'t, 'i>(table: &'t Table<'i>, key: &str) -> Option<&'t Spanned<Value<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// Entries of a table in source order (the parser's map is sorted by key).
pub(crate) fn entries_in_order<'t, 'i>(
    table: &'t Table<'i>,
) -> Vec<(
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<Value<'i>>,
)> {
    let mut v: Vec<_> = table.iter().collect();
    v.sort_by_key(|(k, _)| k.span().start);
    v
}

fn parse_integer(digits: &str, radix: u32) -> Option<i64> {
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    let body = cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0o"))
        .or_else(|| cleaned.strip_prefix("0b"))
        .unwrap_or(&cleaned);
    i64::from_str_radix(body, radix).ok()
}

fn to_toml_value(v: &Value<'_>) -> toml::Value {
    match v {
        Value::String(s) => toml::Value::String(s.to_string()),
        Value::Integer(i) => {
            toml::Value::Integer(parse_integer(i.as_str(), i.radix()).unwrap_or(0))
        }
        Value::Float(f) => {
            toml::Value::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
        }
        Value::Boolean(b) => toml::Value::Boolean(*b),
        Value::Datetime(d) => toml::Value::Datetime(*d),
        Value::Array(a) => {
            toml::Value::Array(a.iter().map(|x| to_toml_value(x.get_ref())).collect())
        }
        Value::Table(t) => toml::Value::Table(to_toml_table(t)),
    }
}

fn to_toml_table(t: &Table<'_>) -> toml::Table {
    t.iter()
        .map(|(k, v)| (k.get_ref().to_string(), to_toml_value(v.get_ref())))
        .collect()
}
