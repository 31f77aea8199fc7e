//! The console (`maestro` on a terminal): a k9s-style face over the same
//! engine the CLI drives. `:` command mode, `/` filter, `?` help, `Esc`
//! back, `q` quit.
//!
//! [`app`] holds the state and turns keys into [`action::Action`]s;
//! [`components`] are the views, each drawn as a pure function of its state;
//! [`runtime`] is the event loop that runs store reads and engine work in
//! tokio tasks. This module sets the terminal up (raw mode, alternate
//! screen) and always puts it back, on panics too.

pub mod action;
pub mod app;
pub mod components;
pub mod demo;
pub mod filter;
pub mod keys;
pub mod runtime;
#[cfg(test)]
mod tests;
pub mod text;

use std::io::{Stdout, stdout};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use crossterm::ExecutableCommand;
use crossterm::cursor::Show;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub use app::{App, ExecPolicy, Info};
pub use runtime::{ExecContext, Stores, job_request, plan_exec, run_exec};

use crate::fleet::event::now_ms;
use crate::fleet::resolve::ConnectOptions;
use crate::fleet::ssh::ExecLimits;
use crate::ops::{Gate, SotSource};

/// Everything the console needs.
pub struct Config {
    /// The SoT, its directory (as shown and recorded with runs) and commit.
    pub source: SotSource,
    /// `maestro` or `maestro demo`.
    pub title: String,
    pub db: PathBuf,
    pub connect: ConnectOptions,
    pub forks: usize,
    pub limits: ExecLimits,
    pub policy: ExecPolicy,
    /// Who the console's jobs run as (proven by an SSH key, or a typed name).
    pub actor: crate::identity::Actor,
}

impl Config {
    /// What the console's runs use.
    pub fn exec_context(&self) -> ExecContext {
        let actor = self.actor.clone();
        ExecContext {
            source: self.source.clone(),
            connect: self.connect.clone(),
            forks: self.forks,
            limits: self.limits.clone(),
            gate: Arc::new(Gate::new(Some(self.db.clone()), actor).with(self.policy.clone())),
        }
    }

    fn split(self) -> (App, ExecContext, Stores) {
        let mut details = vec![format!(
            "forks {} · timeout {} · output kept {} KiB per stream",
            self.forks,
            self.limits
                .timeout
                .map(|t| format!("{}s", t.as_secs_f64()))
                .unwrap_or_else(|| "none".into()),
            self.limits.max_output / 1024
        )];
        details.push(format!("recorded in {}", crate::store::shown(&self.db)));
        let ctx = self.exec_context();
        let info = Info {
            title: self.title,
            sot: self.source.label.clone(),
            head: self
                .source
                .commit
                .as_ref()
                .map(|h| h.chars().take(7).collect()),
            store: crate::store::shown(&self.db),
            policy: self.policy,
            run_details: details,
        };
        let app = App::new(info, Arc::clone(&self.source.sot), now_ms());
        let stores = Stores { db: self.db };
        (app, ctx, stores)
    }
}

/// Run the console on this terminal until the operator quits; builds its
/// own tokio runtime.
pub fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run_async(config))
}

/// Run the console within the caller's tokio runtime (the demo serves its
/// simulated fleet from the same runtime).
pub async fn run_async(config: Config) -> anyhow::Result<()> {
    let (app, ctx, stores) = config.split();
    let mut terminal = TerminalGuard::enter()?;
    let result = runtime::event_loop(&mut terminal.terminal, app, ctx, stores).await;
    drop(terminal);
    result
}

/// Raw mode and the alternate screen while alive; restored on drop and by
/// the panic hook, before the panic message is printed.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode().context("switching the terminal to raw mode")?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let setup = || -> std::io::Result<Terminal<CrosstermBackend<Stdout>>> {
            stdout().execute(EnterAlternateScreen)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(anyhow::Error::new(e).context("setting up the terminal"))
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        // Back to the default hook: the terminal is ours no more. (Not while
        // unwinding: take_hook panics then, which would abort.)
        if !std::thread::panicking() {
            let _ = std::panic::take_hook();
        }
    }
}

/// Whether the terminal is in the console's modes (raw, alternate screen).
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Leave the alternate screen, show the cursor, end raw mode. Safe to call
/// from a panic hook and again from the guard's drop: only the first call
/// acts (leaving the alternate screen twice would move the cursor back over
/// whatever was printed in between, such as the panic message).
fn restore_terminal() {
    if !TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = stdout();
    let _ = out.execute(LeaveAlternateScreen);
    let _ = out.execute(Show);
    let _ = disable_raw_mode();
}
