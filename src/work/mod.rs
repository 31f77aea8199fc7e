//! Shared work: one run's nodes split between several controllers.
//!
//! `maestro exec TARGET --share -- CMD` records the run's nodes in the
//! store's work table ([`crate::store::work`]) before it starts; any
//! controller with the same SoT commit and the same store (a team's
//! PostgreSQL database) joins with `maestro join RUN`. Every controller,
//! the starting one included, then claims nodes in batches, runs them with
//! its own `--forks`, renews its claims while they run and completes each
//! node with its result. A controller that dies stops renewing; after the
//! claim TTL the others take its nodes over, so the run finishes as long as
//! one controller is left, and `maestro join` finishes a run every
//! controller left. The controller that sees the last node done closes the
//! run (its summary is over every node), and every controller waits for
//! that, so each one's report is the whole run.
//!
//! [`Share`] is what the executor ([`crate::fleet::run_nodes`]) is handed;
//! this module never prints.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fleet::event::NodeResult;
use crate::store::{self, Claim, NewWork, Progress, Store, WorkRun};

/// How long a claim lasts without renewal unless `--claim-ttl` says.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("run {0} is not shared: only a run started with --share can be joined")]
    NotShared(String),
    #[error("run {run} is already finished (closed by {by}); nothing is left to join")]
    Closed { run: String, by: String },
    #[error("run {run}'s job is not one this maestro can read: {message}")]
    Job { run: String, message: String },
    #[error(
        "run {run} was prepared from SoT commit {theirs}, and this controller's SoT is at {ours}: \
         check out the same commit (git pull) and join again"
    )]
    OtherCommit {
        run: String,
        theirs: String,
        ours: String,
    },
}

pub type Result<T> = std::result::Result<T, WorkError>;

/// What a joining controller needs to prepare the same job: the job as
/// the starting controller's command line gave it. Never a secret: only
/// `exec` is shared, and its command is recorded with the run anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedJob {
    pub command: String,
    /// The target pattern as typed.
    pub target: String,
    pub timeout_s: Option<f64>,
    pub max_output: usize,
}

impl SharedJob {
    fn decode(run: &WorkRun) -> Result<SharedJob> {
        serde_json::from_str(&run.job).map_err(|e| WorkError::Job {
            run: run.run_id.clone(),
            message: e.to_string(),
        })
    }
}

/// This controller's part in one shared run.
pub struct Share {
    store: Mutex<Box<dyn Store>>,
    run_id: String,
    controller: String,
    joined: bool,
    ttl: Duration,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("run_id", &self.run_id)
            .field("controller", &self.controller)
            .field("joined", &self.joined)
            .finish()
    }
}

/// This process as a controller: `PID@HOST`, as rollouts name it.
pub fn controller_id() -> String {
    crate::rollout::controller::me()
}

impl Share {
    /// Record `run_id` as shared work over `nodes` in the store at `db`.
    pub fn start(
        db: &Path,
        run_id: &str,
        job: &SharedJob,
        sot_commit: Option<String>,
        nodes: &[String],
        ttl: Duration,
    ) -> Result<Share> {
        let mut store = store::open_path(db)?;
        let controller = controller_id();
        store.create_work(&NewWork {
            run_id: run_id.to_string(),
            job: serde_json::to_string(job).unwrap_or_default(),
            sot_commit,
            nodes: nodes.to_vec(),
            ttl_ms: ttl.as_millis() as i64,
            created_by: controller.clone(),
        })?;
        Ok(Share {
            store: Mutex::new(store),
            run_id: run_id.to_string(),
            controller,
            joined: false,
            ttl,
        })
    }

