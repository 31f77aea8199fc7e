//! `maestro play`, `maestro install` and `maestro harden`: playbooks and
//! baselines over the fleet, with check mode, diffs, and a confirmation that
//! shows the plan before anything changes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::fleet_cmd::{InvalidInput, connect_options, drive};
use super::printer::{Printer, sanitize};
use super::{FleetArgs, out};
use crate::exit::Exit;
use crate::fleet::event::{NodeStatus, TaskStatus};
use crate::fleet::resolve::connect_specs;
use crate::fleet::run::{RunOptions, RunReport};
use crate::fleet::ssh::{ConnectSpec, ExecLimits};
use crate::fleet::target;
use crate::harden::{self, Mode};
use crate::playbook::compile::Options;
use crate::playbook::model::Playbook;
use crate::playbook::run::{PlayRequest, play};
use crate::sot::{self, Profile, Sot};
use crate::store::Store;

/// Options shared by `play` and `install`, in Ansible's spelling.
#[derive(Args, Debug, Clone)]
pub struct PlayArgs {
    /// Nodes to run on: names, globs, groups, tag selectors (see `maestro exec --help`)
    #[arg(long, short = 'l', default_value = "all")]
    pub limit: String,
    /// Change nothing; report what would change
    #[arg(long, short = 'C')]
    pub check: bool,
    /// Show unified diffs of changed files and lines (sensitive files excepted)
    #[arg(long, short = 'D')]
    pub diff: bool,
    /// Extra variable key=value, highest precedence (repeatable)
    #[arg(short = 'e', long = "extra-vars", value_name = "KEY=VALUE", value_parser = super::parse_pair)]
    pub extra_vars: Vec<(String, String)>,
    /// Only run tasks with these tags
    #[arg(long, short = 't', value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Skip tasks with these tags
    #[arg(long, value_delimiter = ',')]
    pub skip_tags: Vec<String>,
    #[command(flatten)]
    pub privilege: Privilege,
    /// Apply without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Write each node's compiled script to DIR/NODE.sh and run nothing (review, audit, benchmarks)
    #[arg(long, value_name = "DIR")]
    pub emit_scripts: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Args, Debug, Clone)]
pub struct Privilege {
    /// Run every task as root through sudo
    #[arg(long = "become", short = 'b')]
    pub become_root: bool,
    /// The user tasks with become run as [default: root]
    #[arg(long)]
    pub become_user: Option<String>,
    /// Ask for the sudo password (read without echo, sent only to sudo on stdin, never stored)
    #[arg(long, short = 'K')]
    pub ask_become_pass: bool,
}

