//! The playbook file format, as people write and review it:
//!
//! ```toml
//! name = "agent-runtime"
//! description = "What it installs"
//! become = true                 # run tasks as root through sudo (per task too)
//!
//! [vars]                        # defaults; profiles, groups, nodes and -e override them
//! runtime_root = "/opt/maestro"
//!
//! [[task]]
//! name = "runtime directory"
//! dir = { path = "{{ runtime_root }}", mode = "0755" }
//! notify = ["restart runtime"]  # handlers run once at the end, only if this changed
//! when = "node.tags.env == 'prod'"
//! tags = ["layout"]
//!
//! [[handler]]
//! name = "restart runtime"
//! service = { name = "maestro-runtime", state = "restarted", command = "...", pidfile = "..." }
//! ```
//!
//! Each task has exactly one module: `dir`, `file`, `template`, `line`,
//! `absent`, `command`, `package`, `service`, `user`, `sysctl`, `checksum`.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::sot::diag::{Code, Diagnostic, Diagnostics, SourceFile};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub r#become: bool,
    pub become_user: Option<String>,
    #[serde(default)]
    pub vars: toml::Table,
    #[serde(default, rename = "task")]
    pub tasks: Vec<Spanned<Task>>,
    #[serde(default, rename = "handler")]
    pub handlers: Vec<Spanned<Task>>,
    /// Directories `src` files may come from besides the playbook's own
    /// (set by the caller: a profile's library, a directory the SoT allows).
    #[serde(skip)]
    pub src_roots: Vec<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub name: String,
    pub when: Option<String>,
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub r#become: Option<bool>,
    pub become_user: Option<String>,
    pub dir: Option<DirArgs>,
    pub file: Option<FileArgs>,
    pub template: Option<FileArgs>,
    pub line: Option<LineArgs>,
    pub absent: Option<AbsentArgs>,
    pub command: Option<CommandArgs>,
    pub package: Option<PackageArgs>,
    pub service: Option<ServiceArgs>,
    pub user: Option<UserArgs>,
    pub group: Option<GroupArgs>,
    pub sysctl: Option<SysctlArgs>,
    pub checksum: Option<ChecksumArgs>,
}

