//! The headless face: clap subcommands over the engine. Everything printed to
//! the operator is printed here, never in the engine.

mod agent_cmd;
mod drift_cmd;
mod drive;
mod fleet_cmd;
mod freeze_cmd;
mod gateway_cmd;
mod kill_cmd;
mod ledger_cmd;
mod play_cmd;
mod policy_cmd;
pub(crate) mod printer;
mod reflect_cmd;
mod rollout_cmd;
mod serve_cmd;
mod sim_cmd;
mod sot_cmd;
mod telemetry_cmd;
mod tty;
mod tui_cmd;
mod work_cmd;

/// `println!` for results on stdout that ends the process quietly when the
/// reader went away (`maestro node list | head`), instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            panic!("writing to stdout: {e}");
        }
    }};
}
pub(crate) use out;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::exit::{EXIT_CODES_HELP, Exit};
use crate::sot::SotError;

#[derive(Parser, Debug)]
#[command(
    name = "maestro",
    version,
    about = "Run AI agents and model servers on a Linux fleet over plain SSH, with a git repository as the source of truth",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// The SoT directory [default: $MAESTRO_SOT, else ./ if it has maestro.toml, else ./sot]
    #[arg(long, global = true, value_name = "DIR")]
    pub sot: Option<PathBuf>,
    /// One JSON object per line instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// The run store: a SQLite file, or a postgres:// URL for a team's shared store [default: $MAESTRO_DB, else the SoT's [store] url, else $XDG_STATE_HOME/maestro/maestro.db, else ~/.local/state/maestro/maestro.db]
    #[arg(long, global = true, value_name = "FILE|URL")]
    pub db: Option<PathBuf>,
    /// Without a subcommand on a terminal: the console (`maestro tui`)
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new SoT repository from the built-in example
    Init(InitArgs),
    /// Validate the SoT and show its history
    #[command(subcommand)]
    Sot(SotCommand),
    /// List, show, add, remove and tag nodes (each change is a git commit)
    #[command(subcommand)]
    Node(NodeCommand),
    /// List, show, add, remove and tag agents (each change is a git commit)
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Run a command on the target nodes over SSH
    Exec(ExecArgs),
    /// Take part in a shared run another controller started (`exec --share`): claim its
    /// nodes in batches and run them until every node is done, whoever did it
    Join {
        /// The run's id, as `exec --share` printed it
        run: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Run a playbook on the target nodes (idempotent; --check, --diff)
    Play {
        /// A playbook file, or a name in the SoT's playbooks directory
        playbook: String,
        #[command(flatten)]
        args: play_cmd::PlayArgs,
    },
    /// Install a profile's playbooks (user, enterprise) on the target nodes
    Install {
        /// Profile from the profiles directory
        #[arg(long)]
        profile: String,
        #[command(flatten)]
        args: play_cmd::PlayArgs,
    },
    /// Audit or apply a hardening baseline
    Harden(play_cmd::HardenArgs),
    /// Deploy an agent's registry version: verified, switched, health-checked, rolled back on failure
    Deploy(agent_cmd::DeployArgs),
    /// Enable an agent on nodes: its runtime where missing, then its current version, healthy
    Enable(agent_cmd::ToggleArgs),
    /// Disable an agent on nodes: stop and remove its service (files kept for a later enable)
    Disable(agent_cmd::DisableArgs),
    /// Kill switch: stop an agent (or --all) on every node and keep it stopped; --release lifts it
    Kill(kill_cmd::KillArgs),
    /// Progressive delivery: canary, blue/green and shadow rollouts gated by live metrics (start, status, promote, pause, resume, abort, undo, retry)
    #[command(subcommand)]
    Rollout(rollout_cmd::RolloutCommand),
    /// The traffic layer on each node: which of an agent's instances answers its clients
    #[command(subcommand)]
    Gateway(gateway_cmd::GatewayCommand),
    /// List, add and remove freeze windows (each change is a git commit)
    #[command(subcommand)]
    Freeze(freeze_cmd::FreezeCommand),
    /// Cedar policies of the SoT: list them, explain a decision, run their tests
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// The evidence ledger: show entries, verify the hash chain and signed checkpoints
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCommand),
    /// Who maestro takes you for: a person of people.toml proven by your SSH key, or unverified
    Whoami,
    /// Approval requests held by the two-person rule, with their valid signatures
    Approvals {
        /// Also requests that are no longer pending
        #[arg(long)]
        all: bool,
    },
    /// Approve a held job: sign its plan with your SSH key (MAESTRO_IDENTITY or ssh-agent)
    Approve(policy_cmd::ApproveArgs),
    /// Reflection checklists: list pending reflections, answer one (--answers FILE or on the terminal), stats
    Reflect(reflect_cmd::ReflectArgs),
    /// Lessons learned by reflections: list them with their uses, promote one to long-term memory
    #[command(subcommand)]
    Lesson(reflect_cmd::LessonCommand),
    /// The read-only HTTP API: SoT, runs, rollouts, ledger, telemetry as JSON (/openapi.json)
    Serve(serve_cmd::ServeArgs),
    /// Bearer tokens of the HTTP API: add (printed once, its hash committed), list, remove
    #[command(subcommand)]
    Token(serve_cmd::TokenCommand),
    /// Serve a simulated fleet (in-process SSH servers) for benchmarks
    #[command(hide = true)]
    Simulate(sim_cmd::SimulateArgs),
    /// Live telemetry of the target nodes and their agents, like top (--once, --json)
    Top(telemetry_cmd::TopArgs),
    /// What differs from the SoT on each node (agents, unknown agents, the last playbook); --fix repairs
    Drift(drift_cmd::DriftArgs),
    /// The fleet's telemetry for Prometheus
    #[command(subcommand)]
    Metrics(telemetry_cmd::MetricsCommand),
    /// List recorded runs, or show one
    Runs {
        #[command(subcommand)]
        command: Option<RunsCommand>,
        /// How many runs to list
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// The console: fleet, runs and live runs in the terminal (the default on a terminal)
    Tui(tui_cmd::TuiArgs),
    /// The console on a throwaway simulated fleet (nothing outside its temp directory changes)
    Demo(tui_cmd::DemoArgs),
    /// Print a shell completion script (e.g. `maestro completions bash > /etc/bash_completion.d/maestro`)
    Completions { shell: clap_complete::Shell },
    /// Print the man page, maestro(1), in roff (`maestro man | man -l -`)
    Man,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Show one run: every node's status, exit code, error and output
    Show {
        /// Run id (a unique prefix is enough), or `last`
        id: String,
        /// Only this node
        #[arg(long)]
        node: Option<String>,
    },
}

