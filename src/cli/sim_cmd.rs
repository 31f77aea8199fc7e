//! `maestro simulate`: serve a simulated fleet from this process until
//! stopped, for benchmarks that drive it with a separate `maestro` controller.

use std::path::PathBuf;

use anyhow::Context;

use crate::exit::Exit;
use crate::sim::{SimConfig, Simulator, fleet_files};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// How many nodes
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Directory for the SoT (DIR/sot), the operator's HOME (DIR/home) and node scratch dirs (DIR/nodes)
    #[arg(long)]
    pub dir: PathBuf,
    /// The most connections the controller will hold at once (its --forks); sizes the fd budget
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Point each node's runtime_root/log_dir/state_dir into its scratch dir (for install benchmarks)
    #[arg(long)]
    pub scratch_vars: bool,
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let key = fleet_files::client_key();
        let mut cfg = SimConfig::new(args.nodes, key.public_key().clone(), args.dir.join("nodes"));
        cfg.shared_host_key = args.nodes > 200;
        cfg.max_connections = args.max_connections;
        let sim = Simulator::start(cfg)
            .await
            .context("starting the simulated fleet")?;
        let sot = args.dir.join("sot");
        std::fs::create_dir_all(&sot)?;
        for (path, text) in fleet_files::sot_files(&sim, "simulated", "maestro", args.scratch_vars)
        {
            std::fs::write(sot.join(path), text)?;
        }
        fleet_files::write_home(&args.dir.join("home"), &key, &sim)?;
        std::fs::write(args.dir.join("ready"), format!("{}\n", std::process::id()))?;
        eprintln!(
            "simulating {} nodes: SoT {} · HOME {} · stop with Ctrl-C or SIGTERM",
            sim.nodes().len(),
            sot.display(),
            args.dir.join("home").display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        sim.shutdown().await;
        Ok(Exit::Ok)
    })
}
