//! Running compiled scripts over the fleet: one exec channel per node carries
//! the whole playbook; its markers become task events as they stream in.

use std::path::PathBuf;
use std::sync::Arc;

use super::compile::{self, Options, Script, launcher};
use super::model::Playbook;
use super::report::{Parsed, Parser};
use super::vars::{self, Renderer};
use crate::fleet::event::{Event, NodeResult, NodeStatus, TaskResult, TaskStatus};
use crate::fleet::run::{NodeContext, RunOptions, RunReport, run_nodes};
use crate::fleet::ssh::{Become, ConnectSpec, Request, Session};
use crate::fleet::{Cancel, EventSink};
use crate::sot::{Profile, Sot};

/// Everything a playbook run needs, shared by every node's task.
pub struct PlayRequest {
    pub sot: Arc<Sot>,
    pub playbook: Arc<Playbook>,
    /// Where `src` files of the playbook are looked up.
    pub base_dir: PathBuf,
    pub profile: Option<Profile>,
    pub extra_vars: Vec<(String, String)>,
    pub options: Options,
    /// For sudo when it asks (`--ask-become-pass`); sent on stdin only.
    pub become_password: Option<String>,
}

pub async fn play(
    specs: Vec<ConnectSpec>,
    request: Arc<PlayRequest>,
    opts: RunOptions,
    events: EventSink,
    cancel: Cancel,
) -> RunReport {
    let renderer = Arc::new(Renderer::new());
    let needs_facts = compile::uses_facts(&request.playbook, &request.base_dir);
    run_nodes(specs, opts, events, cancel, move |session, ctx| {
        let request = request.clone();
        let renderer = renderer.clone();
        async move {
            let compile = |facts: Option<&Facts>| -> Result<Script, ScriptError> {
                let node = request
                    .sot
                    .node(&ctx.node)
                    .ok_or(ScriptError::UnknownNode)?;
                let vars = vars::merge(
                    &request.playbook.vars,
                    request.profile.as_ref(),
                    &request.sot,
                    node,
                    &request.extra_vars,
                );
                let context = vars::context(&vars, node, facts);
                Ok(compile::compile(
                    &request.playbook,
                    &request.base_dir,
                    &context,
                    &ctx.login_user,
                    &request.options,
                    &renderer,
                )?)
            };
            run_script(
                &session,
                &ctx,
                compile,
                needs_facts,
                request.become_password.as_deref(),
            )
            .await
        }
    })
    .await
}

/// Facts gathered on a node (`hostname`, `os`, `pkg`, `init`, …).
pub type Facts = std::collections::BTreeMap<String, String>;

/// The node reported no facts (with why).
#[derive(Debug, thiserror::Error)]
#[error("could not gather facts: {0}")]
pub struct NoFacts(String);

/// Why a node's script could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("the node is not in the SoT")]
    UnknownNode,
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
}