/// How to reach the fleet; shared by every command that touches nodes.
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// How many nodes to work on at once
    #[arg(long, short = 'f', default_value_t = crate::fleet::DEFAULT_FORKS)]
    pub forks: usize,
    /// Stop a node's command after this many seconds
    #[arg(long, short = 'T', value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Give up connecting to a node after this many seconds [default: ssh_config ConnectTimeout, else 10]
    #[arg(long, value_name = "SECS")]
    pub connect_timeout: Option<f64>,
    /// ssh_config file [default: the SoT's [connection] ssh_config, else ~/.ssh/config]
    #[arg(short = 'F', value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Extra known_hosts file (repeatable)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Vec<PathBuf>,
    /// Trust unknown host keys on first use and record them (a changed key is still refused)
    #[arg(long)]
    pub accept_new: bool,
    /// Identity file, tried before ssh_config's (repeatable)
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Vec<PathBuf>,
    /// Connect as this user on every node
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Bytes of stdout and of stderr kept per node (the rest is counted)
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_output: usize,
    /// A lesson of lessons.toml this job applies (repeatable, in its
    /// scope): a use, with the run as evidence, when a proven person runs
    /// it and every node is ok
    #[arg(long, value_name = "ID")]
    pub lesson: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Nodes: names, globs, groups, tag selectors; `,`/`:` union, `&` intersect, `!` exclude (e.g. `gpu:&region=eu-west:!gpu-eu-04`)
    pub target: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Share the run's nodes with other controllers of the same store: they take part
    /// with `maestro join RUN`, each node claimed and done by exactly one of them
    #[arg(long)]
    pub share: bool,
    /// With --share: seconds a controller's claim on a node lasts unrenewed; a dead
    /// controller's nodes are taken over by the others after this [default: 30]
    #[arg(long, value_name = "SECS", requires = "share")]
    pub claim_ttl: Option<f64>,
    /// The command, after `--`
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory to create (must not exist or be empty)
    pub dir: PathBuf,
    /// Name of the fleet [default: the directory's name]
    #[arg(long)]
    pub name: Option<String>,
    /// Your SSH public key (e.g. ~/.ssh/id_ed25519.pub): you are added to people.toml, in
    /// the example's teams, so the example policies let you act once your key signs
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Your name in people.toml [default: $USER]
    #[arg(long, requires = "key")]
    pub person: Option<String>,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Subcommand, Debug)]
