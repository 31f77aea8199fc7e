//! The read-only HTTP API of `maestro serve`: the SoT at HEAD or at any
//! commit (nodes, groups, agents, models, policies, freeze windows, kill
//! switches), runs and their node results, rollouts with their gate
//! measurements and journal, the evidence ledger with its checkpoints and
//! a verification, and telemetry summaries — JSON whose shapes are the
//! OpenAPI description served at `/openapi.json`.
//!
//! Nothing here changes state: every route is a GET (anything else is
//! 405), the store is only read, the SoT is read from git objects. Every
//! route but `/openapi.json` wants `Authorization: Bearer TOKEN`, where the
//! token's SHA-256 is in `tokens.toml` at the SoT's HEAD, bound to a person
//! of `people.toml` ([`token`]); no token, no data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::store::Store;

mod openapi;
mod routes;
mod snapshot;
pub mod token;

pub use openapi::document as openapi_document;

/// What a request cannot get, as the status and `{"error": "…"}` it answers.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no token, or one `tokens.toml` does not hold.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such run, rollout or commit.
    #[error("{0}")]
    NotFound(String),
    /// 400: a query parameter that is not what the route takes.
    #[error("{0}")]
    BadRequest(String),
    /// 500: the store, the ledger or the SoT could not be read.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            (
                status,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"maestro\"")],
                body,
            )
                .into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// Where the API reads from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The SoT directory (a git repository, or inside one).
    pub sot: PathBuf,
    /// The run store; the ledger is the one beside it.
    pub db: PathBuf,
}

/// What every request shares.
pub(crate) struct Shared {
    cfg: Config,
    snapshots: snapshot::Snapshots,
    /// One connection (SQLite or PostgreSQL), read by one request at a
    /// time; each read sees what other processes committed before it.
    store: Mutex<Box<dyn Store>>,
}

/// Who a request's token names (for `/v1/whoami`).
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    token: String,
    person: String,
}

/// The API's routes over `cfg`. The SoT must be a git repository whose
/// HEAD loads: checked here, so `maestro serve` fails at start, not at
/// the first request.
pub fn router(cfg: Config) -> Result<Router, ApiError> {
    let store = crate::store::open_path(&cfg.db)
        .map_err(|e| ApiError::Internal(format!("the run store: {e}")))?;
    let shared = Arc::new(Shared {
        snapshots: snapshot::Snapshots::default(),
        store: Mutex::new(store),
        cfg,
    });
    shared.snapshots.at(&shared.cfg.sot, None)?;
    let v1 = routes::v1()
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .with_state(shared);
    Ok(Router::new()
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(v1))
}

/// Serve `app` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Whether `addr` can be reached from other machines (the face warns).
pub fn exposed(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// No data without a token of `tokens.toml` at HEAD.
async fn authenticate(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(presented) = presented.filter(|t| !t.is_empty()) else {
        return ApiError::Unauthorized(
            "this API wants `Authorization: Bearer TOKEN` (maestro token add NAME --person YOU)"
                .into(),
        )
        .into_response();
    };
    let head = {
        let shared = shared.clone();
        blocking(move || shared.snapshots.at(&shared.cfg.sot, None)).await
    };
    let head = match head {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    match token::find(head.sot.api_tokens.values(), &presented) {
        Some(t) => {
            req.extensions_mut().insert(Caller {
                token: t.name.clone(),
                person: t.person.clone(),
            });
            next.run(req).await
        }
        None => ApiError::Unauthorized(
            "the token is not one of tokens.toml at the SoT's HEAD (revoked, or never added)"
                .into(),
        )
        .into_response(),
    }
}

/// Run `f` (store, ledger and git reads block) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("a request's work ended abnormally: {e}")))?
}
