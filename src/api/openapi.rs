//! The OpenAPI 3.1 description of the API: every route, its parameters and
//! the shape of its answers (`/openapi.json`). The API's tests check every
//! answer against it, so it cannot drift from what the routes send.

use axum::Json;
use serde_json::{Value, json};

pub(super) async fn serve() -> Json<Value> {
    Json(document())
}

fn string() -> Value {
    json!({"type": "string"})
}
fn int() -> Value {
    json!({"type": "integer"})
}
fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}
fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}
fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
/// An object with these properties, all required.
fn object(props: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    let properties: serde_json::Map<String, Value> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({"type": "object", "required": required, "properties": properties})
}

fn get(summary: &str, params: Value, answer: &str) -> Value {
    json!({"get": {
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": reference(answer)}}},
            "400": {"description": "a bad query parameter", "content": {"application/json": {"schema": reference("Error")}}},
            "401": {"description": "no token, or not one of tokens.toml at HEAD", "content": {"application/json": {"schema": reference("Error")}}},
            "404": {"description": "no such thing", "content": {"application/json": {"schema": reference("Error")}}}
        }
    }})
}

fn query(name: &str, schema: Value, what: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": what})
}

fn path_id(what: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "schema": string(), "description": what})
}

/// The whole description.
pub fn document() -> Value {
    let limit = query(
        "limit",
        int(),
        "how many, newest last for the ledger (1-1000, default 50)",
    );
    let schemas = json!({
        "Error": object(&[("error", string())]),
        "Whoami": object(&[("token", string()), ("person", string())]),
        "Node": object(&[
            ("name", string()), ("address", string()), ("port", int()), ("user", string()),
            ("groups", array_of(string())), ("tags", json!({"type": "object"})),
            ("vars", json!({"type": "object"})), ("profile", nullable("string")), ("file", string()),
        ]),
        "Group": object(&[
            ("name", string()), ("description", nullable("string")),
            ("members", array_of(string())), ("vars", json!({"type": "object"})),
        ]),
        "Agent": object(&[
            ("name", string()), ("description", nullable("string")), ("model", string()),
            ("autonomy", string()), ("owner", nullable("string")), ("current", nullable("string")),
            ("tags", json!({"type": "object"})), ("versions", array_of(json!({"type": "object"}))),
        ]),
        "Model": object(&[
            ("name", string()), ("provider", string()), ("description", nullable("string")),
            ("jurisdictions", array_of(string())),
        ]),
        "Policy": object(&[
            ("id", string()), ("effect", string()), ("file", string()), ("line", int()),
            ("reason", nullable("string")),
        ]),
        "FreezeWindow": object(&[
            ("name", string()), ("reason", string()), ("kind", string()),
            ("agents", array_of(string())), ("targets", nullable("string")), ("by", nullable("string")),
        ]),
        "KillSwitch": object(&[
            ("agent", string()), ("by", string()), ("at", string()), ("reason", string()),
            ("limit", nullable("string")),
        ]),
        "Sot": object(&[
            ("commit", string()),
            ("nodes", array_of(reference("Node"))),
            ("groups", array_of(reference("Group"))),
            ("agents", array_of(reference("Agent"))),
            ("models", array_of(reference("Model"))),
            ("policies", array_of(reference("Policy"))),
            ("freeze", array_of(reference("FreezeWindow"))),
            ("killswitch", array_of(reference("KillSwitch"))),
        ]),
        "Run": object(&[
            ("id", string()), ("kind", string()), ("command", string()), ("target", string()),
            ("sot", string()), ("sot_commit", nullable("string")), ("forks", int()),
            ("node_count", int()), ("nodes", array_of(string())), ("state", string()),
            ("started_ms", int()), ("finished_ms", nullable("integer")), ("ok", int()),
            ("failed", int()), ("unreachable", int()), ("timed_out", int()), ("cancelled", int()),
        ]),
        "Runs": object(&[("runs", array_of(reference("Run")))]),
        "Output": object(&[("bytes", string()), ("total", int())]),
        "NodeResult": object(&[
            ("node", string()), ("status", string()), ("exit_code", nullable("integer")),
            ("signal", nullable("string")), ("stdout", reference("Output")),
            ("stderr", reference("Output")), ("duration_ms", int()), ("error", nullable("string")),
        ]),
        "Note": object(&[
            ("at_ms", int()), ("node", nullable("string")), ("kind", string()), ("message", string()),
        ]),
        "RunDetail": object(&[
            ("run", reference("Run")),
            ("results", array_of(reference("NodeResult"))),
            ("notes", array_of(reference("Note"))),
        ]),
        "Rollout": object(&[
            ("id", string()), ("agent", string()), ("from_version", nullable("string")),
            ("to_version", string()), ("strategy", string()), ("target", string()),
            ("nodes", array_of(string())), ("attempt", int()), ("phase", string()),
            ("step", int()), ("weight", int()), ("status", string()), ("reason", nullable("string")),
            ("requested", nullable("string")), ("controller", nullable("string")),
            ("lease_ms", nullable("integer")), ("created_by", string()), ("created_ms", int()),
            ("updated_ms", int()),
        ]),
        "Rollouts": object(&[("rollouts", array_of(reference("Rollout")))]),
        "Measurement": object(&[
            ("rollout_id", string()), ("attempt", int()), ("step", int()), ("gate", string()),
            ("seq", int()), ("at_ms", int()), ("version", string()), ("outcome", string()),
            ("metrics", json!({"type": "object"})), ("message", string()),
        ]),
        "JournalEntry": object(&[
            ("seq", int()), ("at_ms", int()), ("attempt", int()), ("step", nullable("integer")),
            ("entry", string()), ("action", string()), ("node", nullable("string")),
            ("version", nullable("string")), ("ok", nullable("boolean")), ("detail", string()),
        ]),
        "RolloutDetail": object(&[
            ("rollout", reference("Rollout")),
            ("measurements", array_of(reference("Measurement"))),
            ("journal", array_of(reference("JournalEntry"))),
        ]),
        "LedgerEntry": object(&[
            ("seq", int()), ("time", string()), ("prev", string()),
            ("body", json!({"type": "object"})), ("hash", string()),
        ]),
        "Ledger": object(&[("total", int()), ("entries", array_of(reference("LedgerEntry")))]),
        "Checkpoint": object(&[
            ("size", int()), ("head", string()), ("time", string()), ("key", string()),
            ("signature", string()),
        ]),
        "Verification": object(&[
            ("entries", int()), ("verified", int()), ("head", string()),
            ("checkpoints_checked", int()), ("problem", json!({"type": ["object", "null"]})),
        ]),
        "Checkpoints": object(&[
            ("commit", string()),
            ("checkpoints", array_of(reference("Checkpoint"))),
            ("signatures_checked", json!({"type": "boolean"})),
            ("verify", reference("Verification")),
        ]),
        "Rollup": object(&[
            ("node", string()), ("agent", string()), ("minute_ms", int()), ("samples", int()),
            ("cpu_pct_avg", nullable("number")), ("mem_used_pct_avg", nullable("number")),
            ("load1_avg", nullable("number")), ("root_fs_used_pct", nullable("number")),
            ("requests_per_s_avg", nullable("number")), ("errors_per_s_avg", nullable("number")),
            ("p95_s_max", nullable("number")),
        ]),
        "Telemetry": object(&[
            ("since_ms", int()), ("minutes", int()), ("rollups", array_of(reference("Rollup"))),
        ]),
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "maestro",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only: the SoT at HEAD or at a commit, runs, rollouts, the evidence ledger and telemetry. Every route but this one needs a bearer token of the SoT's tokens.toml; every method but GET is refused (405)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        },
        "paths": {
            "/v1/whoami": get("the token and the person it acts as", json!([]), "Whoami"),
            "/v1/sot": get(
                "the SoT at HEAD, or at ?commit=REV",
                json!([query("commit", string(), "a commit, tag or branch of the SoT's repository (default HEAD)")]),
                "Sot"
            ),
            "/v1/runs": get("recorded runs, newest first", json!([limit]), "Runs"),
            "/v1/runs/{id}": get(
                "one run with every node's result and the run's notes",
                json!([path_id("a run id, a unique prefix, or last")]),
                "RunDetail"
            ),
            "/v1/rollouts": get("rollouts, newest first", json!([limit]), "Rollouts"),
            "/v1/rollouts/{id}": get(
                "one rollout with its gate measurements and journal",
                json!([path_id("a rollout id, a unique prefix, or last")]),
                "RolloutDetail"
            ),
            "/v1/ledger": get(
                "the evidence ledger's newest entries",
                json!([query("run", string(), "only this run's entries"), limit]),
                "Ledger"
            ),
            "/v1/ledger/checkpoints": get(
                "the signed checkpoints committed at HEAD and a verification of the chain against them",
                json!([]),
                "Checkpoints"
            ),
            "/v1/telemetry": get(
                "the newest minute of each node and agent within a window",
                json!([query("minutes", int(), "the window (1-44640, default 60)")]),
                "Telemetry"
            )
        }
    })
}
