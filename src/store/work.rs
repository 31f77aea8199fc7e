//! Shared work: a run whose nodes several controllers split between them.
//!
//! The run's nodes are rows of a work table. A controller claims a batch of
//! free rows (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so two controllers
//! claiming at once never wait for or take the same row), runs them, and
//! completes each one in the same transaction that records its result, only
//! while the claim is still its own. A claim lasts the run's TTL and the
//! holder renews it while it works; a controller that dies stops renewing,
//! its claims expire, and whoever claims next takes them over. So every
//! node's result is recorded exactly once, by the controller that held its
//! claim; a node whose controller died while it ran is run again by the
//! controller that took it over (`attempts` says so).
//!
//! Expiry is measured on the database's clock on PostgreSQL (controllers on
//! several machines need not agree on the time) and on the local clock with
//! SQLite (one machine).

use serde::Serialize;

use super::Result;
use crate::fleet::event::NodeResult;

/// A shared run as its starting controller records it.
#[derive(Debug, Clone)]
pub struct NewWork {
    pub run_id: String,
    /// What runs, for a joining controller to prepare the same job
    /// (JSON of [`crate::work::SharedJob`]).
    pub job: String,
    /// The SoT commit the run was prepared from: a joining controller must
    /// be at the same one.
    pub sot_commit: Option<String>,
    /// The run's nodes, in target order.
    pub nodes: Vec<String>,
    /// How long a claim lasts without being renewed.
    pub ttl_ms: i64,
    pub created_by: String,
}

/// A shared run.
#[derive(Debug, Clone, Serialize)]
pub struct WorkRun {
    pub run_id: String,
    pub job: String,
    pub sot_commit: Option<String>,
    pub ttl_ms: i64,
    pub created_ms: i64,
    pub created_by: String,
    /// The controller that saw the last node done and finished the run.
    pub closed_by: Option<String>,
}

/// A node claimed by this controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub node: String,
    /// The controller whose expired claim this one took over.
    pub taken_from: Option<String>,
    /// How many times the node has been claimed, this claim included.
    pub attempts: u32,
}

/// Where one node of a shared run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    Free,
    Claimed,
    Done,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Free => "free",
            ItemState::Claimed => "claimed",
            ItemState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<ItemState> {
        Some(match s {
            "free" => ItemState::Free,
            "claimed" => ItemState::Claimed,
            "done" => ItemState::Done,
            _ => return None,
        })
    }
}

/// One node of a shared run: who holds or did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkItem {
    pub node: String,
    pub state: ItemState,
    pub claimed_by: Option<String>,
    pub done_by: Option<String>,
    pub attempts: u32,
}

/// How far a shared run is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub free: usize,
    pub claimed: usize,
    pub done: usize,
}

impl Progress {
    pub fn total(&self) -> usize {
        self.free + self.claimed + self.done
    }

    /// Every node is done.
    pub fn finished(&self) -> bool {
        self.free == 0 && self.claimed == 0
    }
}

/// What shared work needs from a store.
pub trait WorkStore: Send {
    /// Record a shared run and its nodes, all free.
    fn create_work(&mut self, work: &NewWork) -> Result<()>;
    /// A shared run by its whole id.
    fn work(&self, run: &str) -> Result<Option<WorkRun>>;
    /// Claim up to `max` nodes that are free or whose claim expired, in
    /// target order. Nothing is claimable until the run itself is recorded.
    fn claim(&mut self, run: &str, controller: &str, max: usize) -> Result<Vec<Claim>>;
    /// Extend every claim `controller` holds in the run; how many it holds.
    fn renew(&mut self, run: &str, controller: &str) -> Result<usize>;
    /// Give back claims of nodes `controller` never started (it was stopped).
    fn release(&mut self, run: &str, controller: &str, nodes: &[String]) -> Result<()>;
    /// Record each result and mark its node done, each in one transaction,
    /// only while `controller` still holds the node's claim. `false` for a
    /// node another controller took over: its result here is not recorded.
    fn complete(
        &mut self,
        run: &str,
        controller: &str,
        results: &[NodeResult],
    ) -> Result<Vec<bool>>;
    fn progress(&self, run: &str) -> Result<Progress>;
    /// Every node of the run, in target order.
    fn items(&self, run: &str) -> Result<Vec<WorkItem>>;
    /// Mark the run closed by `controller` if every node is done and nobody
    /// closed it yet: `true` for exactly one caller, which finishes the run.
    fn close(&mut self, run: &str, controller: &str) -> Result<bool>;
}
