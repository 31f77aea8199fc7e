//! Compile a playbook for one node into one POSIX `sh` script.
//!
//! Every value that reaches the script is rendered on the controller and then
//! passed to a library function as one single-quoted word ([`sh_quote`]);
//! command strings get their variables quoted by the shell renderer. The
//! script reports each task through nonce-tagged markers (see `lib.sh`).

use std::path::{Path, PathBuf};

use minijinja::Value;
use sha2::{Digest, Sha256};

use super::cond;
use super::model::{Module, Playbook, Presence, ServiceState, Task};
use super::vars::Renderer;
use crate::fleet::quote::sh_quote;

/// Why one task cannot be compiled for a node (rendering, a file it reads,
/// a value the module refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TaskError(pub String);

impl From<super::vars::RenderError> for TaskError {
    fn from(e: super::vars::RenderError) -> TaskError {
        TaskError(e.0)
    }
}

/// Options of one run, the same for every node.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub check: bool,
    pub diff: bool,
    /// Run only tasks with one of these tags (empty: all).
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    /// `--become`: run every task through sudo.
    pub r#become: bool,
    pub become_user: Option<String>,
}

/// A task as planned for one node.
#[derive(Debug, Clone)]
pub struct Planned {
    pub index: usize,
    pub name: String,
    pub handler: bool,
    /// Why the task will not run (its `when` is false, or tags exclude it).
    pub skipped: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    pub nonce: String,
    pub tasks: Vec<Planned>,
    /// Whether the script must run as root (some task uses become).
    pub as_root: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("task `{task}`: {message}")]
    Task { task: String, message: String },
    /// A variable that is a template could not be rendered (or is a cycle).
    #[error("{0}")]
    Vars(super::vars::RenderError),
}

/// Does anything in the playbook read `facts` while it is compiled? Then
/// they are gathered first, in an exec of its own (a round trip per node),
/// so only when needed: a `when`, a template's text, or a template file
/// (read from the library) that mentions them. A template whose `src` is
/// itself templated, or cannot be read, counts as using them.
pub fn uses_facts(pb: &Playbook, base_dir: &Path) -> bool {
    let mentions = |s: &str| s.contains("facts");
    pb.tasks.iter().chain(&pb.handlers).any(|t| {
        let t = t.get_ref();
        t.when.as_deref().is_some_and(mentions)
            || match t.module() {
                Module::Template(a) => {
                    a.content.as_deref().is_some_and(mentions)
                        || a.src.as_deref().is_some_and(|src| {
                            src.contains("{{")
                                || read_src(src, base_dir, &pb.src_roots)
                                    .map_or(true, |text| mentions(&text))
                        })
                }
                _ => false,
            }
    })
}

