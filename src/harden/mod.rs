//! Hardening baselines: CIS-style rules, each with an audit and a remediation
//! in shell, compiled into one script per node and run like a playbook.
//!
//! `--audit` only checks; `--apply` remediates the failing rules, then checks
//! them again. A remediation that would lock maestro out (its `guard` matches
//! how maestro connects) is refused with the reason, never applied.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::diag::{Diagnostic, Diagnostics, SourceFile};
use crate::fleet::quote::sh_quote;
use crate::playbook::compile::{Planned, Script, new_nonce};
use crate::sot::paths::{Source, read_source};

mod compliance;
pub mod coverage;

pub use compliance::{Compliance, SectionCompliance, carry_refusals, compliance, node_compliance};

/// The helper functions rules call (`_h_sshd_set`, `_h_sysctl_set`, …).
pub const FILE_LIBRARY: &str = "lib.sh";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub name: String,
    pub description: Option<String>,
    /// Another baseline whose rules come first.
    pub extends: Option<String>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub category: String,
    pub rationale: Option<String>,
    /// Exits non-zero when the rule does not apply to the node.
    pub applies: Option<String>,
    /// Exits 0 when compliant; otherwise prints why not.
    pub audit: String,
    pub remediate: String,
    /// What the remediation could lock out (`root-login`).
    pub guard: Option<String>,
    /// The CIS Debian Linux 12 benchmark items this rule covers (`5.1.12`).
    #[serde(default)]
    pub cis: Vec<String>,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A baseline with its `extends` chain resolved, and the helper library.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub name: String,
    pub rules: Vec<Rule>,
    pub library: String,
}

impl Loaded {
    /// Only the rules of `section` (a category such as `ssh`, or a CIS item
    /// prefix such as `5.1`); an error names the sections there are.
    pub fn only_section(mut self, section: &str) -> Result<Loaded, NoSuchSection> {
        let before = self.rules.clone();
        self.rules.retain(|r| coverage::in_section(r, section));
        if self.rules.is_empty() {
            let mut categories: Vec<String> = Vec::new();
            for r in &before {
                if !categories.contains(&r.category) {
                    categories.push(r.category.clone());
                }
            }
            return Err(NoSuchSection {
                baseline: self.name,
                section: section.to_string(),
                categories,
            });
        }
        Ok(self)
    }
}

/// `--section` matched no rule.
#[derive(Debug, thiserror::Error)]
#[error(
    "no rule of hardening baseline `{baseline}` is in section `{section}`: give a category ({}) or a CIS item prefix such as 5.1 or 6.2.3",
    categories.join(", ")
)]
pub struct NoSuchSection {
    pub baseline: String,
    pub section: String,
    pub categories: Vec<String>,
}

/// Why a baseline cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("there is no hardening baseline `{name}` ({} does not exist)", path.display())]
    NotFound { name: String, path: PathBuf },
    #[error("cannot read hardening baseline `{name}` ({}): {source}", path.display())]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid baseline (or leads outside the directory).
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error("hardening baseline `{name}` extends itself: {}", chain.join(" -> "))]
    Cycle { name: String, chain: Vec<String> },
    #[error("rule id `{id}` is used twice (again in baseline `{baseline}`, {})", path.display())]
    DuplicateRule {
        id: String,
        baseline: String,
        path: PathBuf,
    },
}

pub type Result<T, E = LoadError> = std::result::Result<T, E>;

/// How many `extends` a chain may follow before it is taken for a loop.
const MAX_EXTENDS: usize = 8;

/// Check one baseline file's text: the problems that keep it from loading.
pub fn check(file: &SourceFile) -> Diagnostics {
    match parse(file) {
        Ok(_) => Diagnostics::default(),
        Err(d) => d,
    }
}

/// Check every baseline in `dir` (what `sot check` reports about them).
pub fn check_library(dir: &Path) -> Diagnostics {
    crate::sot::paths::check_dir(dir, check)
}

fn parse(file: &SourceFile) -> Result<Baseline, Diagnostics> {
    toml::from_str(&file.text).map_err(|e| Diagnostics::one(Diagnostic::from_toml_error(file, &e)))
}

