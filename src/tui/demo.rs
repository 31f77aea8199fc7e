//! `maestro demo`: a throwaway fleet to try the console on. A simulated
//! fleet ([`crate::sim`]) runs in this process; its SoT is a fresh git
//! repository, and the client key, known_hosts, ssh_config, node
//! directories and run store all live in one temporary directory that is
//! removed on exit. The operator's own ~/.ssh and run store are not used.
//!
//! The simulator runs commands on this very machine, so the demo runs them
//! in the simulator's sandbox ([`crate::sim::sandbox`]): the host read-only,
//! only the node's own directory writable. [`Demo::start`] probes the
//! sandbox first; when it does not work on this kernel, the demo is
//! read-only and the console refuses to run commands, saying why.

use std::path::{Path, PathBuf};

use crate::fleet::DEFAULT_FORKS;
use crate::fleet::resolve::ConnectOptions;
use crate::fleet::ssh::ExecLimits;
use crate::ops::SotSource;
use crate::sim::{SimConfig, SimError, SimNode, Simulator, fleet_files, sandbox};
use crate::sot::git::{Actor, init_repo};
use crate::sot::{self, SotError};
use crate::tui::{self, ExecPolicy};

pub const DEFAULT_NODES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the simulated fleet: {0}")]
    Sim(#[from] SimError),
    #[error("writing the demo SoT: {0}")]
    Sot(#[from] SotError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Io {
        what: what.into(),
        source,
    }
}

/// A running demo fleet. [`Demo::shutdown`] stops it and removes its files
/// (dropping it removes them too).
pub struct Demo {
    sim: Option<Simulator>,
    pub sot: PathBuf,
    pub db: PathBuf,
    pub connect: ConnectOptions,
    /// `Err(why)` when the sandbox does not work here: the demo is read-only.
    pub sandbox: Result<(), String>,
    // Last: removed after everything above is gone.
    dir: tempfile::TempDir,
}

impl Demo {
    /// Start `nodes` simulated nodes and write the SoT, keys and config for
    /// them. Must be called within a tokio runtime.
    pub async fn start(nodes: usize) -> Result<Demo, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("maestro-demo-")
            .tempdir()
            .map_err(io("creating the demo's temporary directory"))?;
        let root = dir.path().to_path_buf();
        let scratch = root.join("nodes");
        std::fs::create_dir_all(&scratch).map_err(io(format!("creating {}", scratch.display())))?;
        let probe_dir = scratch.clone();
        let sandbox = tokio::task::spawn_blocking(move || {
            sandbox::probe(&probe_dir).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the sandbox probe failed: {e}")));

        let key = fleet_files::client_key();
        let mut cfg = SimConfig::new(nodes, key.public_key().clone(), &scratch);
        cfg.name_prefix = "demo-".into();
        cfg.sandbox = sandbox.is_ok();
        let sim = Simulator::start(cfg).await?;

        let sot = root.join("sot");
        let actor = Actor {
            name: "maestro demo".into(),
            email: "demo@maestro.local".into(),
        };
        init_repo(
            &sot,
            &fleet_files::sot_files(&sim, "demo", "root", true)
                .into_iter()
                .chain(fleet_files::demo_library())
                .map(|(p, text)| (p, text.into_bytes()))
                .collect::<Vec<_>>(),
            &actor,
            &format!("A demo fleet of {nodes} simulated nodes"),
        )?;

        let home = root.join("home");
        fleet_files::write_home(&home, &key, &sim).map_err(io("writing the demo's client key"))?;
        let identity = home.join(".ssh/id_ed25519");
        let known_hosts = home.join(".ssh/known_hosts");
        // Its own ssh_config, so the operator's ~/.ssh/config and
        // ~/.ssh/known_hosts play no part.
        let ssh_config = root.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
                identity.display(),
                known_hosts.display()
            ),
        )
        .map_err(io("writing the demo's ssh_config"))?;
        Ok(Demo {
            sim: Some(sim),
            sot,
            db: root.join("runs.db"),
            connect: ConnectOptions {
                ssh_config: Some(ssh_config),
                known_hosts: vec![known_hosts],
                identities: vec![identity],
                ..ConnectOptions::default()
            },
            sandbox,
            dir,
        })
    }

    /// The temporary directory holding everything of the demo.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The simulated nodes (name, address, directory).
    pub fn nodes(&self) -> &[SimNode] {
        self.sim.as_ref().map_or(&[], |s| s.nodes())
    }

    pub fn policy(&self) -> ExecPolicy {
        match &self.sandbox {
            Ok(()) => ExecPolicy::Allowed,
            Err(why) => ExecPolicy::Refused(format!(
                "the demo runs commands on this machine and its sandbox does not work here ({why}), so running commands is switched off"
            )),
        }
    }

    /// The console's configuration for this demo.
    pub fn config(&self) -> Result<tui::Config, DemoError> {
        let sot = sot::load(&self.sot)?;
        Ok(tui::Config {
            source: SotSource::new(std::sync::Arc::new(sot), &self.sot),
            title: "maestro demo".into(),
            db: self.db.clone(),
            connect: self.connect.clone(),
            forks: DEFAULT_FORKS,
            limits: ExecLimits {
                max_output: 1 << 20,
                timeout: None,
            },
            policy: self.policy(),
            // The demo's SoT has no policies: its jobs run as the demo's
            // (typed) operator.
            actor: crate::identity::Actor::unverified("maestro demo"),
        })
    }

    /// What the console uses to run commands on this demo's nodes.
    pub fn exec_context(&self) -> Result<tui::ExecContext, DemoError> {
        Ok(self.config()?.exec_context())
    }

    /// Stop the simulated fleet (waiting for its commands to end) and remove
    /// every file of the demo.
    pub async fn shutdown(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}
