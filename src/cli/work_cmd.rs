//! `exec --share` and `maestro join`: one run's nodes split between
//! controllers of the same store (see [`crate::work`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::FleetArgs;
use super::drive::drive;
use super::fleet_cmd::{conclude_job, gate, load_source, print_warnings, request};
use super::printer::{Printer, sanitize};
use crate::exit::Exit;
use crate::fleet::ssh::ExecLimits;
use crate::ops::{self, JobSpec, Prepared, Targets};
use crate::work::Share;

/// Record `prepared`'s run as shared work before it starts, and tell the
/// operator how the others join.
pub fn share(
    prepared: &mut Prepared,
    db: &Path,
    run_id: &str,
    ttl: Duration,
    json: bool,
) -> ops::Result<()> {
    let job = prepared.shared_job().ok_or_else(|| {
        ops::OpsError::Invalid("only `exec` can be shared between controllers".into())
    })?;
    let commit = prepared.sot_commit().map(str::to_string);
    let share = Share::start(db, run_id, &job, commit, prepared.nodes(), ttl)?;
    if !json {
        eprintln!(
            "shared run {run_id}: other controllers of {} take part with `maestro join {run_id}` \
             (claims last {:.0} s unrenewed)",
            crate::store::shown(db),
            ttl.as_secs_f64()
        );
    }
    prepared.share(Arc::new(share))
}

pub fn join(
    root: &Path,
    db: Option<PathBuf>,
    run: &str,
    fleet: &FleetArgs,
    json: bool,
) -> anyhow::Result<Exit> {
    let source = load_source(root)?;
    let db = db.unwrap_or_else(crate::store::default_path);
    let (share, job) = match Share::join(&db, run, source.commit.as_deref()) {
        Ok(joined) => joined,
        Err(e) => {
            let e = ops::OpsError::from(e);
            eprintln!("error: {e}");
            return Ok(e.exit());
        }
    };
    let mut req = request(
        JobSpec::Exec {
            command: job.command.clone(),
        },
        Targets::Pattern(job.target.clone()),
        fleet,
    );
    // What each node runs and keeps is the run's, not this command line's.
    req.limits = ExecLimits {
        max_output: job.max_output,
        timeout: job.timeout_s.map(Duration::from_secs_f64),
    };
    let mut prepared = ops::prepare(source, req)?;
    print_warnings(&prepared);
    if !json {
        eprintln!(
            "joining run {} as {}: exec on {} ({} nodes), forks {}: {}",
            share.run_id(),
            share.controller(),
            job.target,
            prepared.nodes().len(),
            fleet.forks,
            sanitize(job.command.as_bytes())
        );
    }
    let run_id = share.run_id().to_string();
    prepared.share(Arc::new(share))?;
    let gate = gate(&db);
    let driven = drive(
        &db,
        Printer::new(json, true),
        move |mut launch| async move {
            launch.run_id = run_id;
            prepared.apply(&gate, &launch).await
        },
    )?;
    Ok(conclude_job(driven, json)?)
}
