//! `maestro play`, `maestro install` and `maestro harden`: playbooks and
//! baselines over the fleet, with check mode, diffs, and a confirmation that
//! shows the plan before anything changes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;

use super::FleetArgs;
use super::drive::{conclude, drive, exit_for};
use super::fleet_cmd::{InvalidInput, gate, load_source, print_warnings, request};
use super::printer::{Printer, sanitize};
use crate::exit::Exit;
use crate::fleet::event::TaskStatus;
use crate::harden::Compliance;
use crate::ops::{self, Decision, Gate, JobSpec, Plan, Prepared, Secret, Targets};

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
    #[command(flatten)]
    pub glass: super::freeze_cmd::BreakGlassArgs,
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
    #[arg(long, short = 'K', conflicts_with = "become_password_file")]
    pub ask_become_pass: bool,
    /// Read the sudo password from the first line of FILE (as Ansible's
    /// --become-password-file; keep it 0600)
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct HardenArgs {
    /// Check the rules only and print the compliance table
    #[arg(long, conflicts_with = "apply", required_unless_present_any = ["apply", "coverage"])]
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
    /// Only the rules of this section: a category (ssh, kernel, files,
    /// accounts, logging, audit, integrity) or a CIS item prefix (5.1, 6.2.3)
    #[arg(long, value_name = "SECTION")]
    pub section: Option<String>,
    /// Print how many CIS Debian 12 items the baseline's rules cover, per
    /// section, and which are missing; touches no node
    #[arg(long, conflicts_with_all = ["audit", "apply"])]
    pub coverage: bool,
    /// Nodes to run on
    #[arg(long, short = 'l', default_value = "all")]
    pub limit: String,
    /// Exit 1 when fleet compliance (in %) is below this
    #[arg(long, default_value_t = 100.0, value_name = "PERCENT")]
    pub min_compliance: f64,
    #[command(flatten)]
    pub privilege: Privilege,
    #[command(flatten)]
    pub glass: super::freeze_cmd::BreakGlassArgs,
    /// Apply without asking (required when not on a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// `maestro play PLAYBOOK`: a name in the SoT's playbook library, or a file
/// given as a path (`./site.toml`).
pub fn play_cmd(
    root: &Path,
    db: Option<PathBuf>,
    name: &str,
    args: PlayArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    playbook_job(
        root,
        db,
        JobSpec::Play {
            playbook: name.to_string(),
        },
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
    playbook_job(
        root,
        db,
        JobSpec::Install {
            profile: profile.to_string(),
        },
        args,
        json,
    )
}

pub(super) fn playbook_job(
    root: &Path,
    db: Option<PathBuf>,
    job: JobSpec,
    args: PlayArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let mut req = request(job, Targets::Pattern(args.limit.clone()), &args.fleet);
    req.settings.diff = args.diff;
    req.settings.extra_vars = args.extra_vars.clone();
    req.settings.tags = args.tags.clone();
    req.settings.skip_tags = args.skip_tags.clone();
    req.settings.r#become = args.privilege.become_root;
    req.settings.become_user = args.privilege.become_user.clone();
    let prepared = ops::prepare(source, req)?;
    print_warnings(&prepared);
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = with_glass(gate(&db), &args.glass);
    // Nothing runs, not even a plan, for a job the gate refuses.
    admit(&gate, &prepared, args.check || args.emit_scripts.is_some())?;
    if let Some(dir) = &args.emit_scripts {
        std::fs::create_dir_all(dir)?;
        let scripts = prepared.scripts(args.check)?;
        for (node, text) in &scripts {
            std::fs::write(dir.join(format!("{node}.sh")), text)?;
        }
        eprintln!("wrote {} script(s) to {}", scripts.len(), dir.display());
        return Ok(Exit::Ok);
    }
    let mut prepared = prepared;
    prepared.set_become_password(become_password(&args.privilege)?);
    let prepared = Arc::new(prepared);
    if args.check {
        banner(&prepared, " --check", json);
        let driven = drive(
            &db,
            Printer::new(json, false).with_tasks(),
            move |launch| async move {
                let outcome = prepared.check(&gate, &launch).await?;
                let plan = Plan::from_check(prepared.description(), &outcome.report);
                Ok::<_, ops::OpsError>((outcome.report, plan))
            },
        )?;
        let mut plan = None;
        let mut driven = driven.try_map(|v| {
            v.map(|(report, p)| {
                plan = Some(p);
                report
            })
        })?;
        if driven.printer.is_json()
            && let Some(plan) = plan
        {
            driven
                .printer
                .print(&serde_json::json!({"event": "plan", "plan": plan}).to_string());
        }
        return Ok(conclude(driven));
    }
    if !args.yes {
        confirm_with_plan(&prepared, &db, "apply")?;
    }
    banner(&prepared, "", json);
    let min_compliance = prepared.profile().and_then(|p| p.min_compliance);
    let driven = drive(
        &db,
        Printer::new(json, false).with_tasks(),
        move |launch| async move { prepared.apply(&gate, &launch).await },
    )?;
    let mut compliance = None;
    let mut reflections = Vec::new();
    let mut driven = driven.try_map(|o| {
        o.map(|o| {
            reflections = super::fleet_cmd::reflection_lines(&o, json);
            compliance = o.compliance.zip(o.audit);
            o.report
        })
    })?;
    for l in &reflections {
        driven.printer.print(l);
    }
    // An install of a profile with a baseline ends with an audit: the
    // node's first-boot compliance, recorded in the store.
    let below = compliance.as_ref().is_some_and(|(c, _)| {
        !c.unmeasured.is_empty() || min_compliance.is_some_and(|m| c.percent + 1e-9 < f64::from(m))
    });
    if let Some((c, audit)) = &compliance {
        let text = install_audit_summary(c, audit, min_compliance, json);
        driven.printer.print(&text);
    }
    let exit = conclude(driven);
    Ok(match exit {
        Exit::Ok if below => Exit::TargetsFailed,
        exit => exit,
    })
}

/// The closing audit of an install: compliance per section, the failing
/// rules per node, and the profile's threshold (or its JSON).
fn install_audit_summary(
    c: &Compliance,
    audit: &crate::fleet::RunReport,
    min: Option<u8>,
    json: bool,
) -> String {
    let failing = |r: &crate::fleet::NodeResult| -> Vec<String> {
        r.tasks
            .iter()
            .filter(|t| {
                matches!(
                    t.status,
                    TaskStatus::Failed | TaskStatus::Refused | TaskStatus::Unknown
                )
            })
            .map(|t| t.name.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    };
    if json {
        return serde_json::json!({"event": "compliance", "baseline": c.baseline, "run_id": audit.run_id,
            "percent": c.percent, "min_compliance": min, "passing": c.passing, "failing": c.failing, "unknown": c.unknown,
            "not_applicable": c.not_applicable, "nodes_measured": c.nodes_measured, "nodes_total": c.nodes_total,
            "sections": c.sections,
            "nodes": audit.results.iter().map(|r| serde_json::json!({"node": r.node, "failing_rules": failing(r)})).collect::<Vec<_>>()})
        .to_string();
    }
    let mut out = format!(
        "\nfirst-boot audit ({}, run {}):\n",
        sanitize(c.baseline.as_bytes()),
        audit.run_id
    );
    for s in &c.sections {
        out.push_str(&format!(
            "  {:12} {:>5.1}%  ({} passing, {} failing, {} unknown)\n",
            s.section, s.percent, s.passing, s.failing, s.unknown
        ));
    }
    for r in &audit.results {
        let f = failing(r);
        if !f.is_empty() {
            out.push_str(&format!(
                "  {} not passing: {}\n",
                r.node,
                sanitize(f.join(", ").as_bytes())
            ));
        }
    }
    out.push_str(&format!(
        "compliance: {:.1}% on {} of {} node{}{}",
        c.percent,
        c.nodes_measured,
        c.nodes_total,
        plural(c.nodes_total),
        match min {
            Some(m) if c.percent + 1e-9 < f64::from(m) => {
                format!(" — below the profile's min_compliance of {m}%: the install fails")
            }
            Some(m) => format!(" (the profile requires {m}%)"),
            None => String::new(),
        }
    ));
    out
}

/// The gate with the operator's `--break-glass`, if any.
fn with_glass(gate: Gate, glass: &super::freeze_cmd::BreakGlassArgs) -> Gate {
    match glass.glass() {
        Some(g) => gate.with_break_glass(g),
        None => gate,
    }
}

/// The gate's answer before anything runs. A check changes nothing, so only
/// invalid input refuses it.
fn admit(gate: &Gate, prepared: &Prepared, changes_nothing: bool) -> anyhow::Result<()> {
    match gate.admit(prepared) {
        Decision::Refused(r) if !changes_nothing || r.class == ops::RefusalClass::Invalid => {
            Err(ops::OpsError::Refused(r).into())
        }
        _ => Ok(()),
    }
}

fn banner(prepared: &Prepared, suffix: &str, json: bool) {
    if !json {
        let n = prepared.nodes().len();
        eprintln!(
            "{}{suffix} on {n} node{} ({})",
            prepared.description(),
            plural(n),
            sanitize(prepared.target().as_bytes())
        );
    }
}

/// On a terminal: plan (check mode), show what would change per node, ask.
/// Without a terminal: refuse (the caller must pass --yes).
fn confirm_with_plan(prepared: &Arc<Prepared>, db: &Path, verb: &str) -> anyhow::Result<()> {
    let n = prepared.nodes().len();
    if !std::io::stdin().is_terminal() {
        return Err(InvalidInput(format!(
            "this changes {n} node{}; without a terminal to confirm on, pass --yes (or --check to see the plan)",
            plural(n)
        ))
        .into());
    }
    let job = prepared.clone();
    let driven = drive(db, Printer::quiet(), move |launch| async move {
        job.plan(&launch).await
    })?;
    if let Some(e) = &driven.store_error {
        return Err(anyhow::anyhow!("the plan was not recorded: {e}"));
    }
    let plan = driven.value;
    print!("{}", render_plan(&plan));
    print!(
        "\n{verb} to {n} node{} ({} would change)? [y/N] ",
        plural(n),
        plan.changing()
    );
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        return Ok(());
    }
    Err(InvalidInput("not confirmed; nothing was changed".into()).into())
}

/// A plan as text: per node, what would change.
pub fn render_plan(plan: &Plan) -> String {
    let mut out = String::from("\nPLAN (check mode, nothing changed yet):\n");
    let w = plan
        .nodes
        .iter()
        .map(|n| n.node.len())
        .max()
        .unwrap_or(4)
        .max(20);
    for n in &plan.nodes {
        let line = n.outcome.summary();
        out.push_str(&format!("  {:w$} {}\n", n.node, sanitize(line.as_bytes())));
    }
    out
}

/// `maestro harden --audit|--apply`.
pub fn harden_cmd(
    root: &Path,
    db: Option<PathBuf>,
    args: HardenArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let job = JobSpec::Harden {
        apply: args.apply,
        baseline: args.baseline.clone(),
        profile: args.profile.clone(),
        section: args.section.clone(),
    };
    if args.coverage {
        return coverage_cmd(&source, &args, json);
    }
    let prepared = ops::prepare(
        source,
        request(job, Targets::Pattern(args.limit.clone()), &args.fleet),
    )?;
    print_warnings(&prepared);
    let db = db.unwrap_or_else(crate::store::default_path);
    let gate = with_glass(gate(&db), &args.glass);
    admit(&gate, &prepared, !args.apply)?;
    let mut prepared = prepared;
    prepared.set_become_password(become_password(&args.privilege)?);
    let prepared = Arc::new(prepared);
    if args.apply && !args.yes {
        confirm_with_plan(&prepared, &db, "remediate")?;
    }
    banner(&prepared, "", json);
    let job = prepared.clone();
    let driven = drive(&db, Printer::quiet(), move |launch| async move {
        job.apply(&gate, &launch).await
    })?;
    let mut driven = driven.try_map(|v| v)?;
    let outcome = driven.value;
    let compliance = outcome
        .compliance
        .as_ref()
        .expect("hardening jobs report compliance");
    let table = compliance_table(&prepared, &outcome.report, compliance, json);
    driven.printer.print(&table);
    for l in super::fleet_cmd::reflection_lines(&outcome, json) {
        driven.printer.print(&l);
    }
    let exit = exit_for(&outcome.report, driven.store_error.as_ref());
    Ok(match exit {
        Exit::Internal => exit,
        _ if compliance.percent + 1e-9 < args.min_compliance
            || !compliance.unmeasured.is_empty() =>
        {
            Exit::TargetsFailed
        }
        _ if driven.broken_pipe || outcome.report.cancelled => Exit::TargetsFailed,
        _ => Exit::Ok,
    })
}

/// `maestro harden --coverage`: the CIS items the baseline's rules cover.
fn coverage_cmd(source: &ops::SotSource, args: &HardenArgs, json: bool) -> anyhow::Result<Exit> {
    let baseline = ops::harden_baseline(
        &source.sot,
        args.baseline.as_deref(),
        args.profile.as_deref(),
        args.section.as_deref(),
    )?;
    let baseline = &baseline;
    let c = crate::harden::coverage::coverage(baseline);
    if json {
        println!("{}", serde_json::to_string(&c)?);
        return Ok(Exit::Ok);
    }
    println!(
        "{} items covered by baseline `{}` ({} rules):\n",
        c.benchmark,
        sanitize(c.baseline.as_bytes()),
        baseline.rules.len()
    );
    println!("{:10} {:>7}  {:60}", "SECTION", "ITEMS", "TITLE");
    for s in &c.sections {
        let n = s.covered.len() + s.missing.len();
        println!(
            "{:10} {:>3}/{:<3}  {}",
            s.section,
            s.covered.len(),
            n,
            s.title
        );
    }
    println!("{:10} {:>3}/{:<3}", "total", c.covered(), c.total());
    let missing: Vec<String> = c
        .sections
        .iter()
        .flat_map(|s| s.missing.iter().map(|(id, t)| format!("{id} {t}")))
        .collect();
    if !missing.is_empty() {
        println!("\nnot covered:\n  {}", missing.join("\n  "));
    }
    if !c.unknown_ids.is_empty() {
        println!(
            "\nrules name items outside the catalogue: {}",
            sanitize(c.unknown_ids.join(", ").as_bytes())
        );
    }
    Ok(Exit::Ok)
}

/// The rule × node table and the fleet's compliance (or its JSON).
fn compliance_table(
    prepared: &Prepared,
    report: &crate::fleet::RunReport,
    c: &Compliance,
    json: bool,
) -> String {
    let baseline = prepared.baseline().expect("a hardening job has a baseline");
    if json {
        return serde_json::json!({"event": "compliance", "baseline": c.baseline, "run_id": report.run_id,
            "percent": c.percent, "passing": c.passing, "failing": c.failing, "unknown": c.unknown, "not_applicable": c.not_applicable,
            "sections": c.sections,
            "nodes_measured": c.nodes_measured, "nodes_total": c.nodes_total,
            "unmeasured": c.unmeasured.iter().map(|(n, why)| serde_json::json!({"node": n, "error": why})).collect::<Vec<_>>(),
            "nodes": report.results.iter().map(|r| serde_json::json!({"node": r.node, "status": r.status,
                "rules": r.tasks.iter().map(|t| {
                    let rule = baseline.rules.get(t.index);
                    serde_json::json!({"rule": t.name, "id": rule.map(|r| r.id.as_str()), "section": rule.map(|r| r.category.as_str()),
                        "cis": rule.map(|r| r.cis.clone()).unwrap_or_default(), "status": t.status, "message": t.message})
                }).collect::<Vec<_>>()})).collect::<Vec<_>>()})
        .to_string();
    }
    let mut out = String::new();
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
    out.push_str(&header);
    out.push('\n');
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
                    TaskStatus::Refused => "REFUSED",
                    TaskStatus::Failed => "FAIL",
                    TaskStatus::Unknown => "UNKNOWN",
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
        out.push_str(&line);
        out.push('\n');
    }
    for (node, why) in &c.unmeasured {
        out.push_str(&format!(
            "{node}: not audited: {}\n",
            sanitize(why.lines().next().unwrap_or("").as_bytes())
        ));
    }
    for r in &report.results {
        for t in r.tasks.iter().filter(|t| {
            matches!(
                t.status,
                TaskStatus::Failed | TaskStatus::Refused | TaskStatus::Unknown
            )
        }) {
            out.push_str(&format!(
                "  {} {}: {}\n",
                r.node,
                sanitize(t.name.as_bytes()),
                sanitize(t.message.as_bytes())
            ));
        }
    }
    out.push_str("\nSECTION      COMPLIANCE  PASS  FAIL  UNKNOWN  N/A\n");
    for s in &c.sections {
        out.push_str(&format!(
            "{:12} {:>9.1}%  {:>4}  {:>4}  {:>7}  {:>3}\n",
            s.section, s.percent, s.passing, s.failing, s.unknown, s.not_applicable
        ));
    }
    out.push_str(&format!(
        "\ncompliance: {:.1}% ({} passing, {} failing, {} unknown rule checks; measured on {} of {} node{}{}; n/a rules excluded, unknown count as not passing)",
        c.percent,
        c.passing,
        c.failing,
        c.unknown,
        c.nodes_measured,
        c.nodes_total,
        plural(c.nodes_total),
        if c.unmeasured.is_empty() {
            String::new()
        } else {
            format!(
                "; {} not audited count as failing every rule",
                c.unmeasured.len()
            )
        }
    ));
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `--ask-become-pass`: read the sudo password from the terminal without
/// echo; `--become-password-file`: its first line.
fn become_password(p: &Privilege) -> anyhow::Result<Option<Secret>> {
    if let Some(file) = &p.become_password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| InvalidInput(format!("--become-password-file {}: {e}", file.display())))?;
        let line = text.lines().next().unwrap_or("").to_string();
        return Ok(Some(Secret::new(line)));
    }
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
    super::tty::read_secret(&tty, "sudo password: ").map(|p| Some(Secret::new(p)))
}