#[derive(Args, Debug)]
pub struct HardenArgs {
    /// Check the rules only and print the compliance table
    #[arg(long, conflicts_with = "apply", required_unless_present = "apply")]
    pub audit: bool,
    /// Remediate failing rules, then audit again
    #[arg(long)]
    pub apply: bool,
    /// Baseline in the hardening directory [default: the profile's, else `baseline`]
    #[arg(long)]
    pub baseline: Option<String>,
    /// Take the baseline from this profile
    #[arg(long)]
    pub profile: Option<String>,
    /// Nodes to run on
    #[arg(long, short = 'l', default_value = "all")]
    pub limit: String,
    /// Exit 1 when fleet compliance (in %) is below this
    #[arg(long, default_value_t = 100.0, value_name = "PERCENT")]
    pub min_compliance: f64,
    #[command(flatten)]
    pub privilege: Privilege,
    /// Apply without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `maestro play PLAYBOOK`: a file path, or a name in the SoT's playbooks directory.
pub fn play_cmd(
    root: &Path,
    db: Option<PathBuf>,
    name: &str,
    args: PlayArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let path = playbook_path(&sot, name)?;
    let pb = crate::playbook::load_playbook(&path).map_err(sot::SotError::Invalid)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    run_playbook(
        root,
        db,
        sot,
        pb,
        base,
        None,
        &format!("play {name}"),
        args,
        json,
    )
}

/// `maestro install --profile NAME`: the profile's playbooks as one playbook.
pub fn install_cmd(
    root: &Path,
    db: Option<PathBuf>,
    profile: &str,
    args: PlayArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let (pb, dir, p) = crate::playbook::for_profile(&sot, profile).map_err(InvalidInput)?;
    run_playbook(
        root,
        db,
        sot,
        pb,
        dir,
        Some(p),
        &format!("install --profile {profile}"),
        args,
        json,
    )
}

fn playbook_path(sot: &Sot, name: &str) -> anyhow::Result<PathBuf> {
    let direct = PathBuf::from(name);
    if direct.is_file() {
        return Ok(direct);
    }
    let in_sot = sot
        .root
        .join(&sot.settings.playbooks_dir)
        .join(format!("{}.toml", name.trim_end_matches(".toml")));
    if in_sot.is_file() {
        return Ok(in_sot);
    }
    let hint = crate::sot::diag::suggest(name, sot.playbooks.iter().map(String::as_str))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    Err(InvalidInput(format!(
        "no playbook `{name}`{hint}: give a file or one of: {}",
        sot.playbooks.join(", ")
    ))
    .into())
}

struct Target {
    nodes: Vec<usize>,
    specs: Vec<ConnectSpec>,
}

fn resolve_targets(sot: &Sot, limit: &str, fleet: &FleetArgs) -> anyhow::Result<Target> {
    let nodes = target::select(sot, limit).map_err(|e| InvalidInput(e.to_string()))?;
    let (specs, warnings) = connect_specs(sot, &nodes, &connect_options(fleet))
        .map_err(|e| InvalidInput(e.to_string()))?;
    for w in warnings {
        eprintln!("warning: {}", sanitize(w.as_bytes()));
    }
    Ok(Target { nodes, specs })
}

/// A misconfigured profile is rejected before any node is touched.
fn check_profile(
    sot: &Sot,
    pb: &Playbook,
    profile: &Profile,
    nodes: &[usize],
    extra: &[(String, String)],
) -> anyhow::Result<()> {
    let problems = crate::playbook::profile_problems(sot, pb, profile, nodes, extra);
    if problems.is_empty() {
        return Ok(());
    }
    Err(InvalidInput(format!(
        "profile `{}` rejects this install; no node was touched:\n  {}",
        profile.name,
        problems.join("\n  ")
    ))
    .into())
}

#[allow(clippy::too_many_arguments)]
fn run_playbook(
    root: &Path,
    db: Option<PathBuf>,
    sot: Sot,
    pb: Playbook,
    base_dir: PathBuf,
    profile: Option<Profile>,
    description: &str,
    args: PlayArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let target = resolve_targets(&sot, &args.limit, &args.fleet)?;
    if let Some(p) = &profile {
        check_profile(&sot, &pb, p, &target.nodes, &args.extra_vars)?;
    }
    if let Some(dir) = &args.emit_scripts {
        return emit_scripts(&sot, &pb, &base_dir, profile.as_ref(), &target, &args, dir);
    }
    let password = become_password(&args.privilege)?;
    let options = |check: bool| Options {
        check,
        diff: args.diff,
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        r#become: args.privilege.become_root,
        become_user: args.privilege.become_user.clone(),
    };
    let sot = Arc::new(sot);
    let pb = Arc::new(pb);
    let db = db.unwrap_or_else(Store::default_path);
    let run = |check: bool, quiet: bool| -> anyhow::Result<RunReport> {
        let request = Arc::new(PlayRequest {
            sot: sot.clone(),
            playbook: pb.clone(),
            base_dir: base_dir.clone(),
            profile: profile.clone(),
            extra_vars: args.extra_vars.clone(),
            options: options(check),
            become_password: password.clone(),
        });
        let opts = run_options(
            if check { "check" } else { "play" },
            &args.limit,
            &format!("{description}{}", if check { " --check" } else { "" }),
            &args.fleet,
        );
        if !json {
            eprintln!(
                "{}{} on {} node{} ({})",
                description,
                if check { " --check" } else { "" },
                target.specs.len(),
                plural(target.specs.len()),
                args.limit
            );
        }
        let printer = if quiet {
            Printer::quiet()
        } else {
            Printer::new(json, false).with_tasks()
        };
        let specs = target.specs.clone();
        drive(open_store(&db, root)?, printer, move |events, cancel| {
            play(specs, request, opts, events, cancel)
        })
    };
    if args.check {
        let report = run(true, false)?;
        return Ok(exit_for(&report));
    }
    if !args.yes {
        confirm_with_plan(&target, || run(true, true), "apply")?;
    }
    let report = run(false, false)?;
    Ok(exit_for(&report))
}

/// Compile every target's script without connecting (facts are not gathered).
fn emit_scripts(
    sot: &Sot,
    pb: &Playbook,
    base_dir: &Path,
    profile: Option<&Profile>,
    target: &Target,
    args: &PlayArgs,
    dir: &Path,
) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(dir)?;
    let renderer = crate::playbook::vars::Renderer::new();
    let options = Options {
        check: args.check,
        diff: args.diff,
        tags: args.tags.clone(),
        skip_tags: args.skip_tags.clone(),
        r#become: args.privilege.become_root,
        become_user: args.privilege.become_user.clone(),
    };
    for (&i, spec) in target.nodes.iter().zip(&target.specs) {
        let node = &sot.nodes[i];
        let vars = crate::playbook::vars::merge(&pb.vars, profile, sot, node, &args.extra_vars);
        let ctx = crate::playbook::vars::context(&vars, node, None);
        let script = crate::playbook::compile::compile(
            pb,
            base_dir,
            &ctx,
            &spec.endpoint.user,
            &options,
            &renderer,
        )
        .map_err(|e| InvalidInput(format!("{}: {e}", node.name)))?;
        std::fs::write(dir.join(format!("{}.sh", node.name)), script.text)?;
    }
    eprintln!(
        "wrote {} script(s) to {}",
        target.nodes.len(),
        dir.display()
    );
    Ok(Exit::Ok)
}

