//! Rewriting SoT files while keeping everything the operator wrote: comments,
//! blank lines, key order and formatting outside the table being changed.
//!
//! Each function takes a file's text and returns the new text; nothing here
//! touches the disk or git (see [`super::git`] for the transaction).

use toml_edit::{DocumentMut, InlineTable, Item, Table, Value};

use super::{Result, SotError};

/// The kinds of named tables maestro rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Agent,
    /// `[engaged.AGENT]` of killswitch.toml.
    Engaged,
    /// `[freeze.NAME]` of freeze.toml.
    Freeze,
    /// `[lesson.ID]` of lessons.toml.
    Lesson,
    /// `[token.NAME]` of tokens.toml.
    Token,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Agent => "agent",
            Kind::Engaged => "engaged",
            Kind::Freeze => "freeze",
            Kind::Lesson => "lesson",
            Kind::Token => "token",
        }
    }
}

fn parse(text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>()
        .map_err(|e| SotError::Refused(format!("the file is not valid TOML, fix it first: {e}")))
}

fn parent(doc: &mut DocumentMut, kind: Kind) -> Result<&mut Table> {
    let root = doc.as_table_mut();
    if !root.contains_key(kind.key()) {
        let mut t = Table::new();
        t.set_implicit(true);
        root.insert(kind.key(), Item::Table(t));
    }
    root[kind.key()]
        .as_table_mut()
        .ok_or_else(|| SotError::Refused(format!("`{}` is not a table in this file", kind.key())))
}

/// Append `[kind.name]` with `fields` (in the given order) at the end of the file.
pub fn add(text: &str, kind: Kind, name: &str, fields: Vec<(&str, Value)>) -> Result<String> {
    let mut doc = parse(text)?;
    // New tables go after every existing one, so the diff is a pure append.
    let next_position = doc
        .as_table()
        .get_values()
        .len()
        .max(max_position(doc.as_table()) + 1);
    let parent = parent(&mut doc, kind)?;
    if parent.contains_key(name) {
        return Err(SotError::Refused(format!(
            "{} `{name}` already exists",
            kind.key()
        )));
    }
    let mut table = Table::new();
    for (k, v) in fields {
        table.insert(k, Item::Value(v));
    }
    table.set_position(Some(next_position as isize));
    if !text.is_empty() && !text.ends_with("\n\n") {
        table.decor_mut().set_prefix("\n");
    }
    parent.insert(name, Item::Table(table));
    Ok(doc.to_string())
}

fn max_position(t: &Table) -> usize {
    let mut max = t.position().unwrap_or(0).max(0) as usize;
    for (_, item) in t.iter() {
        if let Item::Table(sub) = item {
            max = max.max(max_position(sub));
        }
    }
    max
}

/// Remove `[kind.name]` (and its sub-tables, and the comment lines just above it).
pub fn remove(text: &str, kind: Kind, name: &str) -> Result<String> {
    let mut doc = parse(text)?;
    let parent = parent(&mut doc, kind)?;
    if parent.remove(name).is_none() {
        return Err(SotError::Refused(format!(
            "{} `{name}` is not in this file",
            kind.key()
        )));
    }
    Ok(doc.to_string())
}

/// Set and unset tags of `[kind.name]`, keeping the other tags and their order.
pub fn retag(
    text: &str,
    kind: Kind,
    name: &str,
    set: &[(String, String)],
    unset: &[String],
) -> Result<String> {
    let mut doc = parse(text)?;
    let parent = parent(&mut doc, kind)?;
    let table = parent
        .get_mut(name)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| SotError::Refused(format!("{} `{name}` is not in this file", kind.key())))?;
    if !table.contains_key("tags") {
        table.insert("tags", Item::Value(Value::InlineTable(InlineTable::new())));
    }
    let tags = table["tags"].as_table_like_mut().ok_or_else(|| {
        SotError::Refused(format!("`tags` of {} `{name}` is not a table", kind.key()))
    })?;
    for key in unset {
        if tags.remove(key).is_none() {
            return Err(SotError::Refused(format!(
                "{} `{name}` has no tag `{key}` to remove",
                kind.key()
            )));
        }
    }
    for (k, v) in set {
        match tags.get_mut(k) {
            // Keep the key's position and spacing; only the value changes.
            Some(Item::Value(old)) => {
                let decor = old.decor().clone();
                *old = Value::from(v.as_str());
                *old.decor_mut() = decor;
            }
            _ => {
                tags.insert(k, Item::Value(Value::from(v.as_str())));
            }
        }
    }
    if let Some(inline) = table["tags"].as_inline_table_mut() {
        inline.fmt();
    }
    Ok(doc.to_string())
}

/// A string array value, formatted on one line.
pub fn string_array<'a>(items: impl IntoIterator<Item = &'a String>) -> Value {
    let mut a = toml_edit::Array::new();
    for i in items {
        a.push(i.as_str());
    }
    Value::Array(a)
}

/// An inline table of strings.
pub fn string_table(items: &[(String, String)]) -> Value {
    let mut t = InlineTable::new();
    for (k, v) in items {
        t.insert(k, Value::from(v.as_str()));
    }
    t.fmt();
    Value::InlineTable(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "# EU nodes\n[node.a]\naddress = \"10.0.0.1\" # first\ntags = { env = \"prod\", region = \"eu-west\" }\n\n# US nodes\n[node.b]\naddress = \"10.0.0.2\"\n";

    #[test]
    fn add_appends_a_table_and_keeps_comments() {
        let out = add(
            NODES,
            Kind::Node,
            "c",
            vec![("address", Value::from("10.0.0.3"))],
        )
        .unwrap();
        assert!(
            out.starts_with(NODES),
            "existing text must be untouched:\n{out}"
        );
        assert_eq!(&out[NODES.len()..], "\n[node.c]\naddress = \"10.0.0.3\"\n");
    }

    #[test]
    fn add_refuses_an_existing_name() {
        let err = add(NODES, Kind::Node, "a", vec![]).unwrap_err();
        assert!(err.to_string().contains("already exists"));
    }

    #[test]
    fn retag_changes_one_value_in_place() {
        let set = [("env".to_string(), "staging".to_string())];
        let out = retag(NODES, Kind::Node, "a", &set, &[]).unwrap();
        assert_eq!(out, NODES.replace("env = \"prod\"", "env = \"staging\""));
    }

    #[test]
    fn remove_drops_only_that_table() {
        let out = remove(NODES, Kind::Node, "b").unwrap();
        assert_eq!(
            out,
            "# EU nodes\n[node.a]\naddress = \"10.0.0.1\" # first\ntags = { env = \"prod\", region = \"eu-west\" }\n"
        );
    }
}
