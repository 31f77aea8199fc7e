//! `maestro init`, `maestro sot …`, `maestro node …`, `maestro agent …`.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::printer::sanitize;

use super::out;
use super::{AgentCommand, Change, InitArgs, NodeCommand};
use crate::exit::Exit;
use crate::sot::change::{self, Committed, Intent, NewAgent, NewNode};
use crate::sot::git::{Actor, SotRepo, init_repo};
use crate::sot::{self, SotError, example};

pub fn init(args: InitArgs) -> anyhow::Result<Exit> {
    let dir = &args.dir;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(SotError::Refused(format!(
            "{} already exists and is not empty; choose a new directory",
            dir.display()
        ))
        .into());
    }
    let name = args.name.clone().unwrap_or_else(|| {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "fleet".into())
    });
    let configured = || {
        let c = git2::Config::open_default().ok()?;
        Some((
            c.get_string("user.name").ok()?,
            c.get_string("user.email").ok()?,
        ))
    };
    let actor = match (&args.who.actor, configured()) {
        (Some(a), _) => Actor::parse(a)?,
        (None, Some((name, email))) => Actor::new(&name, &email)?,
        (None, None) => Actor::new("maestro", "maestro@maestro.local")?,
    };
    let mut files = example::scaffold(&name);
    let me = match &args.key {
        Some(path) => Some(operator_person(path, args.person.as_deref(), &actor)?),
        None => None,
    };
    if let Some((_, table)) = &me
        && let Some((_, people)) = files
            .iter_mut()
            .find(|(p, _)| p.as_path() == Path::new("people.toml"))
    {
        let person = &me.as_ref().expect("matched above").0;
        if String::from_utf8_lossy(people).contains(&format!("[person.{person}]")) {
            return Err(super::fleet_cmd::InvalidInput(format!(
                "--person `{person}` is one of the example's people already: choose another name (nothing was created)"
            ))
            .into());
        }
        people.extend_from_slice(table.as_bytes());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let oid = init_repo(
        dir,
        &files,
        &actor,
        &format!("init: new SoT `{name}` from the maestro example\n\nMaestro-Actor: {actor}\n"),
    )?;
    // The scaffold must be valid: check it as any SoT. One that is not
    // (the operator's key is already an example person's) is taken back
    // whole: the directory was empty or absent.
    if let Err(e) = sot::load(dir) {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e.into());
    }
    out!(
        "created SoT `{name}` in {} ({} files, commit {})\nnext: maestro --sot {} sot check",
        dir.display(),
        files.len(),
        &oid.to_string()[..12],
        dir.display()
    );
    match &me {
        Some((person, _)) => out!(
            "you are `{person}` in people.toml; sign as yourself with ssh-agent or MAESTRO_IDENTITY=YOUR_PRIVATE_KEY (`maestro whoami`)"
        ),
        None => out!(
            "the example policies refuse changes by unproven actors: add yourself to people.toml with your SSH public key (or run init with --key ~/.ssh/id_ed25519.pub)"
        ),
    }
    Ok(Exit::Ok)
}

/// The operator's `[person.NAME]` table for a new SoT: their key, checked,
/// in the example's platform and owner teams.
fn operator_person(
    path: &Path,
    name: Option<&str>,
    actor: &Actor,
) -> anyhow::Result<(String, String)> {
    let line =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = line.lines().next().unwrap_or("").trim().to_string();
    crate::identity::parse_public_key(&line)
        .map_err(|e| super::fleet_cmd::InvalidInput(format!("{}: {e}", path.display())))?;
    let name = name
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".into());
    // The SoT's name rule (the loader checks it again once written).
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        return Err(super::fleet_cmd::InvalidInput(format!(
            "--person `{name}`: use lowercase letters, digits, `-`, `_` or `.`"
        ))
        .into());
    }
    let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
    let table = format!(
        "\n[person.{name}]\nemail = {}\nteams = [\"platform\", \"team-sre\", \"team-support\", \"team-finance\"]\nkeys = [{}]\n",
        quoted(&actor.email),
        quoted(&line)
    );
    Ok((name, table))
}

