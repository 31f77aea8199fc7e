//! Cancellation of a run or of single nodes (Ctrl-C, the TUI's cancel keys).

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Default, Clone)]
struct State {
    all: bool,
    nodes: HashSet<String>,
}

/// A cheap, cloneable handle: cancel everything or one node; wait for either.
#[derive(Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<State>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::new()
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel {
            tx: Arc::new(watch::Sender::new(State::default())),
        }
    }

    pub fn cancel_all(&self) {
        self.tx.send_modify(|s| s.all = true);
    }

    pub fn cancel_node(&self, node: &str) {
        self.tx.send_modify(|s| {
            s.nodes.insert(node.to_string());
        });
    }

    pub fn is_cancelled(&self, node: &str) -> bool {
        let s = self.tx.borrow();
        s.all || s.nodes.contains(node)
    }

    pub fn all_cancelled(&self) -> bool {
        self.tx.borrow().all
    }

    /// Resolves once the whole run or `node` is cancelled.
    pub async fn cancelled(&self, node: &str) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|s| s.all || s.nodes.contains(node)).await;
    }

    /// Resolves once the whole run is cancelled.
    pub async fn all(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|s| s.all).await;
    }
}
