//! Driving a job from the command line: a tokio runtime, one bus with the run
//! store and the printer subscribed, and the signals that stop a run.
//!
//! Ctrl-C, SIGTERM, SIGHUP and a closed stdout (`maestro exec … | head -1`)
//! all cancel the run the same way: the remote commands are stopped, the
//! run is recorded as cancelled, and maestro exits non-zero. A second Ctrl-C
//! quits at once (exit 130). A run store that could not record the run makes
//! the exit 5, whatever the nodes did.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

use super::printer::Printer;
use crate::bus::{Bus, Subscriber, SubscriberError, pump};
use crate::exit::Exit;
use crate::fleet::{Cancel, RunReport};
use crate::ops::Launch;

/// What a driven job left besides its value.
pub struct Driven<T> {
    pub value: T,
    pub printer: Printer,
    /// The store could not record (all of) the run.
    pub store_error: Option<SubscriberError>,
    /// Set when stdout was closed (the printer stopped).
    pub broken_pipe: bool,
}

impl<T> Driven<T> {
    /// The same, with the value mapped (an error ends it).
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Driven<U>, E> {
        Ok(Driven {
            value: f(self.value)?,
            printer: self.printer,
            store_error: self.store_error,
            broken_pipe: self.broken_pipe,
        })
    }
}

/// Run `job` on a fresh runtime with its events going to the store at `db`
/// and to `printer`.
pub fn drive<T, F, Fut>(db: &Path, printer: Printer, job: F) -> anyhow::Result<Driven<T>>
where
    F: FnOnce(Launch) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut store = crate::store::open_path(db)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (bus, rx) = Bus::new();
        let cancel = Cancel::new();
        let broken_pipe = Arc::new(AtomicBool::new(false));
        let mut printer = printer.on_broken_pipe(cancel.clone(), broken_pipe.clone());
        let task = tokio::spawn(job(Launch::new(bus, cancel.clone())));
        let signals = tokio::spawn(stop_on_signals(cancel));
        let errors = {
            let mut subscribers: [&mut dyn Subscriber; 2] = [&mut *store, &mut printer];
            pump(rx, &mut subscribers).await
        };
        let value = task.await.context("the run task failed")?;
        signals.abort();
        let store_error = errors.into_iter().find(|e| e.subscriber == store.name());
        Ok(Driven {
            value,
            printer,
            store_error,
            broken_pipe: broken_pipe.load(Ordering::SeqCst),
        })
    })
}

async fn stop_on_signals(cancel: Cancel) {
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if r.is_err() {
                return;
            }
            eprintln!("\ncancelling: stopping remote commands (Ctrl-C again to quit at once)");
            cancel.cancel_all();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
        _ = term.recv() => {
            eprintln!("\nSIGTERM: cancelling the run (stopping remote commands)");
            cancel.cancel_all();
        }
        _ = hup.recv() => {
            cancel.cancel_all();
        }
    }
}

/// Print the recap of a finished run and choose the exit code: 5 when the
/// store lost the run, 1 when a node did not succeed (or the run was
/// cancelled), else 0.
pub fn conclude(mut driven: Driven<RunReport>) -> Exit {
    driven.printer.finish(&driven.value);
    match exit_for(&driven.value, driven.store_error.as_ref()) {
        // Output nobody read is not a success, even when the nodes finished.
        Exit::Ok if driven.broken_pipe => Exit::TargetsFailed,
        exit => exit,
    }
}

/// The exit code of a run (see [`conclude`]), telling the operator when the
/// store did not record it.
pub fn exit_for(report: &RunReport, store_error: Option<&SubscriberError>) -> Exit {
    if let Some(e) = store_error {
        eprintln!(
            "error: run {} was not recorded: {e}; its results above are all there is",
            report.run_id
        );
        return Exit::Internal;
    }
    if report.summary.all_ok() && !report.cancelled {
        Exit::Ok
    } else {
        Exit::TargetsFailed
    }
}