/// Load baseline `name` from `dir` (following `extends`).
pub fn load(dir: &Path, name: &str) -> Result<Loaded> {
    let mut chain: Vec<Baseline> = Vec::new();
    let mut next = Some(name.to_string());
    while let Some(n) = next {
        if chain.iter().any(|b| b.name == n) || chain.len() > MAX_EXTENDS {
            let mut names: Vec<String> = chain.iter().map(|b| b.name.clone()).collect();
            names.push(n);
            return Err(LoadError::Cycle {
                name: name.to_string(),
                chain: names,
            });
        }
        let path = dir.join(format!("{n}.toml"));
        let read_error = |source| LoadError::Read {
            name: n.clone(),
            path: path.clone(),
            source,
        };
        let file = match read_source(dir, &path, path.clone()).map_err(read_error)? {
            Source::Text(file) => file,
            Source::Unreadable(_, d) => return Err(LoadError::Invalid(Diagnostics::one(d))),
            Source::Missing => return Err(LoadError::NotFound { name: n, path }),
        };
        let b = parse(&file).map_err(LoadError::Invalid)?;
        next = b.extends.clone();
        chain.push(b);
    }
    let mut rules: Vec<Rule> = Vec::new();
    for b in chain.into_iter().rev() {
        for r in b.rules {
            if rules.iter().any(|x| x.id == r.id) {
                return Err(LoadError::DuplicateRule {
                    id: r.id,
                    path: dir.join(format!("{}.toml", b.name)),
                    baseline: b.name,
                });
            }
            rules.push(r);
        }
    }
    // The library is shipped to every node: a symlink out of the directory
    // must not put another file of this machine into the script.
    let lib_path = dir.join(FILE_LIBRARY);
    let library = match read_source(dir, &lib_path, lib_path.clone()) {
        Ok(Source::Text(file)) => file.text,
        Ok(Source::Missing) => String::new(),
        Ok(Source::Unreadable(_, d)) => return Err(LoadError::Invalid(Diagnostics::one(d))),
        Err(source) => {
            return Err(LoadError::Read {
                name: name.to_string(),
                path: lib_path,
                source,
            });
        }
    };
    Ok(Loaded {
        name: name.to_string(),
        rules,
        library,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Check every rule; change nothing.
    Audit,
    /// Report what `Apply` would remediate (or refuse); change nothing.
    Check,
    /// Remediate the failing rules.
    Apply,
}

/// Why a rule's remediation must not run for a controller logging in as `login_user`.
pub fn refusal(rule: &Rule, login_user: &str) -> Option<String> {
    match rule.guard.as_deref() {
        Some("root-login") if login_user == "root" => Some(
            "maestro connects to this node as root: disabling root login would lock it out. \
             Connect as a sudo user (node `user` or -u) first, then apply this rule"
                .into(),
        ),
        _ => None,
    }
}

/// The audit (or apply) script for one node.
pub fn compile(baseline: &Loaded, mode: Mode, login_user: &str) -> Script {
    let nonce = new_nonce();
    let mut text = String::new();
    // The umask this SSH session was given (by sshd and its PAM stack), before
    // the script sets its own: what a login-umask rule measures.
    text.push_str("_H_SESSION_UMASK=$(umask)\n_m_lib=");
    text.push_str(&sh_quote(crate::playbook::LIBRARY));
    text.push_str("\neval \"$_m_lib\"\n");
    text.push_str(&baseline.library);
    text.push('\n');
    text.push_str(&format!(
        "_m_nonce={nonce}; _m_check=0; _m_diff=0\numask 022\n\
         _m_tmp=$(mktemp -d \"${{TMPDIR:-/tmp}}/maestro.XXXXXX\") || {{ echo 'maestro: cannot create a temporary directory' >&2; exit 90; }}\n\
         trap 'rm -rf \"$_m_tmp\"' EXIT\n_m_facts\n{RULE_FN}"
    ));
    let mut tasks = Vec::new();
    for (index, rule) in baseline.rules.iter().enumerate() {
        let refused = refusal(rule, login_user).unwrap_or_default();
        text.push_str(&format!(
            "_m_begin {index}\n_m_rule {} {} {} {} {}\n_m_end {index}\n",
            sh_quote(rule.applies.as_deref().unwrap_or("")),
            sh_quote(&rule.audit),
            sh_quote(&rule.remediate),
            match mode {
                Mode::Apply => "apply",
                Mode::Check => "check",
                Mode::Audit => "audit",
            },
            sh_quote(&refused)
        ));
        tasks.push(Planned {
            index,
            name: format!("{} {}", rule.id, rule.title),
            handler: false,
            skipped: None,
        });
    }
    text.push_str("_m_emit done ok\n");
    Script {
        text,
        nonce,
        tasks,
        as_root: login_user != "root",
    }
}

/// One rule: n/a (skipped), compliant (ok), remediated (changed; in check
/// mode: would be), refused (its remediation would lock maestro out), or
/// failing.
const RULE_FN: &str = r#"_m_rule() { # applies audit remediate mode refused
    if [ -n "$1" ] && ! (eval "$1") </dev/null >/dev/null 2>&1; then _m_status=skipped; _m_msg="not applicable"; return; fi
    (eval "$2") </dev/null >"$_m_tmp/audit" 2>&1; _m_rc=$?
    [ "$_m_rc" = 0 ] && { _m_ok "compliant"; return; }
    IFS= read -r why <"$_m_tmp/audit"
    [ "$_m_rc" = 3 ] && { _m_status=unknown; _m_msg="cannot check: ${why:-no reason given}"; return; }
    [ "$4" = audit ] && { _m_fail "${why:-audit failed}"; return; }
    [ -z "$5" ] || { _m_status=refused; _m_msg="refused: $5"; return; }
    [ "$4" = check ] && { _m_changed "would remediate: ${why:-not compliant}"; return; }
    if ! (eval "$3") </dev/null >"$_m_tmp/out" 2>&1; then _m_block out "$_m_tmp/out"; _m_fail "remediation failed: $(tail -n 1 "$_m_tmp/out")"; return; fi
    (eval "$2") </dev/null >"$_m_tmp/audit" 2>&1; _m_rc=$?
    [ "$_m_rc" = 0 ] && { _m_changed "remediated: ${why:-was not compliant}"; return; }
    [ "$_m_rc" = 3 ] && { _m_status=unknown; _m_msg="remediated, but cannot check: $(head -n 1 "$_m_tmp/audit")"; return; }
    _m_fail "still failing after remediation: $(head -n 1 "$_m_tmp/audit")"
}
"#;

/// Audit or apply `baseline` on every node: the same executor and script
/// runner as playbooks.
pub async fn run(
    specs: Vec<crate::fleet::ssh::ConnectSpec>,
    baseline: std::sync::Arc<Loaded>,
    mode: Mode,
    become_password: Option<String>,
    opts: crate::fleet::RunOptions,
    events: crate::fleet::EventSink,
    cancel: crate::fleet::Cancel,
) -> crate::fleet::RunReport {
    crate::fleet::run_nodes(specs, opts, events, cancel, move |session, ctx| {
        let baseline = baseline.clone();
        let password = become_password.clone();
        async move {
            let compile = |_: Option<&_>| Ok(compile(&baseline, mode, &ctx.login_user));
            let result = crate::playbook::run::run_script(
                &session,
                &ctx,
                compile,
                false,
                password.as_deref(),
            )
            .await;
            // An audit is a measurement of the node: the store keeps it.
            if mode == Mode::Audit {
                ctx.events.send(node_compliance(&baseline, &result));
            }
            result
        }
    })
    .await
}

/// The baseline a run uses: the one named, else the default profile's, else `baseline`.
pub fn default_name(sot: &crate::sot::Sot) -> String {
    sot.settings
        .default_profile
        .as_ref()
        .and_then(|p| sot.profiles.get(p))
        .and_then(|p| p.hardening.clone())
        .unwrap_or_else(|| "baseline".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "[[rule]]\nid = \"r1\"\ntitle = \"t\"\nseverity = \"high\"\ncategory = \"c\"\naudit = \"true\"\nremediate = \"true\"\n";

    #[test]
    fn load_errors_say_which_baseline_and_why() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("a.toml"), "name = \"a\"\nextends = \"b\"\n").unwrap();
        std::fs::write(dir.join("b.toml"), "name = \"b\"\nextends = \"a\"\n").unwrap();
        let e = load(dir, "a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "hardening baseline `a` extends itself: a -> b -> a"
        );
        assert!(matches!(load(dir, "zz"), Err(LoadError::NotFound { .. })));
        std::fs::write(dir.join("c.toml"), format!("name = \"c\"\n{RULE}{RULE}")).unwrap();
        assert!(matches!(
            load(dir, "c"),
            Err(LoadError::DuplicateRule { id, .. }) if id == "r1"
        ));
        std::fs::write(
            dir.join("d.toml"),
            format!("name = \"d\"\n{RULE}remedy = 1\n"),
        )
        .unwrap();
        let Err(LoadError::Invalid(d)) = load(dir, "d") else {
            panic!("an unknown field is a diagnostic")
        };
        assert_eq!(
            (d.0[0].code, d.0[0].line),
            (crate::diag::Code::UnknownKey, 9)
        );
        // check_library reports every broken file at once.
        let all = check_library(dir);
        assert_eq!(all.len(), 1, "{all}");
    }

    #[test]
    fn a_library_symlinked_out_of_the_directory_is_not_shipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hardening");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("b.toml"), format!("name = \"b\"\n{RULE}")).unwrap();
        std::fs::write(tmp.path().join("secret"), "SECRET\n").unwrap();
        std::os::unix::fs::symlink("../secret", dir.join(FILE_LIBRARY)).unwrap();
        let Err(LoadError::Invalid(d)) = load(&dir, "b") else {
            panic!("lib.sh outside the directory must be refused")
        };
        assert_eq!(d.0[0].code, crate::diag::Code::OutsideSot);
    }
}