pub fn new_nonce() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The script for one node. `ctx` holds its variables, `node`, and maybe `facts`.
pub fn compile(
    pb: &Playbook,
    base_dir: &Path,
    ctx: &Value,
    login_user: &str,
    opts: &Options,
    renderer: &Renderer,
) -> Result<Script, CompileError> {
    let resolved = super::vars::resolve(ctx, renderer).map_err(CompileError::Vars)?;
    let ctx = &resolved;
    let nonce = new_nonce();
    let playbook_become = pb.r#become || opts.r#become;
    let task_become = |t: &Task| t.r#become.unwrap_or(playbook_become);
    let as_root = login_user != "root"
        && pb
            .tasks
            .iter()
            .chain(&pb.handlers)
            .any(|t| task_become(t.get_ref()));
    let script_user = if as_root || login_user == "root" {
        "root"
    } else {
        login_user
    };

    let mut text = String::with_capacity(super::LIBRARY.len() + 4096);
    text.push_str("_m_lib=");
    text.push_str(&sh_quote(super::LIBRARY));
    text.push_str("\neval \"$_m_lib\"\n");
    text.push_str(&format!(
        "_m_nonce={nonce}; _m_check={}; _m_diff={}\numask 022\n\
         _m_tmp=$(mktemp -d \"${{TMPDIR:-/tmp}}/maestro.XXXXXX\") || {{ echo 'maestro: cannot create a temporary directory' >&2; exit 90; }}\n\
         trap _m_cleanup EXIT\n_m_facts\n",
        u8::from(opts.check),
        u8::from(opts.diff)
    ));

    let handler_index = |name: &str| {
        pb.tasks.len()
            + pb.handlers
                .iter()
                .position(|h| h.get_ref().name == name)
                .unwrap_or(0)
    };
    let mut planned = Vec::new();
    let mut body_text = String::new();
    let mut prefetch: Vec<String> = Vec::new();
    let all = pb
        .tasks
        .iter()
        .map(|t| (t, false))
        .chain(pb.handlers.iter().map(|h| (h, true)));
    for (index, (spanned, handler)) in all.enumerate() {
        let task = spanned.get_ref();
        let err = |message: String| CompileError::Task {
            task: task.name.clone(),
            message,
        };
        let mut skipped = None;
        // Tags select tasks; a handler is filtered only by the tags it carries itself.
        if !handler && !opts.tags.is_empty() && !task.tags.iter().any(|t| opts.tags.contains(t)) {
            skipped = Some("not selected by --tags".to_string());
        } else if task.tags.iter().any(|t| opts.skip_tags.contains(t)) {
            skipped = Some("excluded by --skip-tags".to_string());
        }
        if skipped.is_none()
            && let Some(when) = &task.when
            && !renderer
                .condition(when, ctx)
                .map_err(|e| err(format!("when `{when}`: {e}")))?
        {
            skipped = Some(format!("when: {when}"));
        }
        planned.push(Planned {
            index,
            name: task.name.clone(),
            handler,
            skipped: skipped.clone(),
        });
        if skipped.is_some() {
            continue;
        }
        let call = module_call(task, base_dir, &pb.src_roots, ctx, renderer)
            .map_err(|e| err(e.to_string()))?;
        let user = if task_become(task) {
            task.become_user
                .clone()
                .or_else(|| pb.become_user.clone())
                .or_else(|| opts.become_user.clone())
                .unwrap_or_else(|| "root".into())
        } else {
            login_user.to_string()
        };
        let call = if user == script_user {
            prefetch.extend(touched_paths(task, ctx, renderer));
            call
        } else {
            format!("_m_as {} {}", sh_quote(&user), sh_quote(&call))
        };
        let body = format!("_m_begin {index}\n{call}\n_m_end {index}\n");
        let text = &mut body_text;
        if handler {
            // _m_notified_at: the last task that asked for this handler (a
            // service started after it needs no restart).
            text.push_str(&format!(
                "if [ -n \"${{_m_notify_{index}:-}}\" ]; then\n_m_notified_at=$_m_notify_{index}\n{body}fi\n"
            ));
        } else {
            text.push_str(&body);
        }
        text.push_str("if [ \"$_m_status\" = failed ]; then _m_emit done failed; exit 0; fi\n");
        for h in &task.notify {
            text.push_str(&format!(
                "[ \"$_m_status\" = changed ] && _m_notify_{}={index}\n",
                handler_index(h)
            ));
        }
    }
    // One stat (and one sha256sum) for every path the tasks look at.
    prefetch.retain(|p| !p.is_empty() && !p.contains(['\n', '\t']));
    let mut seen = std::collections::HashSet::new();
    prefetch.retain(|p| seen.insert(p.clone()));
    if !prefetch.is_empty() {
        text.push_str("_m_prefetch");
        for p in &prefetch {
            text.push(' ');
            text.push_str(&sh_quote(p));
        }
        text.push('\n');
    }
    text.push_str(&body_text);
    text.push_str("_m_emit done ok\n");
    Ok(Script {
        text,
        nonce,
        tasks: planned,
        as_root,
    })
}