/// On a terminal: run check mode, show what would change per node, ask.
/// Without a terminal: refuse (the caller must pass --yes).
fn confirm_with_plan(
    target: &Target,
    plan: impl FnOnce() -> anyhow::Result<RunReport>,
    verb: &str,
) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(InvalidInput(format!(
            "this changes {} node{}; without a terminal to confirm on, pass --yes (or --check to see the plan)",
            target.specs.len(),
            plural(target.specs.len())
        ))
        .into());
    }
    let report = plan()?;
    println!("\nPLAN (check mode, nothing changed yet):");
    let mut changing = 0;
    for r in &report.results {
        let changes: Vec<&str> = r
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Changed || t.status == TaskStatus::Failed)
            .map(|t| t.name.as_str())
            .collect();
        let line = match r.status {
            NodeStatus::Ok | NodeStatus::Failed if r.error.is_none() || !changes.is_empty() => {
                if !changes.is_empty() {
                    changing += 1;
                }
                format!(
                    "{} change{}{}",
                    changes.len(),
                    plural(changes.len()),
                    if changes.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", changes.join(", "))
                    }
                )
            }
            s => format!("{}: {}", s, r.error.as_deref().unwrap_or("")),
        };
        println!("  {:20} {}", r.node, sanitize(line.as_bytes()));
    }
    print!(
        "\n{verb} to {} node{} ({changing} would change)? [y/N] ",
        target.specs.len(),
        plural(target.specs.len())
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        return Ok(());
    }
    Err(InvalidInput("not confirmed; nothing was changed".into()).into())
}