/// The one module a task uses.
#[derive(Debug, Clone, Copy)]
pub enum Module<'a> {
    Dir(&'a DirArgs),
    File(&'a FileArgs),
    Template(&'a FileArgs),
    Line(&'a LineArgs),
    Absent(&'a AbsentArgs),
    Command(&'a CommandArgs),
    Package(&'a PackageArgs),
    Service(&'a ServiceArgs),
    User(&'a UserArgs),
    Group(&'a GroupArgs),
    Sysctl(&'a SysctlArgs),
    Checksum(&'a ChecksumArgs),
}

impl Task {
    /// Every module the task names (exactly one in a valid playbook).
    pub fn modules(&self) -> Vec<Module<'_>> {
        let mut m = Vec::new();
        if let Some(a) = &self.dir {
            m.push(Module::Dir(a));
        }
        if let Some(a) = &self.file {
            m.push(Module::File(a));
        }
        if let Some(a) = &self.template {
            m.push(Module::Template(a));
        }
        if let Some(a) = &self.line {
            m.push(Module::Line(a));
        }
        if let Some(a) = &self.absent {
            m.push(Module::Absent(a));
        }
        if let Some(a) = &self.command {
            m.push(Module::Command(a));
        }
        if let Some(a) = &self.package {
            m.push(Module::Package(a));
        }
        if let Some(a) = &self.service {
            m.push(Module::Service(a));
        }
        if let Some(a) = &self.user {
            m.push(Module::User(a));
        }
        if let Some(a) = &self.group {
            m.push(Module::Group(a));
        }
        if let Some(a) = &self.sysctl {
            m.push(Module::Sysctl(a));
        }
        if let Some(a) = &self.checksum {
            m.push(Module::Checksum(a));
        }
        m
    }

    pub fn module(&self) -> Module<'_> {
        self.modules()[0]
    }
}

pub const MODULES: &str =
    "dir, file, template, line, absent, command, package, service, user, group, sysctl, checksum";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirArgs {
    pub path: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// `file` (inline `content` or a controller-side `src`) and `template`
/// (a minijinja template, inline or from `src`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    pub path: String,
    pub content: Option<String>,
    /// A file on the controller, relative to the playbook's directory.
    pub src: Option<String>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Never show this file's content in `--diff` output.
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Present,
    Absent,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineArgs {
    pub path: String,
    pub line: Option<String>,
    /// An extended regular expression: the last matching line is replaced by
    /// `line` (state present), or every matching line removed (state absent).
    pub regexp: Option<String>,
    #[serde(default = "present")]
    pub state: Presence,
    #[serde(default)]
    pub create: bool,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
    /// Never show the file's content in `--diff` output.
    #[serde(default)]
    pub sensitive: bool,
}

fn present() -> Presence {
    Presence::Present
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsentArgs {
    pub path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandArgs {
    /// Shell command; `{{ var }}` values are inserted shell-quoted.
    pub run: String,
    /// Skip when this path exists.
    pub creates: Option<String>,
    /// Skip when this path does not exist.
    pub removes: Option<String>,
    /// Skip when this command succeeds.
    pub unless: Option<String>,
    pub chdir: Option<String>,
    /// When the task counts as changed (default: whenever it ran); an
    /// expression over `rc`, `stdout`, `stderr`, or `false`.
    pub changed_when: Option<Condition>,
    /// When the task fails (default: `rc != 0`).
    pub failed_when: Option<Condition>,
}

/// `changed_when`/`failed_when`: a boolean or an expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Condition {
    Bool(bool),
    Expr(String),
}

impl Condition {
    pub fn source(&self) -> String {
        match self {
            Condition::Bool(b) => b.to_string(),
            Condition::Expr(e) => e.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Names {
    One(String),
    Many(Vec<String>),
}

impl Names {
    pub fn list(&self) -> Vec<&str> {
        match self {
            Names::One(s) => vec![s.as_str()],
            Names::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    pub name: Names,
    #[serde(default = "present")]
    pub state: Presence,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    pub name: String,
    pub state: ServiceState,
    pub enabled: Option<bool>,
    /// Without systemd: the command that runs the service in the foreground.
    pub command: Option<String>,
    /// Without systemd: where its PID is kept (default
    /// `/run/maestro/NAME.pid`); a directory only root can write.
    pub pidfile: Option<String>,
    /// Without systemd: the user the process runs as (a systemd unit has `User=`).
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserArgs {
    pub name: String,
    #[serde(default = "present")]
    pub state: Presence,
    #[serde(default)]
    pub system: bool,
    pub home: Option<String>,
    pub shell: Option<String>,
    pub uid: Option<u32>,
    /// Primary group (default: a group named like the user if there is one).
    pub group: Option<String>,
    /// Supplementary groups, added to (never removed from).
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub create_home: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupArgs {
    pub name: String,
    #[serde(default = "present")]
    pub state: Presence,
    #[serde(default)]
    pub system: bool,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlArgs {
    pub key: String,
    pub value: String,
    /// Where the setting is persisted (`""` for runtime only).
    #[serde(default = "sysctl_file")]
    pub file: String,
}

fn sysctl_file() -> String {
    "/etc/sysctl.d/60-maestro.conf".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksumArgs {
    pub path: String,
    pub sha256: String,
}

/// Read and validate a playbook file. Errors carry file:line:col.
pub fn load(path: &Path) -> Result<Playbook, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let f = SourceFile::new(path.to_path_buf(), String::new());
        Diagnostics(vec![f.diagnostic(
            Code::MissingFile,
            0..0,
            format!("cannot read playbook: {e}"),
        )])
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Playbook, Diagnostics> {
    let file = SourceFile::new(path.to_path_buf(), text.to_string());
    // Every key and type first, all at once; only a file that passes is built.
    let mut problems = super::schema::check(&file);
    if !problems.is_empty() {
        sort(&mut problems);
        return Err(Diagnostics(problems));
    }
    toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid playbook")
            .to_string();
        Diagnostics(vec![file.diagnostic(Code::BadValue, span, message)])
    })
}

fn sort(d: &mut [Diagnostic]) {
    d.sort_by_key(|d| (d.line, d.col));
}

/// Package names as apt, dnf and apk accept them (checked again after rendering).
pub fn is_package_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-._:".contains(&b))
}

/// Rules the type system cannot express.
pub(super) fn module_problem(m: Module<'_>) -> Option<String> {
    let mode_ok = |m: &Option<String>| {
        m.as_ref().is_none_or(|m| {
            (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b))
        }) || m.as_ref().is_some_and(|m| m.contains("{{"))
    };
    match m {
        Module::Dir(a) if !mode_ok(&a.mode) => Some(format!(
            "mode `{}` is not octal like \"0755\"",
            a.mode.as_deref().unwrap_or("")
        )),
        Module::Template(a) if a.content.is_none() && a.src.is_none() => {
            Some("give `content` or `src`".into())
        }
        Module::File(a)
            if a.content.is_none()
                && a.src.is_none()
                && a.mode.is_none()
                && a.owner.is_none()
                && a.group.is_none() =>
        {
            Some("give `content` or `src`, or only `mode`, `owner`, `group` to set on an existing file".into())
        }
        Module::File(a) | Module::Template(a) => {
            if !mode_ok(&a.mode) {
                Some(format!(
                    "mode `{}` is not octal like \"0644\"",
                    a.mode.as_deref().unwrap_or("")
                ))
            } else if a.content.is_some() && a.src.is_some() {
                Some("give one of `content` or `src`, not both".into())
            } else {
                None
            }
        }
        Module::Line(a) if !mode_ok(&a.mode) => Some(format!(
            "mode `{}` is not octal like \"0644\"",
            a.mode.as_deref().unwrap_or("")
        )),
        Module::Line(a) if a.state == Presence::Present && a.line.is_none() => {
            Some("state present needs `line`".into())
        }
        Module::Line(a) if a.line.is_none() && a.regexp.is_none() => {
            Some("give `line` or `regexp`".into())
        }
        Module::Command(a) => a
            .changed_when
            .iter()
            .map(|c| ("changed_when", c))
            .chain(a.failed_when.iter().map(|c| ("failed_when", c)))
            .find_map(|(what, c)| {
                super::cond::check(&c.source())
                    .err()
                    .map(|e| format!("{what} `{}`: {e}", c.source()))
            }),
        Module::Package(a) => a
            .name
            .list()
            .into_iter()
            .find(|n| !n.contains("{{") && !is_package_name(n))
            .map(|n| format!("`{n}` is not a package name")),
        Module::Service(a)
            if a.pidfile.is_some() && a.command.is_none() && a.state != ServiceState::Stopped =>
        {
            Some("a pidfile service needs `command` to start it".into())
        }
        Module::Sysctl(a)
            if !a
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
        {
            Some(format!("`{}` is not a sysctl key", a.key))
        }
        Module::Checksum(a)
            if !(a.sha256.contains("{{")
                || a.sha256.len() == 64 && a.sha256.bytes().all(|b| b.is_ascii_hexdigit())) =>
        {
            Some(format!("`{}` is not a sha256 digest", a.sha256))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_problems_give_five_diagnostics_in_source_order() {
        let text = "name = \"five\"\nbecme = true\n\n[vars]\na = \"{{ a }}\"\n\n\
            [[task]]\nname = \"one\"\ndir = { path = \"/x\", mood = \"0755\" }\n\n\
            [[task]]\nname = \"two\"\nfile = { path = \"/y\", mode = \"999\" }\n\n\
            [[task]]\nname = \"three\"\npackage = { name = \"curl\" }\nnotify = [\"restart\"]\n";
        let d = parse(Path::new("five.toml"), text).unwrap_err();
        let at: Vec<(Code, usize, usize)> = d.iter().map(|d| (d.code, d.line, d.col)).collect();
        assert_eq!(
            at,
            [
                (Code::UnknownKey, 2, 1),
                (Code::BadValue, 5, 5),
                (Code::UnknownKey, 9, 22),
                (Code::BadValue, 13, 8),
                (Code::DanglingRef, 18, 11),
            ],
            "{d}"
        );
        let shown = d.to_string();
        assert!(
            shown.starts_with(
                "error[unknown-key]: unknown key `becme` in the playbook\n --> five.toml:2:1"
            ),
            "{shown}"
        );
        assert!(shown.contains("mode `999` is not octal"), "{shown}");
        assert!(
            shown.ends_with("5 problems found; nothing was changed"),
            "{shown}"
        );
    }

    #[test]
    fn a_valid_playbook_with_every_new_option_parses() {
        let text = "name = \"ok\"\n[[task]]\nname = \"g\"\ngroup = { name = \"agent\", gid = 10, system = true }\n\
            [[task]]\nname = \"u\"\nuser = { name = \"agent\", group = \"agent\", groups = [\"audio\"], uid = 10, create_home = true }\n\
            [[task]]\nname = \"c\"\ncommand = { run = \"true\", changed_when = false, failed_when = \"rc > 1\" }\n\
            [[task]]\nname = \"l\"\nline = { path = \"/e\", line = \"A=1\", mode = \"0600\", owner = \"root\", sensitive = true }\n\
            [[task]]\nname = \"f\"\nfile = { path = \"/e\", mode = \"0600\" }\n";
        let pb = parse(Path::new("ok.toml"), text).unwrap();
        assert_eq!(pb.tasks.len(), 5);
        let bad = text.replace("rc > 1", "rc >");
        let d = parse(Path::new("ok.toml"), &bad).unwrap_err();
        assert!(d.to_string().contains("failed_when `rc >`"), "{d}");
    }
}