pub enum SotCommand {
    /// Validate every file; report every problem with file:line:col (exit 2 when invalid)
    Check,
    /// Show who changed the SoT, when and why
    Log {
        /// How many commits to show
        #[arg(short = 'n', long, default_value_t = 20)]
        limit: usize,
    },
    /// Scan the SoT for secrets (keys, tokens, passwords); --history scans every commit (exit 2 on a hit)
    Scan {
        /// Every blob the git history ever added, not only the working tree
        #[arg(long)]
        history: bool,
    },
}

/// Who makes a change and why; both end up in the commit.
#[derive(Args, Debug, Clone)]
pub struct Change {
    /// Why this change is made (becomes the commit message)
    #[arg(long, short = 'r')]
    pub reason: String,
    #[command(flatten)]
    pub who: Who,
    /// How long to wait for another change to this SoT to finish
    #[arg(long, value_name = "SECONDS", default_value_t = crate::sot::lock::DEFAULT_WAIT.as_secs())]
    pub wait: u64,
}

#[derive(Args, Debug, Clone)]
pub struct Who {
    /// Who makes the change, as "Name <email>" [default: git config user.name/user.email]
    #[arg(long, env = "MAESTRO_ACTOR")]
    pub actor: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// List nodes
    List,
    /// Show one node as the SoT resolves it
    Show { name: String },
    /// Add a node
    Add(NodeAdd),
    /// Remove a node
    Remove {
        name: String,
        #[command(flatten)]
        change: Change,
    },
    /// Set tags (key=value) and remove tags (--remove key) on a node
    Tag(TagArgs),
}

#[derive(Args, Debug)]
pub struct NodeAdd {
    pub name: String,
    /// IP address or DNS name
    #[arg(long)]
    pub address: String,
    #[arg(long)]
    pub port: Option<u16>,
    #[arg(long)]
    pub user: Option<String>,
    /// Group to join (repeatable)
    #[arg(long = "group", short = 'g', value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Tag as key=value (repeatable)
    #[arg(long = "tag", short = 't', value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Variable as key=value (repeatable)
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub vars: Vec<(String, String)>,
    #[arg(long)]
    pub profile: Option<String>,
    /// Nodes file to add to, relative to the SoT [default: nodes.toml]
    #[arg(long)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub change: Change,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub name: String,
    /// Tags to set, as key=value
    #[arg(value_parser = parse_pair, value_name = "KEY=VALUE")]
    pub set: Vec<(String, String)>,
    /// Tag keys to remove (repeatable)
    #[arg(long = "remove", value_name = "KEY")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub change: Change,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// List agents
    List,
    /// Show one agent with its versions
    Show { name: String },
    /// Add an agent to the registry
    Add(AgentAdd),
    /// Remove an agent from the registry
    Remove {
        name: String,
        #[command(flatten)]
        change: Change,
    },
    /// Set tags (key=value) and remove tags (--remove key) on an agent
    Tag(TagArgs),
    /// What each node runs: version, digest, health, since when (differences from the SoT marked)
    Status(agent_cmd::StatusArgs),
}

