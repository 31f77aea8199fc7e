//! Target selection (`--limit`), in Ansible's pattern language:
//! `gpu`, `gpu-eu-*`, `region=eu-west`, `gpu:&region=eu-west:!gpu-eu-04`.
//!
//! Terms are separated by `,` or `:`. A plain term adds its nodes, `&term`
//! keeps only nodes also in the term, `!term` removes the term's nodes. A term
//! is `all` (or `*`), a group, a node name, a glob over node and group names
//! (`*`, `?`, `[abc]`), or a tag selector `key=value` (the value may be a glob).
//! A term that matches nothing is an error, never a silent empty set.

use std::collections::HashSet;

use crate::sot::Sot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error(
        "empty target: give node names, groups, globs or tag selectors (e.g. `all`, `gpu`, `region=eu-west`)"
    )]
    Empty,
    #[error("`{term}` matches no node, group or tag{hint}")]
    NoMatch { term: String, hint: String },
    #[error("`{0}`: a pattern cannot start with `&` or `!` alone")]
    Dangling(String),
}

/// Resolve `pattern` to indices into `sot.nodes`, in SoT order.
pub fn select(sot: &Sot, pattern: &str) -> Result<Vec<usize>, TargetError> {
    let terms: Vec<&str> = pattern
        .split([',', ':'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if terms.is_empty() {
        return Err(TargetError::Empty);
    }
    let mut selected: HashSet<usize> = HashSet::new();
    // Like Ansible: unions first, then intersections, then exclusions, so the
    // order the operator writes them in does not change the result.
    let mut intersections = Vec::new();
    let mut exclusions = Vec::new();
    for term in &terms {
        if let Some(t) = term.strip_prefix('&') {
            intersections.push(t);
        } else if let Some(t) = term.strip_prefix('!') {
            exclusions.push(t);
        } else {
            selected.extend(matches(sot, term)?);
        }
    }
    if selected.is_empty() && !(intersections.is_empty() && exclusions.is_empty()) {
        // `!gpu` alone means "everything but gpu", as in Ansible.
        selected.extend(0..sot.nodes.len());
    }
    for t in intersections {
        if t.is_empty() {
            return Err(TargetError::Dangling(pattern.to_string()));
        }
        let keep: HashSet<usize> = matches(sot, t)?.into_iter().collect();
        selected.retain(|i| keep.contains(i));
    }
    for t in exclusions {
        if t.is_empty() {
            return Err(TargetError::Dangling(pattern.to_string()));
        }
        for i in matches(sot, t)? {
            selected.remove(&i);
        }
    }
    let mut out: Vec<usize> = selected.into_iter().collect();
    out.sort_unstable();
    Ok(out)
}

fn matches(sot: &Sot, term: &str) -> Result<Vec<usize>, TargetError> {
    let all = || (0..sot.nodes.len()).collect::<Vec<_>>();
    let found: Vec<usize> = if term == "all" || term == "*" {
        all()
    } else if let Some((key, value)) = term.split_once('=') {
        sot.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.tags.get(key).is_some_and(|v| wildmatch(value, v)))
            .map(|(i, _)| i)
            .collect()
    } else if sot.groups.contains_key(term) {
        in_groups(sot, |g| g == term)
    } else if let Some(n) = sot.node(term) {
        vec![sot.nodes.iter().position(|x| x.name == n.name).unwrap_or(0)]
    } else if term.contains(['*', '?', '[']) {
        let mut v: Vec<usize> = sot
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| wildmatch(term, &n.name))
            .map(|(i, _)| i)
            .collect();
        v.extend(in_groups(sot, |g| wildmatch(term, g)));
        v
    } else {
        Vec::new()
    };
    if found.is_empty() {
        let names = sot
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .chain(sot.groups.keys().map(String::as_str));
        let hint = crate::sot::diag::suggest(term, names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(TargetError::NoMatch {
            term: term.to_string(),
            hint,
        });
    }
    Ok(found)
}

fn in_groups(sot: &Sot, want: impl Fn(&str) -> bool) -> Vec<usize> {
    sot.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.groups.iter().any(|g| want(g)))
        .map(|(i, _)| i)
        .collect()
}

/// Shell-style wildcard match: `*` any run, `?` one character, `[abc]`/`[a-z]`/`[!a]` a class.
pub fn wildmatch(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Match `c` against the class starting at `p[start] == '['`; returns (matched, index after `]`).
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    (i < p.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sot() -> Sot {
        crate::sot::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sot"
        )))
        .unwrap()
    }

    fn names(sot: &Sot, pattern: &str) -> Vec<String> {
        select(sot, pattern)
            .unwrap()
            .into_iter()
            .map(|i| sot.nodes[i].name.clone())
            .collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildmatch("gpu-*", "gpu-eu-01"));
        assert!(wildmatch("gpu-??-01", "gpu-eu-01"));
        assert!(wildmatch("gpu-eu-0[1-2]", "gpu-eu-02"));
        assert!(!wildmatch("gpu-eu-0[!1-2]", "gpu-eu-02"));
        assert!(wildmatch("*", ""));
        assert!(!wildmatch("gpu", "gpu-eu-01"));
        assert!(wildmatch("*-01", "gpu-eu-01"));
        assert!(wildmatch("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn groups_tags_globs_intersections_and_exclusions() {
        let s = sot();
        assert_eq!(select(&s, "all").unwrap().len(), 12);
        assert_eq!(
            names(&s, "gpu:&region=eu-west:!gpu-eu-04"),
            ["gpu-eu-01", "gpu-eu-02", "gpu-eu-03"]
        );
        assert_eq!(
            names(&s, "gw-*,bastion-eu-01"),
            [
                "bastion-eu-01",
                "gw-eu-01",
                "gw-eu-02",
                "gw-us-01",
                "gw-us-02"
            ]
        );
        // Group members declared on the group count too.
        assert_eq!(names(&s, "canary"), ["gpu-eu-03", "gpu-us-02"]);
        assert_eq!(
            names(&s, "!gpu:!gateways:&jurisdiction=us"),
            ["batch-us-01"]
        );
        assert_eq!(
            names(&s, "region=us-*:&role=gateway"),
            ["gw-us-01", "gw-us-02"]
        );
    }

    #[test]
    fn a_term_that_matches_nothing_is_an_error_with_a_hint() {
        let s = sot();
        let e = select(&s, "gpu-eu-1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`gpu-eu-1` matches no node, group or tag (did you mean `gpu-eu-01`?)"
        );
        assert!(matches!(
            select(&s, "region=mars"),
            Err(TargetError::NoMatch { .. })
        ));
        assert_eq!(select(&s, " , "), Err(TargetError::Empty));
    }
}