/// `maestro harden --audit|--apply`.
pub fn harden_cmd(
    root: &Path,
    db: Option<PathBuf>,
    args: HardenArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let sot = sot::load(root)?;
    let name = match (&args.baseline, &args.profile) {
        (Some(b), _) => b.clone(),
        (None, Some(p)) => sot
            .profiles
            .get(p)
            .and_then(|p| p.hardening.clone())
            .ok_or_else(|| {
                InvalidInput(format!(
                    "profile `{p}` does not exist or names no hardening baseline"
                ))
            })?,
        (None, None) => harden::default_name(&sot),
    };
    let baseline = Arc::new(
        harden::load(&sot.root.join(&sot.settings.hardening_dir), &name)
            .map_err(|d| InvalidInput(d.to_string()))?,
    );
    let target = resolve_targets(&sot, &args.limit, &args.fleet)?;
    let password = become_password(&args.privilege)?;
    let db = db.unwrap_or_else(Store::default_path);
    let run = |mode: Mode, quiet: bool| -> anyhow::Result<RunReport> {
        let kind = if mode == Mode::Apply {
            "harden-apply"
        } else {
            "harden-audit"
        };
        let description = format!(
            "harden {} ({}, {} rules)",
            if mode == Mode::Apply {
                "--apply"
            } else {
                "--audit"
            },
            baseline.name,
            baseline.rules.len()
        );
        if !json {
            eprintln!(
                "{description} on {} node{} ({})",
                target.specs.len(),
                plural(target.specs.len()),
                args.limit
            );
        }
        let opts = run_options(kind, &args.limit, &description, &args.fleet);
        let baseline = baseline.clone();
        let password = password.clone();
        let specs = target.specs.clone();
        let printer = if quiet {
            Printer::quiet()
        } else {
            Printer::new(json, false)
        };
        drive(open_store(&db, root)?, printer, move |events, cancel| {
            harden::run(specs, baseline, mode, password, opts, events, cancel)
        })
    };
    let report = if args.apply {
        if !args.yes {
            confirm_with_plan(&target, || run(Mode::Audit, true), "remediate")?;
        }
        let applied = run(Mode::Apply, true)?;
        let mut audited = run(Mode::Audit, true)?;
        // A rule still failing because its remediation was refused says so, with the reason.
        for r in &mut audited.results {
            let Some(a) = applied.results.iter().find(|a| a.node == r.node) else {
                continue;
            };
            for t in r
                .tasks
                .iter_mut()
                .filter(|t| t.status == TaskStatus::Failed)
            {
                if let Some(refused) = a
                    .tasks
                    .iter()
                    .find(|x| x.index == t.index && x.message.starts_with("refused:"))
                {
                    t.message = refused.message.clone();
                }
            }
        }
        audited
    } else {
        run(Mode::Audit, true)?
    };
    let pct = print_compliance(&baseline, &report, json);
    Ok(
        if pct + 1e-9 < args.min_compliance
            || !report.summary.all_ok()
                && report.summary.unreachable + report.summary.timed_out + report.summary.cancelled
                    > 0
        {
            Exit::TargetsFailed
        } else {
            Exit::Ok
        },
    )
}