#[derive(Args, Debug)]
pub struct AgentAdd {
    pub name: String,
    /// Model from models.toml
    #[arg(long)]
    pub model: String,
    /// Autonomy level, L0 (suggests only) to L5 (acts alone)
    #[arg(long)]
    pub autonomy: String,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Tag as key=value (repeatable)
    #[arg(long = "tag", short = 't', value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    #[command(flatten)]
    pub change: Change,
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Resolve the SoT directory: flag, then environment, then the working directory.
pub fn sot_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    if let Some(d) = std::env::var_os("MAESTRO_SOT").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if std::path::Path::new(crate::sot::SETTINGS_FILE).is_file() {
        return PathBuf::from(".");
    }
    PathBuf::from("sot")
}

/// The team's store named by the SoT's `[store] url`, when neither `--db`
/// nor `$MAESTRO_DB` names one. `sot check` reports a bad value; here a
/// URL that is not one, or that carries a password, is not used.
fn team_store(sot: &std::path::Path) -> Option<PathBuf> {
    if std::env::var_os("MAESTRO_DB").is_some_and(|v| !v.is_empty()) {
        return None;
    }
    let text = std::fs::read_to_string(sot.join(crate::sot::SETTINGS_FILE)).ok()?;
    let settings: toml::Table = toml::from_str(&text).ok()?;
    let url = settings.get("store")?.get("url")?.as_str()?;
    let parsed = crate::store::PgUrl::parse(url)?;
    (!parsed.has_password()).then(|| PathBuf::from(url))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(e) => report(&e, json).into(),
    }
}

fn run(mut cli: Cli) -> anyhow::Result<Exit> {
    let sot = sot_dir(cli.sot);
    if cli.db.is_none() {
        cli.db = team_store(&sot);
    }
    let command = cli
        .command
        .unwrap_or_else(|| Command::Tui(tui_cmd::TuiArgs::defaults()));
    match command {
        Command::Init(args) => sot_cmd::init(args),
        Command::Sot(SotCommand::Check) => sot_cmd::check(&sot, cli.json),
        Command::Sot(SotCommand::Scan { history }) => sot_cmd::scan(&sot, history, cli.json),
        Command::Sot(SotCommand::Log { limit }) => sot_cmd::log(&sot, limit, cli.json),
        Command::Node(cmd) => sot_cmd::node(&sot, cmd, cli.json),
        Command::Agent(AgentCommand::Status(args)) => {
            agent_cmd::status(&sot, cli.db, args, cli.json)
        }
        Command::Agent(cmd) => sot_cmd::agent(&sot, cmd, cli.json),
        Command::Deploy(args) => agent_cmd::deploy(&sot, cli.db, args, cli.json),
        Command::Enable(args) => agent_cmd::enable(&sot, cli.db, args, cli.json),
        Command::Disable(args) => agent_cmd::disable(&sot, cli.db, args, cli.json),
        Command::Exec(args) => fleet_cmd::exec(&sot, cli.db, args, cli.json),
        Command::Join { run, fleet } => work_cmd::join(&sot, cli.db, &run, &fleet, cli.json),
        Command::Simulate(args) => sim_cmd::simulate(args),
        Command::Play { playbook, args } => {
            play_cmd::play_cmd(&sot, cli.db, &playbook, args, cli.json)
        }
        Command::Install { profile, args } => {
            play_cmd::install_cmd(&sot, cli.db, &profile, args, cli.json)
        }
        Command::Harden(args) => play_cmd::harden_cmd(&sot, cli.db, args, cli.json),
        Command::Top(args) => telemetry_cmd::top(&sot, cli.db, args, cli.json),
        Command::Drift(args) => drift_cmd::drift(&sot, cli.db, args, cli.json),
        Command::Metrics(cmd) => telemetry_cmd::metrics(&sot, cli.db, cmd),
        Command::Kill(args) => kill_cmd::kill(&sot, cli.db, args, cli.json),
        Command::Rollout(cmd) => rollout_cmd::rollout(&sot, cli.db, cmd, cli.json),
        Command::Gateway(cmd) => gateway_cmd::gateway(&sot, cli.db, cmd, cli.json),
        Command::Freeze(cmd) => freeze_cmd::freeze(&sot, cmd, cli.json),
        Command::Policy(cmd) => policy_cmd::policy(&sot, cmd, cli.json),
        Command::Ledger(cmd) => ledger_cmd::ledger(
            &sot,
            &cli.db.clone().unwrap_or_else(crate::store::default_path),
            cmd,
            cli.json,
        ),
        Command::Whoami => policy_cmd::whoami(&sot, cli.json),
        Command::Approvals { all } => policy_cmd::approvals(
            &sot,
            &cli.db.unwrap_or_else(crate::store::default_path),
            all,
            cli.json,
        ),
        Command::Approve(args) => policy_cmd::approve(
            &sot,
            &cli.db.unwrap_or_else(crate::store::default_path),
            args,
            cli.json,
        ),
        Command::Reflect(args) => reflect_cmd::reflect(
            &sot,
            &cli.db.unwrap_or_else(crate::store::default_path),
            args,
            cli.json,
        ),
        Command::Lesson(cmd) => reflect_cmd::lesson(
            &sot,
            &cli.db.unwrap_or_else(crate::store::default_path),
            cmd,
            cli.json,
        ),
        Command::Serve(args) => serve_cmd::serve(
            &sot,
            cli.db.unwrap_or_else(crate::store::default_path),
            args,
        ),
        Command::Token(cmd) => serve_cmd::token(&sot, cmd, cli.json),
        Command::Runs { command, limit } => fleet_cmd::runs(cli.db, command, limit, cli.json),
        Command::Tui(args) => tui_cmd::tui(&sot, cli.db, args),
        Command::Demo(args) => tui_cmd::demo(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a closed stdout.
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut cmd, "maestro", &mut text);
            print_all(&text)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut text)
                .context("rendering the man page")?;
            print_all(&text)
        }
    }
}