pub fn check(root: &Path, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    // No secret in any file of the SoT or its libraries.
    let secrets = scan_working_tree(root, &sot);
    if !secrets.is_empty() {
        return Err(SotError::Invalid(secrets).into());
    }
    // The policy tests are part of the SoT: a policy change that breaks one
    // makes the SoT invalid (exit 2), as a dangling reference does.
    let policy_tests = sot
        .policies
        .as_deref()
        .map(|p| p.run_tests(&sot))
        .unwrap_or_default();
    let failed: Vec<_> = policy_tests.iter().filter(|r| !r.passed).collect();
    if !failed.is_empty() {
        let file = root
            .join(crate::policy::DIR)
            .join(crate::policy::TESTS_FILE);
        for r in &failed {
            eprintln!(
                "{}:{}: policy test `{}` fails: {}",
                file.display(),
                r.line,
                sanitize(r.name.as_bytes()),
                sanitize(r.problem.as_deref().unwrap_or("").as_bytes())
            );
        }
        eprintln!(
            "{} of {} policy tests fail; `maestro policy explain` shows a decision",
            failed.len(),
            policy_tests.len()
        );
        return Ok(Exit::InvalidInput);
    }
    let policies = sot.policies.as_deref().map_or(0, |p| p.len());
    let msg = format!(
        "{}: ok — {} nodes, {} groups, {} models, {} agents, {} people, {} policies ({} tests pass), {} profiles, {} playbooks, {} hardening baselines, {} kill switches engaged, {} freeze windows, {} checklists, {} lessons, {} API tokens",
        root.display(),
        sot.nodes.len(),
        sot.groups.len(),
        sot.models.len(),
        sot.agents.len(),
        sot.people.len(),
        policies,
        policy_tests.len(),
        sot.profiles.len(),
        sot.playbooks.len(),
        sot.baselines.len(),
        sot.killswitch.len(),
        sot.freeze.len(),
        sot.checklists.len(),
        sot.lessons.len(),
        sot.api_tokens.len()
    );
    if json {
        out!(
            "{}",
            json!({"event": "sot_valid", "sot": root, "nodes": sot.nodes.len(), "groups": sot.groups.len(),
                   "models": sot.models.len(), "agents": sot.agents.len(), "people": sot.people.len(),
                   "policies": policies, "policy_tests": policy_tests.len(), "profiles": sot.profiles.len(),
                   "kill_switches": sot.killswitch.len(), "freeze_windows": sot.freeze.len(),
                   "checklists": sot.checklists.len(), "lessons": sot.lessons.len(),
                   "api_tokens": sot.api_tokens.len()})
        );
    } else {
        out!("{msg}");
    }
    Ok(Exit::Ok)
}

/// The secret scan of the SoT's files and the libraries it names.
fn scan_working_tree(root: &Path, sot: &sot::Sot) -> crate::diag::Diagnostics {
    let s = &sot.settings;
    sot::secrets::scan_tree(
        root,
        &[
            s.profiles_dir.clone(),
            s.playbooks_dir.clone(),
            s.hardening_dir.clone(),
        ],
    )
}

/// `maestro sot scan [--history]`: the secret scanner over the SoT (its
/// working tree and libraries, or every blob of its history).
pub fn scan(root: &Path, history: bool, json: bool) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let found = if history {
        sot::secrets::scan_history(root)
            .with_context(|| format!("reading the history of {}", root.display()))?
    } else {
        scan_working_tree(root, &sot)
    };
    if !found.is_empty() {
        return Err(SotError::Invalid(found).into());
    }
    if json {
        out!(
            "{}",
            json!({"event": "secrets_scan", "sot": root, "history": history, "findings": 0})
        );
    } else {
        out!(
            "{}: no secrets found{}",
            root.display(),
            if history { " in any commit" } else { "" }
        );
    }
    Ok(Exit::Ok)
}