/// Gather facts if asked, compile with them, run the script, and turn its
/// markers into task results.
pub async fn run_script(
    session: &Session,
    ctx: &NodeContext,
    compile: impl FnOnce(Option<&Facts>) -> Result<Script, ScriptError>,
    needs_facts: bool,
    become_password: Option<&str>,
) -> NodeResult {
    let mut result = NodeResult::new(&ctx.node, NodeStatus::Failed);
    let facts = if needs_facts {
        match gather_facts(session, ctx).await {
            Ok(f) => Some(f),
            Err(e) => {
                result.error = Some(e.to_string());
                return result;
            }
        }
    } else {
        None
    };
    let script = match compile(facts.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            result.error = Some(format!("cannot compile the playbook for this node: {e}"));
            return result;
        }
    };
    let names: Vec<String> = script.tasks.iter().map(|t| t.name.clone()).collect();
    let mut tasks: Vec<TaskResult> = Vec::new();
    for t in script
        .tasks
        .iter()
        .filter(|t| t.skipped.is_some() && !t.handler)
    {
        let task = TaskResult {
            index: t.index,
            name: t.name.clone(),
            status: TaskStatus::Skipped,
            message: t.skipped.clone().unwrap_or_default(),
            diff: None,
            output: None,
        };
        ctx.events.send(Event::TaskFinished {
            node: ctx.node.clone(),
            task: task.clone(),
        });
        tasks.push(task);
    }
    let mut parser = Parser::new(&script.nonce, names);
    // The password goes only to sudo's own prompt (see `launcher`).
    let password = become_password.filter(|_| script.as_root);
    let prompt = format!("[maestro sudo {}] password:", script.nonce);
    let ready = format!("MAESTRO-SUDO-OK-{}", script.nonce);
    let stdin = script.text.as_bytes();
    let command = launcher(
        script.as_root,
        password.map(|_| (prompt.as_str(), ready.as_str())),
    );
    let events = ctx.events.clone();
    let node = ctx.node.clone();
    let mut live: Vec<TaskResult> = Vec::new();
    let outcome = {
        let mut on_stdout = |data: &[u8]| {
            for item in parser.feed(data) {
                match item {
                    Parsed::Task(t) => {
                        events.send(Event::TaskFinished {
                            node: node.clone(),
                            task: t.clone(),
                        });
                        live.push(t);
                    }
                    Parsed::Facts => {}
                }
            }
        };
        let request = Request {
            command: &command,
            stdin,
            stdin_file: None,
            output_events: false,
            sudo: password.map(|password| Become {
                prompt: &prompt,
                ready: &ready,
                password,
            }),
        };
        session
            .run(
                request,
                &ctx.limits,
                &ctx.cancel,
                &ctx.events,
                &mut on_stdout,
            )
            .await
    };
    if !parser.facts.is_empty() {
        ctx.events.send(Event::Facts {
            node: ctx.node.clone(),
            facts: parser.facts.clone(),
        });
    }
    tasks.extend(live);
    tasks.sort_by_key(|t| t.index);
    result.exit_code = outcome.exit_code;
    result.signal = outcome.signal;
    result.stderr = outcome.stderr;
    result.duration_ms = outcome.duration.as_millis() as u64;
    let failed = tasks
        .iter()
        .find(|t| t.status == TaskStatus::Failed)
        .map(|t| format!("task `{}` failed: {}", t.name, t.message));
    result.status = match outcome.status {
        NodeStatus::Cancelled | NodeStatus::TimedOut => outcome.status,
        _ if failed.is_some() => NodeStatus::Failed,
        _ if parser.done.as_deref() == Some("ok") && outcome.exit_code == Some(0) => NodeStatus::Ok,
        _ => NodeStatus::Failed,
    };
    result.error = match result.status {
        NodeStatus::Ok => None,
        _ => outcome.error.or(failed).or_else(|| {
            let tail = String::from_utf8_lossy(&result.stderr.bytes)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
                .to_string();
            Some(format!(
                "the script ended early (exit {}){}",
                outcome.exit_code.map_or("?".into(), |c| c.to_string()),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            ))
        }),
    };
    result.tasks = tasks;
    result
}

async fn gather_facts(session: &Session, ctx: &NodeContext) -> Result<Facts, NoFacts> {
    let nonce = compile::new_nonce();
    let script = format!("{}\n_m_nonce={nonce}\n_m_facts\n", super::LIBRARY);
    let mut parser = Parser::new(&nonce, Vec::new());
    let request = Request {
        command: &launcher(false, None),
        stdin: script.as_bytes(),
        stdin_file: None,
        output_events: false,
        sudo: None,
    };
    let outcome = session
        .run(
            request,
            &ctx.limits,
            &ctx.cancel,
            &ctx.events,
            &mut |d: &[u8]| {
                parser.feed(d);
            },
        )
        .await;
    if parser.facts.is_empty() {
        return Err(NoFacts(
            outcome.error.unwrap_or_else(|| "no facts reported".into()),
        ));
    }
    ctx.events.send(Event::Facts {
        node: ctx.node.clone(),
        facts: parser.facts.clone(),
    });
    Ok(parser.facts)
}
