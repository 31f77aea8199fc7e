//! `maestro` on a terminal (and `maestro tui`): the console over the SoT;
//! `maestro demo`: the console over a throwaway simulated fleet.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, FromArgMatches};

use super::FleetArgs;
use super::fleet_cmd::connect_options;
use crate::exit::Exit;
use crate::fleet::ssh::ExecLimits;
use crate::tui::demo::{DEFAULT_NODES, Demo};
use crate::tui::{self, ExecPolicy};

#[derive(Args, Debug)]
pub struct TuiArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
}

impl TuiArgs {
    /// What `maestro` alone means: the console with every default.
    pub fn defaults() -> TuiArgs {
        let cmd = TuiArgs::augment_args(clap::Command::new("maestro"));
        TuiArgs::from_arg_matches(&cmd.get_matches_from(["maestro"])).expect("the defaults parse")
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many simulated nodes
    #[arg(long, default_value_t = DEFAULT_NODES)]
    pub nodes: usize,
}

/// The console needs a terminal on both ends; say so and exit 2 otherwise.
fn require_terminal(what: &str) -> Option<Exit> {
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return None;
    }
    eprintln!(
        "error: {what} opens the console, which needs a terminal (stdin and stdout are not both terminals)\n\
         usage: run it in a terminal, or use a subcommand such as `maestro node list` or \
         `maestro exec TARGET -- COMMAND` (see `maestro --help`)"
    );
    Some(Exit::InvalidInput)
}

pub fn tui(root: &Path, db: Option<PathBuf>, args: TuiArgs) -> anyhow::Result<Exit> {
    if let Some(exit) = require_terminal("maestro") {
        return Ok(exit);
    }
    let source = super::fleet_cmd::load_source(root)?;
    tui::run(tui::Config {
        actor: super::fleet_cmd::identity(),
        source,
        title: "maestro".into(),
        db: db.unwrap_or_else(crate::store::default_path),
        connect: connect_options(&args.fleet),
        forks: args.fleet.forks,
        limits: ExecLimits {
            max_output: args.fleet.max_output,
            timeout: args.fleet.timeout.map(Duration::from_secs_f64),
        },
        policy: ExecPolicy::Allowed,
    })?;
    Ok(Exit::Ok)
}

pub fn demo(args: DemoArgs) -> anyhow::Result<Exit> {
    if let Some(exit) = require_terminal("maestro demo") {
        return Ok(exit);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let demo = Demo::start(args.nodes).await.context("starting the demo")?;
        let result = match demo.config() {
            Ok(config) => tui::run_async(config).await,
            Err(e) => Err(e.into()),
        };
        demo.shutdown().await;
        result
    })?;
    eprintln!("demo over: its simulated fleet, SoT and run store were removed");
    Ok(Exit::Ok)
}