pub fn log(root: &Path, limit: usize, json: bool) -> anyhow::Result<Exit> {
    let repo = SotRepo::open(root)?;
    for e in repo.log(limit)? {
        if json {
            out!("{}", json!({"event": "commit", "commit": e}));
            continue;
        }
        let when = chrono::DateTime::from_timestamp(e.time, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let actor = e
            .actor
            .clone()
            .unwrap_or_else(|| format!("{} <{}>", e.author, e.email));
        out!(
            "{}  {when}  {}\n    {}",
            &e.id[..10],
            safe(&actor),
            safe(&e.summary)
        );
    }
    Ok(Exit::Ok)
}

/// SoT values and commit messages as they may be shown on a terminal.
fn safe(s: &str) -> String {
    crate::terminal_text::sanitize_str(s)
}

pub(super) fn intent(c: &Change) -> Intent {
    Intent {
        reason: c.reason.clone(),
        actor: c.who.actor.clone(),
        wait: std::time::Duration::from_secs(c.wait),
    }
}

pub(super) fn committed(c: Committed, json: bool) -> Exit {
    if json {
        out!(
            "{}",
            json!({"event": "sot_committed", "commit": c.commit, "files": c.files, "summary": c.summary})
        );
    } else {
        out!("committed {} {}", &c.commit[..12], safe(&c.summary));
    }
    Exit::Ok
}

pub fn node(root: &Path, cmd: NodeCommand, json: bool) -> anyhow::Result<Exit> {
    match cmd {
        NodeCommand::List => {
            let sot = sot::load(root)?;
            if json {
                for n in &sot.nodes {
                    out!("{}", json!({"event": "node", "node": n}));
                }
                return Ok(Exit::Ok);
            }
            let w = sot
                .nodes
                .iter()
                .map(|n| n.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            let wa = sot
                .nodes
                .iter()
                .map(|n| n.address.len() + 6)
                .max()
                .unwrap_or(7)
                .max(7);
            out!("{:w$}  {:wa$}  {:10}  TAGS", "NAME", "ADDRESS", "USER");
            for n in &sot.nodes {
                let addr = format!("{}:{}", n.address, n.port);
                let tags: Vec<String> = n.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out!(
                    "{:w$}  {:wa$}  {:10}  {}",
                    safe(&n.name),
                    safe(&addr),
                    safe(&n.user),
                    safe(&tags.join(" "))
                );
            }
            Ok(Exit::Ok)
        }
        NodeCommand::Show { name } => {
            let sot = sot::load(root)?;
            let n = sot.node(&name).ok_or_else(|| SotError::Unknown {
                kind: "node",
                suggestion: crate::diag::suggest(&name, sot.nodes.iter().map(|n| n.name.as_str()))
                    .map(str::to_string),
                name: name.clone(),
            })?;
            if json {
                out!("{}", json!({"event": "node", "node": n}));
            } else {
                out!(
                    "{}",
                    safe(&toml::to_string_pretty(n).context("formatting the node")?)
                );
            }
            Ok(Exit::Ok)
        }
        NodeCommand::Add(a) => {
            let node = NewNode {
                name: a.name,
                address: a.address,
                port: a.port,
                user: a.user,
                groups: a.groups,
                tags: a.tags,
                vars: a.vars,
                profile: a.profile,
                file: a.file,
            };
            Ok(committed(
                change::add_node(root, &node, &intent(&a.change))?,
                json,
            ))
        }
        NodeCommand::Remove { name, change } => Ok(committed(
            change::remove_node(root, &name, &intent(&change))?,
            json,
        )),
        NodeCommand::Tag(t) => {
            if t.set.is_empty() && t.remove.is_empty() {
                return Err(SotError::Refused(
                    "nothing to change: give KEY=VALUE tags or --remove KEY".into(),
                )
                .into());
            }
            Ok(committed(
                change::tag_node(root, &t.name, &t.set, &t.remove, &intent(&t.change))?,
                json,
            ))
        }
    }
}

pub fn agent(root: &Path, cmd: AgentCommand, json: bool) -> anyhow::Result<Exit> {
    match cmd {
        AgentCommand::Status(args) => super::agent_cmd::status(root, None, args, json),
        AgentCommand::List => {
            let sot = sot::load(root)?;
            if json {
                for a in sot.agents.values() {
                    out!("{}", json!({"event": "agent", "agent": a}));
                }
                return Ok(Exit::Ok);
            }
            out!(
                "{:20}  {:8}  {:24}  {:9}  VERSIONS",
                "NAME",
                "AUTONOMY",
                "MODEL",
                "CURRENT"
            );
            for a in sot.agents.values() {
                let versions: Vec<&str> = a.versions.iter().map(|v| v.version.as_str()).collect();
                out!(
                    "{:20}  {:8}  {:24}  {:9}  {}",
                    safe(&a.name),
                    a.autonomy.to_string(),
                    safe(&a.model),
                    safe(a.current.as_deref().unwrap_or("-")),
                    safe(&versions.join(", "))
                );
            }
            Ok(Exit::Ok)
        }
        AgentCommand::Show { name } => {
            let sot = sot::load(root)?;
            let a = sot.agents.get(&name).ok_or_else(|| SotError::Unknown {
                kind: "agent",
                suggestion: crate::diag::suggest(&name, sot.agents.keys().map(String::as_str))
                    .map(str::to_string),
                name: name.clone(),
            })?;
            if json {
                out!("{}", json!({"event": "agent", "agent": a}));
            } else {
                out!(
                    "{}",
                    safe(&toml::to_string_pretty(a).context("formatting the agent")?)
                );
            }
            Ok(Exit::Ok)
        }
        AgentCommand::Add(a) => {
            let agent = NewAgent {
                name: a.name,
                description: a.description,
                model: a.model,
                provider: a.provider,
                autonomy: a.autonomy,
                owner: a.owner,
                tags: a.tags,
            };
            Ok(committed(
                change::add_agent(root, &agent, &intent(&a.change))?,
                json,
            ))
        }
        AgentCommand::Remove { name, change } => Ok(committed(
            change::remove_agent(root, &name, &intent(&change))?,
            json,
        )),
        AgentCommand::Tag(t) => {
            if t.set.is_empty() && t.remove.is_empty() {
                return Err(SotError::Refused(
                    "nothing to change: give KEY=VALUE tags or --remove KEY".into(),
                )
                .into());
            }
            Ok(committed(
                change::tag_agent(root, &t.name, &t.set, &t.remove, &intent(&t.change))?,
                json,
            ))
        }
    }
}