/// The paths a task reads attributes of (prefetched in one `stat`).
fn touched_paths(task: &Task, ctx: &Value, r: &Renderer) -> Vec<String> {
    let t = |s: &str| r.text(s, ctx).unwrap_or_default();
    match task.module() {
        Module::Dir(a) => vec![t(&a.path)],
        Module::File(a) | Module::Template(a) => vec![t(&a.path)],
        Module::Line(a) => vec![t(&a.path)],
        Module::Absent(a) => vec![t(&a.path)],
        Module::Checksum(a) => vec![t(&a.path)],
        Module::Sysctl(a) => vec![t(&a.file)],
        Module::Service(a) => {
            let pidfile = pidfile(a, &t(&a.name), ctx, r).unwrap_or_default();
            let dir = pidfile
                .rsplit_once('/')
                .map(|(d, _)| if d.is_empty() { "/" } else { d })
                .unwrap_or(".")
                .to_string();
            vec![dir, pidfile]
        }
        _ => Vec::new(),
    }
}

/// Where a service's pidfile is: the playbook's, or `/run/maestro/NAME.pid`.
fn pidfile(
    a: &super::model::ServiceArgs,
    name: &str,
    ctx: &Value,
    r: &Renderer,
) -> Result<String, TaskError> {
    match &a.pidfile {
        Some(p) => Ok(r.text(p, ctx)?),
        None if name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
            && !name.starts_with('.') =>
        {
            Ok(format!("/run/maestro/{name}.pid"))
        }
        None => Err(TaskError(format!(
            "service `{name}`: set `pidfile` (the name cannot be a file name)"
        ))),
    }
}

/// Read a `src` file, refusing anything outside the playbook's library
/// directories once symlinks are resolved: an absolute path, `../`, or a
/// link out of the library would ship a controller file to the nodes.
fn read_src(src: &str, base_dir: &Path, extra_roots: &[PathBuf]) -> Result<String, TaskError> {
    let path = base_dir.join(src);
    let real = path
        .canonicalize()
        .map_err(|e| TaskError(format!("cannot read {}: {e}", path.display())))?;
    let roots: Vec<PathBuf> = std::iter::once(base_dir)
        .chain(extra_roots.iter().map(PathBuf::as_path))
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    if !roots.iter().any(|root| real.starts_with(root)) {
        return Err(TaskError(format!(
            "src `{src}` is {}, outside the playbook library {}; only files under it are sent to nodes",
            real.display(),
            base_dir.display()
        )));
    }
    std::fs::read_to_string(&real)
        .map_err(|e| TaskError(format!("cannot read {}: {e}", path.display())))
}

/// How the `line` module matches lines, decided here so that the common
/// regexps (`^KEY=`) are matched with `case` on the node instead of grep.
pub(crate) fn line_matcher<'a>(regexp: Option<&'a str>, line: &'a str) -> (&'static str, &'a str) {
    let Some(re) = regexp else {
        return ("exact", line);
    };
    let (anchored, rest) = match re.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, re),
    };
    let (ended, body) = match rest.strip_suffix('$') {
        Some(b) if !b.ends_with('\\') => (true, b),
        _ => (false, rest),
    };
    let literal = !body.is_empty()
        && !body.contains([
            '\\', '.', '[', ']', '(', ')', '*', '+', '?', '{', '}', '|', '^', '$',
        ]);
    match (literal, anchored, ended) {
        (true, true, true) => ("exact", body),
        (true, true, false) => ("prefix", body),
        (true, false, false) => ("contains", body),
        _ => ("ere", re),
    }
}

