//! The console's views and popups. Each has `draw(&self, frame, area)`, a
//! pure function of its state, and `handle_key(&mut self, key) ->
//! Option<Action>`: `None` means the key means nothing here (the app then
//! says so), `Some(Action::Redraw)` that the component used it itself.

pub mod agents;
pub mod api;
pub mod approvals;
pub mod confirm;
pub mod fleet;
pub mod groups;
pub mod help;
pub mod kill;
pub mod ledger;
pub mod lessons;
pub mod list;
pub mod live;
pub mod node;
pub mod prompt;
pub mod reflect;
pub mod rollouts;
pub mod run;
pub mod runs;
pub mod telemetry;

/// Data that a background task is fetching.
#[derive(Debug, Clone)]
pub enum Loadable<T> {
    Loading,
    Loaded(T),
    Failed(String),
}
