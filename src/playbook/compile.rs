//! Compile a playbook for one node into one POSIX `sh` script.
//!
//! Every value that reaches the script is rendered on the controller and then
//! passed to a library function as one single-quoted word ([`sh_quote`]);
//! command strings get their variables quoted by the shell renderer. The
//! script reports each task through nonce-tagged markers (see `lib.sh`).

use std::path::Path;

use minijinja::Value;

use super::model::{Module, Playbook, Presence, ServiceState, Task};
use super::vars::Renderer;
use crate::fleet::quote::sh_quote;

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
#[error("task `{task}`: {message}")]
pub struct CompileError {
    pub task: String,
    pub message: String,
}

/// Does anything in the playbook read `facts`? Then they are gathered first.
pub fn uses_facts(pb: &Playbook) -> bool {
    pb.tasks.iter().chain(&pb.handlers).any(|t| {
        let t = t.get_ref();
        t.when.as_deref().is_some_and(|w| w.contains("facts"))
            || matches!(t.module(), Module::Template(a) if a.content.as_deref().is_some_and(|c| c.contains("facts")) || a.src.is_some())
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
         trap 'rm -rf \"$_m_tmp\"' EXIT\n_m_facts\n",
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
    let all = pb
        .tasks
        .iter()
        .map(|t| (t, false))
        .chain(pb.handlers.iter().map(|h| (h, true)));
    for (index, (spanned, handler)) in all.enumerate() {
        let task = spanned.get_ref();
        let err = |message: String| CompileError {
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
        let call = module_call(task, base_dir, ctx, renderer).map_err(err)?;
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
            call
        } else {
            format!("_m_as {} {}", sh_quote(&user), sh_quote(&call))
        };
        let body = format!("_m_begin {index}\n{call}\n_m_end {index}\n");
        if handler {
            text.push_str(&format!(
                "if [ \"${{_m_notify_{index}:-0}}\" = 1 ]; then\n{body}fi\n"
            ));
        } else {
            text.push_str(&body);
        }
        text.push_str("if [ \"$_m_status\" = failed ]; then _m_emit done failed; exit 0; fi\n");
        for h in &task.notify {
            text.push_str(&format!(
                "[ \"$_m_status\" = changed ] && _m_notify_{}=1\n",
                handler_index(h)
            ));
        }
    }
    text.push_str("_m_emit done ok\n");
    Ok(Script {
        text,
        nonce,
        tasks: planned,
        as_root,
    })
}

/// The library call that performs one task's module.
fn module_call(task: &Task, base_dir: &Path, ctx: &Value, r: &Renderer) -> Result<String, String> {
    let t = |s: &str| r.text(s, ctx);
    let opt = |s: &Option<String>| -> Result<String, String> {
        s.as_deref()
            .map(t)
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let q = |s: &str| sh_quote(s);
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
                (Some(c), _) => c.clone(),
                (None, Some(src)) => {
                    let path = base_dir.join(src);
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                }
                (None, None) => String::new(),
            };
            let content = if matches!(task.module(), Module::Template(_)) {
                t(&raw)?
            } else {
                raw
            };
            if content.contains('\0') {
                return Err("file content has a NUL byte; only text files are supported".into());
            }
            format!(
                "_m_file {} {} {} {} {} {}",
                q(&t(&a.path)?),
                q(&content),
                q(&opt(&a.mode)?),
                q(&opt(&a.owner)?),
                q(&opt(&a.group)?),
                u8::from(a.sensitive)
            )
        }
        Module::Line(a) => format!(
            "_m_line {} {} {} {} {}",
            q(&t(&a.path)?),
            q(&opt(&a.line)?),
            q(&opt(&a.regexp)?),
            if a.state == Presence::Present {
                "present"
            } else {
                "absent"
            },
            u8::from(a.create)
        ),
        Module::Absent(a) => format!("_m_absent {}", q(&t(&a.path)?)),
        Module::Command(a) => {
            let run = r.shell(&a.run, ctx)?;
            let unless = a
                .unless
                .as_deref()
                .map(|u| r.shell(u, ctx))
                .transpose()?
                .unwrap_or_default();
            format!(
                "_m_command {} {} {} {} {}",
                q(&run),
                q(&opt(&a.creates)?),
                q(&opt(&a.removes)?),
                q(&unless),
                q(&opt(&a.chdir)?)
            )
        }
        Module::Package(a) => {
            let mut s = format!(
                "_m_package {}",
                if a.state == Presence::Present {
                    "present"
                } else {
                    "absent"
                }
            );
            for n in a.name.list() {
                let name = t(n)?;
                if !super::model::is_package_name(&name) {
                    return Err(format!("`{name}` is not a package name"));
                }
                s.push(' ');
                s.push_str(&q(&name));
            }
            s
        }
        Module::Service(a) => format!(
            "_m_service {} {} {} {} {}",
            q(&t(&a.name)?),
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
            q(&opt(&a.pidfile)?)
        ),
        Module::User(a) => format!(
            "_m_user {} {} {} {} {}",
            q(&t(&a.name)?),
            if a.state == Presence::Present {
                "present"
            } else {
                "absent"
            },
            u8::from(a.system),
            q(&opt(&a.home)?),
            q(&opt(&a.shell)?)
        ),
        Module::Sysctl(a) => format!(
            "_m_sysctl {} {} {}",
            q(&a.key),
            q(&t(&a.value)?),
            q(&t(&a.file)?)
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