    /// Join the shared run `run_id` of the store at `db`: its job, and this
    /// controller's part in it. `sot_commit` is this controller's SoT HEAD,
    /// which must be the run's.
    pub fn join(db: &Path, run_id: &str, sot_commit: Option<&str>) -> Result<(Share, SharedJob)> {
        let store = store::open_path(db)?;
        let run = store
            .work(run_id)?
            .ok_or_else(|| WorkError::NotShared(run_id.to_string()))?;
        if let Some(by) = &run.closed_by {
            return Err(WorkError::Closed {
                run: run.run_id,
                by: by.clone(),
            });
        }
        if let Some(theirs) = &run.sot_commit
            && sot_commit != Some(theirs.as_str())
        {
            return Err(WorkError::OtherCommit {
                run: run.run_id.clone(),
                theirs: theirs.clone(),
                ours: sot_commit.unwrap_or("(not a git repository)").to_string(),
            });
        }
        let job = SharedJob::decode(&run)?;
        let share = Share {
            store: Mutex::new(store),
            run_id: run.run_id,
            controller: controller_id(),
            joined: true,
            ttl: Duration::from_millis(run.ttl_ms.max(1) as u64),
        };
        Ok((share, job))
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// Whether this controller joined a run another started (it does not
    /// announce the run's start).
    pub fn joined(&self) -> bool {
        self.joined
    }

    /// How often claims are renewed: three times a TTL.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        // A panic while holding the store leaves it as usable as before.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn claim(&self, max: usize) -> Result<Vec<Claim>> {
        Ok(self.store().claim(&self.run_id, &self.controller, max)?)
    }

    pub fn renew(&self) -> Result<usize> {
        Ok(self.store().renew(&self.run_id, &self.controller)?)
    }

    pub fn release(&self, nodes: &[String]) -> Result<()> {
        Ok(self
            .store()
            .release(&self.run_id, &self.controller, nodes)?)
    }

    /// Record each result while this controller holds its node: `false`
    /// for a node another controller took over.
    pub fn complete(&self, results: &[NodeResult]) -> Result<Vec<bool>> {
        Ok(self
            .store()
            .complete(&self.run_id, &self.controller, results)?)
    }

    pub fn progress(&self) -> Result<Progress> {
        Ok(self.store().progress(&self.run_id)?)
    }

    /// `true` for the one controller that closes the finished run.
    pub fn close(&self) -> Result<bool> {
        Ok(self.store().close(&self.run_id, &self.controller)?)
    }

    /// Every node's recorded result, in the run's target order.
    pub fn results(&self) -> Result<Vec<NodeResult>> {
        let store = self.store();
        match store.run(&self.run_id)? {
            Some(run) if run.id == self.run_id => Ok(store.results(&run)?),
            _ => Ok(Vec::new()),
        }
    }
}

/// The line `runs show` and the console's run view show for a shared run:
/// who did how many nodes, what is left, and which nodes were taken over
/// from a controller that stopped.
pub fn summary(work: &WorkRun, items: &[store::WorkItem]) -> String {
    use crate::store::ItemState;
    use crate::terminal_text::sanitize;
    let mut by: Vec<(String, usize)> = Vec::new();
    for i in items {
        if let Some(c) = &i.done_by {
            match by.iter_mut().find(|(n, _)| n == c) {
                Some((_, k)) => *k += 1,
                None => by.push((c.clone(), 1)),
            }
        }
    }
    let count = |s: ItemState| items.iter().filter(|i| i.state == s).count();
    let done = by
        .iter()
        .map(|(c, k)| format!("{} {k}", sanitize(c.as_bytes())))
        .collect::<Vec<_>>()
        .join(", ");
    let again: Vec<&str> = items
        .iter()
        .filter(|i| i.attempts > 1)
        .map(|i| i.node.as_str())
        .collect();
    let mut line = format!(
        "shared: started by {}, done by {} · {} free, {} claimed{}",
        sanitize(work.created_by.as_bytes()),
        if done.is_empty() {
            "nobody yet".into()
        } else {
            done
        },
        count(ItemState::Free),
        count(ItemState::Claimed),
        work.closed_by
            .as_ref()
            .map(|c| format!(" · closed by {}", sanitize(c.as_bytes())))
            .unwrap_or_default()
    );
    if !again.is_empty() {
        line.push_str(&format!(
            "\ntaken over from a controller that stopped: {}",
            again.join(", ")
        ));
    }
    line
}
