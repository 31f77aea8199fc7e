//! `maestro serve` under test: started on a free loopback port, stopped by
//! PID when dropped; requests with or without a token; and a check of an
//! answer against the schemas of the API's own `/openapi.json`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Served {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
}

impl Served {
    /// Start `cmd` (a `maestro … serve` command) with `--listen 127.0.0.1:0`
    /// and read the address it prints.
    pub fn start(mut cmd: Command) -> Served {
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("maestro serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Served { child, url, agent }
    }

    /// `method path` with `Authorization: Bearer token` when given: the
    /// status and the body as JSON (`Null` when it is not JSON).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    other => panic!("no {other} here"),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send("{}")
            }
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `value` departs from `schema` (JSON Schema as OpenAPI 3.1 uses it:
/// `$ref` into the document, `type` (one or several), `required`,
/// `properties`, `items`), or `Ok`.
pub fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unknown $ref {r}"))?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: $ref {r} names no schema"));
        }
        return conforms(doc, target, value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Err(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(obj) = value.as_object() {
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                return Err(format!("{at}: `{key}` is missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (key, sub) in props {
                if let Some(v) = obj.get(key) {
                    conforms(doc, sub, v, &format!("{at}.{key}"))?;
                }
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            conforms(doc, items, v, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The schema `doc` documents for a 200 answer of GET `route` (a path as
/// the description spells it, `/v1/runs/{id}`).
pub fn answer_schema<'d>(doc: &'d Value, route: &str) -> &'d Value {
    let s =
        &doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(
        !s.is_null(),
        "/openapi.json documents no 200 answer for GET {route}"
    );
    s
}