/// The rule × node table and the fleet's compliance; returns the percentage.
fn print_compliance(baseline: &harden::Loaded, report: &RunReport, json: bool) -> f64 {
    let (mut pass, mut fail) = (0usize, 0usize);
    for r in &report.results {
        for t in &r.tasks {
            match t.status {
                TaskStatus::Ok | TaskStatus::Changed => pass += 1,
                TaskStatus::Failed => fail += 1,
                TaskStatus::Skipped => {}
            }
        }
    }
    let pct = if pass + fail == 0 {
        100.0
    } else {
        100.0 * pass as f64 / (pass + fail) as f64
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"event": "compliance", "baseline": baseline.name, "run_id": report.run_id,
                "percent": pct, "passing": pass, "failing": fail,
                "nodes": report.results.iter().map(|r| serde_json::json!({"node": r.node, "status": r.status,
                    "rules": r.tasks.iter().map(|t| serde_json::json!({"rule": t.name, "status": t.status, "message": t.message})).collect::<Vec<_>>()})).collect::<Vec<_>>()})
        );
        return pct;
    }
    let nodes: Vec<&str> = report.results.iter().map(|r| r.node.as_str()).collect();
    let wide = nodes.len() <= 10;
    let mut header = format!("{:8} {:8} {:44}", "RULE", "SEVERITY", "TITLE");
    if wide {
        for n in &nodes {
            header.push_str(&format!(" {:>9}", truncate(n, 9)));
        }
    } else {
        header.push_str("  PASS  FAIL   N/A  FAILING NODES");
    }
    out!("{header}");
    for (i, rule) in baseline.rules.iter().enumerate() {
        let mut line = format!(
            "{:8} {:8} {:44}",
            rule.id,
            rule.severity.as_str(),
            truncate(&rule.title, 44)
        );
        let cell = |r: &crate::fleet::NodeResult| -> &'static str {
            match r.tasks.iter().find(|t| t.index == i) {
                None => "-",
                Some(t) => match t.status {
                    TaskStatus::Ok => "pass",
                    TaskStatus::Changed => "fixed",
                    TaskStatus::Skipped => "n/a",
                    TaskStatus::Failed if t.message.starts_with("refused:") => "REFUSED",
                    TaskStatus::Failed => "FAIL",
                },
            }
        };
        if wide {
            for r in &report.results {
                line.push_str(&format!(" {:>9}", cell(r)));
            }
        } else {
            let cells: Vec<&str> = report.results.iter().map(cell).collect();
            let failing: Vec<&str> = report
                .results
                .iter()
                .zip(&cells)
                .filter(|(_, c)| **c == "FAIL" || **c == "REFUSED")
                .map(|(r, _)| r.node.as_str())
                .collect();
            line.push_str(&format!(
                "  {:>4}  {:>4}  {:>4}  {}",
                cells
                    .iter()
                    .filter(|c| **c == "pass" || **c == "fixed")
                    .count(),
                failing.len(),
                cells.iter().filter(|c| **c == "n/a").count(),
                failing
                    .iter()
                    .take(8)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        out!("{line}");
    }
    for r in &report.results {
        if r.status != NodeStatus::Ok && r.tasks.is_empty() {
            out!(
                "{}: {} {}",
                r.node,
                r.status,
                sanitize(r.error.as_deref().unwrap_or("").as_bytes())
            );
        }
        for t in r.tasks.iter().filter(|t| t.status == TaskStatus::Failed) {
            out!(
                "  {} {}: {}",
                r.node,
                sanitize(t.name.as_bytes()),
                sanitize(t.message.as_bytes())
            );
        }
    }
    out!(
        "\ncompliance: {pct:.1}% ({pass} passing, {fail} failing rule checks on {} node{}; n/a rules excluded)",
        nodes.len(),
        plural(nodes.len())
    );
    pct
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn run_options(kind: &str, limit: &str, description: &str, fleet: &FleetArgs) -> RunOptions {
    RunOptions {
        kind: kind.into(),
        target: limit.into(),
        description: description.into(),
        forks: fleet.forks,
        limits: ExecLimits {
            max_output: fleet.max_output,
            timeout: fleet.timeout.map(Duration::from_secs_f64),
        },
    }
}

fn open_store(db: &Path, root: &Path) -> anyhow::Result<Store> {
    let mut store = Store::open(db)?;
    store.set_sot(&root.display().to_string());
    Ok(store)
}

fn exit_for(report: &RunReport) -> Exit {
    if report.summary.all_ok() {
        Exit::Ok
    } else {
        Exit::TargetsFailed
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `--ask-become-pass`: read the sudo password from the terminal without echo.
fn become_password(p: &Privilege) -> anyhow::Result<Option<String>> {
    if !p.ask_become_pass {
        return Ok(None);
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            InvalidInput("--ask-become-pass needs a terminal to read the password from".into())
        })?;
    super::tty::read_secret(&tty, "sudo password: ").map(Some)
}