/// Write generated text to stdout; a reader that went away (`| head`) is fine.
fn print_all(text: &[u8]) -> anyhow::Result<Exit> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(Exit::Ok),
    }
}

/// Print an error and choose the exit code from what went wrong.
fn report(e: &anyhow::Error, json: bool) -> Exit {
    let exit = match e.downcast_ref::<SotError>() {
        Some(e) if e.is_invalid_input() => Exit::InvalidInput,
        _ if e.downcast_ref::<fleet_cmd::InvalidInput>().is_some() => Exit::InvalidInput,
        _ if let Some(o) = e.downcast_ref::<crate::ops::OpsError>() => o.exit(),
        _ if let Some(r) = e.downcast_ref::<crate::reflect::ReflectError>() => r.exit(),
        _ => Exit::Internal,
    };
    // Problems with file:line:col, from the SoT or a playbook or baseline.
    let sot_error =
        e.downcast_ref::<SotError>()
            .or(match e.downcast_ref::<crate::reflect::ReflectError>() {
                Some(crate::reflect::ReflectError::Sot(s)) => Some(s),
                _ => None,
            });
    let diagnostics = match (
        sot_error,
        e.downcast_ref::<crate::ops::OpsError>(),
        e.downcast_ref::<crate::reflect::ReflectError>(),
    ) {
        (Some(SotError::Invalid(d) | SotError::InvalidChange(d)), _, _) => Some(d),
        (_, Some(crate::ops::OpsError::Diagnostics(d)), _) => Some(d),
        (_, _, Some(crate::reflect::ReflectError::Diagnostics(d))) => Some(d),
        _ => None,
    };
    if json {
        if let Some(d) = diagnostics {
            for diag in d.iter() {
                out!(
                    "{}",
                    serde_json::json!({"event": "diagnostic", "diagnostic": diag})
                );
            }
        }
        out!(
            "{}",
            serde_json::json!({"event": "error", "exit": exit.code(), "message": format!("{e:#}")})
        );
    } else {
        // Errors quote what the operator typed and what the SoT holds (node
        // names, actors): never send their control characters to the terminal.
        match (sot_error, diagnostics) {
            (Some(SotError::InvalidChange(_)), _) | (_, None) => eprintln!(
                "error: {}",
                crate::terminal_text::sanitize_str(&format!("{e:#}"))
            ),
            (_, Some(d)) => eprintln!("{d}"),
        }
    }
    exit
}
