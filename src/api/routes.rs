//! The `/v1` routes: each reads, none writes.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, Shared, blocking};
use crate::store::Store;

type Answer = Result<Json<Value>, ApiError>;

pub(super) fn v1() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/sot", get(sot))
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{id}", get(run))
        .route("/v1/rollouts", get(rollouts))
        .route("/v1/rollouts/{id}", get(rollout))
        .route("/v1/ledger", get(ledger))
        .route("/v1/ledger/checkpoints", get(checkpoints))
        .route("/v1/telemetry", get(telemetry))
}

/// The most rows a list answers with.
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

impl Limit {
    fn get(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::BadRequest(format!(
                "limit={n}: from 1 to {MAX_LIMIT}"
            ))),
        }
    }
}

fn to_json(v: impl serde::Serialize) -> Answer {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::Internal(format!("writing the answer: {e}")))
}

/// The store, for one request at a time.
fn with_store<T>(
    shared: &Shared,
    f: impl FnOnce(&dyn Store) -> crate::store::Result<T>,
) -> Result<T, ApiError> {
    let store = shared
        .store
        .lock()
        .map_err(|_| ApiError::Internal("the run store's connection was lost".into()))?;
    f(&**store).map_err(|e| ApiError::Internal(format!("the run store: {e}")))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Answer {
    Ok(Json(
        json!({ "token": caller.token, "person": caller.person }),
    ))
}

#[derive(Deserialize)]
struct At {
    commit: Option<String>,
}

async fn sot(State(shared): State<Arc<Shared>>, Query(at): Query<At>) -> Answer {
    blocking(move || {
        let snap = shared.snapshots.at(&shared.cfg.sot, at.commit.as_deref())?;
        let sot = &snap.sot;
        let policies: Vec<Value> = sot
            .policies
            .as_deref()
            .map(|p| {
                p.list()
                    .map(|(id, o)| {
                        json!({"id": id, "effect": o.effect, "file": o.file,
                               "line": o.line, "reason": o.reason})
                    })
                    .collect()
            })
            .unwrap_or_default();
        to_json(json!({
            "commit": snap.commit,
            "nodes": sot.nodes,
            "groups": sot.groups.values().collect::<Vec<_>>(),
            "agents": sot.agents.values().collect::<Vec<_>>(),
            "models": sot.models.values().collect::<Vec<_>>(),
            "policies": policies,
            "freeze": sot.freeze,
            "killswitch": sot.killswitch,
        }))
    })
    .await
}

async fn runs(State(shared): State<Arc<Shared>>, Query(limit): Query<Limit>) -> Answer {
    let limit = limit.get()?;
    blocking(move || to_json(json!({ "runs": with_store(&shared, |s| s.runs(limit))? }))).await
}

async fn run(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let (run, results, notes) = with_store(&shared, |s| {
            let Some(run) = s.run(&id)? else {
                return Ok(None);
            };
            let results = s.results(&run)?;
            let notes = s.notes(&run)?;
            Ok(Some((run, results, notes)))
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no run `{id}` in the store")))?;
        to_json(json!({ "run": run, "results": results, "notes": notes }))
    })
    .await
}

async fn rollouts(State(shared): State<Arc<Shared>>, Query(limit): Query<Limit>) -> Answer {
    let limit = limit.get()?;
    blocking(move || to_json(json!({ "rollouts": with_store(&shared, |s| s.rollouts(limit))? })))
        .await
}

async fn rollout(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    blocking(move || {
        let (rollout, measurements, journal) = with_store(&shared, |s| {
            let Some(r) = s.rollout(&id)? else {
                return Ok(None);
            };
            let m = s.measurements(&r.id)?;
            let j = s.journal(&r.id)?;
            Ok(Some((r, m, j)))
        })?
        .ok_or_else(|| ApiError::NotFound(format!("no rollout `{id}` in the store")))?;
        to_json(json!({ "rollout": rollout, "measurements": measurements, "journal": journal }))
    })
    .await
}

#[derive(Deserialize)]
struct LedgerQuery {
    run: Option<String>,
    limit: Option<usize>,
}

async fn ledger(State(shared): State<Arc<Shared>>, Query(q): Query<LedgerQuery>) -> Answer {
    let limit = Limit { limit: q.limit }.get()?;
    blocking(move || {
        let place = crate::ops::evidence::ledger_place(&shared.cfg.db);
        let mut entries = crate::ledger::read(&place, q.run.as_deref())
            .map_err(|e| ApiError::Internal(format!("the ledger: {e}")))?;
        let total = entries.len();
        entries.drain(..total.saturating_sub(limit));
        to_json(json!({ "total": total, "entries": entries }))
    })
    .await
}

async fn checkpoints(State(shared): State<Arc<Shared>>) -> Answer {
    blocking(move || {
        // Checkpoints and the ledger's public key as HEAD holds them.
        let head = shared.snapshots.at(&shared.cfg.sot, None)?;
        let place = crate::ops::evidence::ledger_place(&shared.cfg.db);
        let checked = crate::ledger::verify_against_sot(&place, &head.sot.root)
            .map_err(|e| ApiError::Internal(format!("the ledger: {e}")))?;
        to_json(json!({
            "commit": head.commit,
            "checkpoints": checked.checkpoints,
            "signatures_checked": checked.signatures_checked,
            "verify": checked.report,
        }))
    })
    .await
}

#[derive(Deserialize)]
struct Window {
    minutes: Option<i64>,
}

async fn telemetry(State(shared): State<Arc<Shared>>, Query(w): Query<Window>) -> Answer {
    let minutes = match w.minutes {
        None => 60,
        Some(m) if (1..=60 * 24 * 31).contains(&m) => m,
        Some(m) => {
            return Err(ApiError::BadRequest(format!(
                "minutes={m}: from 1 to 44640 (31 days)"
            )));
        }
    };
    blocking(move || {
        let since_ms = crate::reflect::now_ms() - minutes * 60_000;
        let head = shared.snapshots.at(&shared.cfg.sot, None)?;
        // The newest minute of each node and each of its agents.
        let mut latest = Vec::new();
        for node in &head.sot.nodes {
            let rows = with_store(&shared, |s| s.rollups(&node.name, since_ms))?;
            let mut newest: std::collections::BTreeMap<String, crate::store::Rollup> =
                Default::default();
            for r in rows {
                match newest.get(&r.agent) {
                    Some(have) if have.minute_ms >= r.minute_ms => {}
                    _ => {
                        newest.insert(r.agent.clone(), r);
                    }
                }
            }
            latest.extend(newest.into_values());
        }
        to_json(json!({ "since_ms": since_ms, "minutes": minutes, "rollups": latest }))
    })
    .await
}