/// The library call that performs one task's module.
fn module_call(
    task: &Task,
    base_dir: &Path,
    src_roots: &[PathBuf],
    ctx: &Value,
    r: &Renderer,
) -> Result<String, TaskError> {
    let t = |s: &str| r.text(s, ctx);
    let opt = |s: &Option<String>| -> Result<String, TaskError> {
        s.as_deref()
            .map(t)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(TaskError::from)
    };
    let q = |s: &str| sh_quote(s);
    let presence = |p: Presence| {
        if p == Presence::Present {
            "present"
        } else {
            "absent"
        }
    };
    Ok(match task.module() {
        Module::Dir(a) => format!(
            "_m_dir {} {} {} {}",
            q(&t(&a.path)?),
            q(&opt(&a.mode)?),
            q(&opt(&a.owner)?),
            q(&opt(&a.group)?)
        ),
        Module::File(a) | Module::Template(a) => {
            let raw = match (&a.content, &a.src) {
                (Some(c), _) => Some(c.clone()),
                (None, Some(src)) => Some(read_src(&t(src)?, base_dir, src_roots)?),
                (None, None) => None,
            };
            let content = match raw {
                Some(raw) if matches!(task.module(), Module::Template(_)) => Some(t(&raw)?),
                other => other,
            };
            if content.as_deref().is_some_and(|c| c.contains('\0')) {
                return Err(TaskError(
                    "file content has a NUL byte; only text files are supported".into(),
                ));
            }
            let sha = content
                .as_deref()
                .map(|c| {
                    Sha256::digest(c.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                })
                .unwrap_or_default();
            format!(
                "_m_file {} {} {} {} {} {} {} {}",
                q(&t(&a.path)?),
                u8::from(content.is_some()),
                q(content.as_deref().unwrap_or("")),
                q(&opt(&a.mode)?),
                q(&opt(&a.owner)?),
                q(&opt(&a.group)?),
                u8::from(a.sensitive),
                sha
            )
        }
        Module::Line(a) => {
            let line = opt(&a.line)?;
            let regexp = a.regexp.as_deref().map(t).transpose()?;
            let (kind, pattern) = line_matcher(regexp.as_deref(), &line);
            format!(
                "_m_line {} {} {kind} {} {} {} {} {} {} {}",
                q(&t(&a.path)?),
                q(&line),
                q(pattern),
                presence(a.state),
                u8::from(a.create),
                q(&opt(&a.mode)?),
                q(&opt(&a.owner)?),
                q(&opt(&a.group)?),
                u8::from(a.sensitive)
            )
        }
        Module::Absent(a) => format!("_m_absent {}", q(&t(&a.path)?)),
        Module::Command(a) => {
            let run = r.shell(&a.run, ctx)?;
            let unless = a
                .unless
                .as_deref()
                .map(|u| r.shell(u, ctx))
                .transpose()?
                .unwrap_or_default();
            let condition = |c: &Option<super::model::Condition>, what: &str| {
                c.as_ref()
                    .map(|c| {
                        cond::compile(&c.source(), ctx, r)
                            .map_err(|e| TaskError(format!("{what}: {e}")))
                    })
                    .transpose()
            };
            let failed = condition(&a.failed_when, "failed_when")?;
            let changed = condition(&a.changed_when, "changed_when")?;
            let capture = failed
                .iter()
                .chain(&changed)
                .any(cond::Compiled::reads_text);
            format!(
                "_m_command {} {} {} {} {} {} {} {}",
                q(&run),
                q(&opt(&a.creates)?),
                q(&opt(&a.removes)?),
                q(&unless),
                q(&opt(&a.chdir)?),
                q(failed.as_ref().map_or("", |c| c.test())),
                q(changed.as_ref().map_or("", |c| c.test())),
                u8::from(capture)
            )
        }
        Module::Package(a) => {
            let mut s = format!("_m_package {}", presence(a.state));
            for n in a.name.list() {
                let name = t(n)?;
                if !super::model::is_package_name(&name) {
                    return Err(TaskError(format!("`{name}` is not a package name")));
                }
                s.push(' ');
                s.push_str(&q(&name));
            }
            s
        }
        Module::Service(a) => {
            let name = t(&a.name)?;
            format!(
                "_m_service {} {} {} {} {} {}",
                q(&name),
                match a.state {
                    ServiceState::Started => "started",
                    ServiceState::Stopped => "stopped",
                    ServiceState::Restarted => "restarted",
                },
                match a.enabled {
                    Some(true) => "1",
                    Some(false) => "0",
                    None => "''",
                },
                q(&a.command
                    .as_deref()
                    .map(|c| r.shell(c, ctx))
                    .transpose()?
                    .unwrap_or_default()),
                q(&pidfile(a, &name, ctx, r)?),
                q(&opt(&a.user)?)
            )
        }
        Module::User(a) => {
            let groups = a
                .groups
                .iter()
                .map(|g| t(g))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(g) = groups
                .iter()
                .find(|g| g.is_empty() || g.contains([',', ':', '\n']))
            {
                return Err(TaskError(format!("`{g}` is not a group name")));
            }
            format!(
                "_m_user {} {} {} {} {} {} {} {} {}",
                q(&t(&a.name)?),
                presence(a.state),
                u8::from(a.system),
                q(&opt(&a.home)?),
                q(&opt(&a.shell)?),
                q(&a.uid.map(|u| u.to_string()).unwrap_or_default()),
                q(&opt(&a.group)?),
                q(&groups.join(",")),
                u8::from(a.create_home)
            )
        }
        Module::Group(a) => format!(
            "_m_group {} {} {} {}",
            q(&t(&a.name)?),
            presence(a.state),
            u8::from(a.system),
            q(&a.gid.map(|g| g.to_string()).unwrap_or_default())
        ),
        Module::Sysctl(a) => format!(
            "_m_sysctl {} {} {} {}",
            q(&a.key),
            q(&t(&a.value)?),
            q(&t(&a.file)?),
            q(&format!("/proc/sys/{}", a.key.replace('.', "/")))
        ),
        Module::Checksum(a) => format!("_m_checksum {} {}", q(&t(&a.path)?), q(&t(&a.sha256)?)),
    })
}

/// The command line that runs a script sent on stdin: directly, or as root
/// through sudo (`-n`: never prompt). With `password_markers` (prompt,
/// ready), `sudo -S` prints the prompt marker when it wants the password and
/// the shell prints the ready marker once sudo let it start; the runner
/// answers the one and sends the script after the other
/// ([`crate::fleet::ssh::Become`]), so the password never reaches a shell.
pub fn launcher(as_root: bool, password_markers: Option<(&str, &str)>) -> String {
    let inner = sh_quote("eval \"$(cat)\"");
    match (as_root, password_markers) {
        (false, _) => format!("/bin/sh -c {inner}"),
        (true, None) => format!("sudo -n -- /bin/sh -c {inner}"),
        (true, Some((prompt, ready))) => format!(
            "sudo -S -p {} -- /bin/sh -c {}",
            sh_quote(prompt),
            sh_quote(&format!("echo {ready}; eval \"$(cat)\""))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook(dir: &Path, tasks: &str) -> Playbook {
        let path = dir.join("pb.toml");
        crate::playbook::model::parse(&path, &format!("name = \"t\"\n{tasks}")).unwrap()
    }

    #[test]
    fn facts_are_gathered_first_only_when_compiling_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain.j2"), "port = {{ port }}\n").unwrap();
        std::fs::write(dir.path().join("facts.j2"), "os = {{ facts.os }}\n").unwrap();
        let template = |src: &str| {
            format!("[[task]]\nname = \"t\"\ntemplate = {{ path = \"/tmp/x\", src = \"{src}\" }}\n")
        };
        let d = dir.path();
        assert!(!uses_facts(&playbook(d, &template("plain.j2")), d));
        assert!(uses_facts(&playbook(d, &template("facts.j2")), d));
        assert!(
            uses_facts(&playbook(d, &template("{{ which }}.j2")), d),
            "a templated src cannot be known in advance"
        );
        assert!(uses_facts(
            &playbook(
                d,
                "[[task]]\nname = \"t\"\nwhen = \"facts.init == 'systemd'\"\ncommand = { run = \"true\" }\n"
            ),
            d
        ));
    }
}
