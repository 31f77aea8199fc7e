//! The fleet filter (`/`): whitespace-separated terms, all of which must
//! match. `key=value` matches a tag exactly (`group=NAME` matches group
//! membership, unless the SoT has a tag named `group`); any other term is a
//! case-insensitive substring of the name, address, groups or tags.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Tag { key: String, value: String },
    Text(String),
}

/// What a filter looks at in one node.
pub struct Subject<'a> {
    pub tags: &'a BTreeMap<String, String>,
    pub groups: &'a [String],
    /// Name, address, groups and `key=value` tags, lowercased.
    pub haystack: &'a str,
}

impl Filter {
    pub fn parse(text: &str) -> Filter {
        let terms = text
            .split_whitespace()
            .map(|t| match t.split_once('=') {
                Some((k, v)) if !k.is_empty() => Term::Tag {
                    key: k.to_string(),
                    value: v.to_string(),
                },
                _ => Term::Text(t.to_lowercase()),
            })
            .collect();
        Filter { terms }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, s: &Subject<'_>) -> bool {
        self.terms.iter().all(|t| match t {
            Term::Tag { key, value } => match s.tags.get(key) {
                Some(v) => v == value,
                None if key == "group" => s.groups.iter().any(|g| g == value),
                None => false,
            },
            Term::Text(text) => s.haystack.contains(text.as_str()),
        })
    }
}

/// The lowercased text a substring term searches.
pub fn haystack(
    name: &str,
    address: &str,
    groups: &[String],
    tags: &BTreeMap<String, String>,
) -> String {
    let mut h = format!("{name} {address}");
    for g in groups {
        h.push(' ');
        h.push_str(g);
    }
    for (k, v) in tags {
        h.push(' ');
        h.push_str(k);
        h.push('=');
        h.push_str(v);
    }
    h.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject_matches(filter: &str) -> bool {
        let tags: BTreeMap<String, String> = [("env", "prod"), ("region", "eu-west")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let groups = vec!["gpu".to_string()];
        let h = haystack("GPU-eu-01", "10.20.2.21", &groups, &tags);
        Filter::parse(filter).matches(&Subject {
            tags: &tags,
            groups: &groups,
            haystack: &h,
        })
    }

    #[test]
    fn terms() {
        assert!(subject_matches(""));
        assert!(subject_matches("gpu-EU"));
        assert!(subject_matches("10.20.2"));
        assert!(subject_matches("region=eu-west"));
        assert!(!subject_matches("region=eu"), "tag values match exactly");
        assert!(subject_matches("eu-we"), "substring over tag values");
        assert!(subject_matches("group=gpu env=prod gpu"));
        assert!(
            !subject_matches("group=gpu env=staging"),
            "all terms must match"
        );
        assert!(
            !subject_matches("role=inference"),
            "a missing tag does not match"
        );
    }
}
