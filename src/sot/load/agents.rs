//! `agents.toml`: the agent registry (model, autonomy, owner, versions).

use std::collections::BTreeMap;

use super::AGENTS_FILE;
use super::Loader;
use super::refs::{Origin, RefKind, Reference};
use super::rules::*;
use super::tables::Named;
use crate::diag::{Code, suggest};
use crate::sot::model::*;
use crate::sot::schema::{At, Cx, Table, Value, entries_in_order, get};

impl Loader<'_> {
    pub(super) fn agents(&mut self, idx: usize, t: &Table<'_>, out: &mut BTreeMap<String, Agent>) {
        for Named {
            name,
            what,
            header,
            table: at,
        } in self.named_tables(idx, t, "agent", AGENTS_FILE)
        {
            let mut cx = cx!(self, idx);
            cx.check_keys(
                at,
                &[
                    "description",
                    "model",
                    "provider",
                    "autonomy",
                    "owner",
                    "profile",
                    "current",
                    "tags",
                    "versions",
                    "command",
                    "port",
                    "env",
                    "health",
                    "keep",
                    "rollout",
                    "gateway",
                ],
                &what,
            );
            let model = cx.string(at, "model", &what);
            if model.is_none() && get(at, "model").is_none() {
                cx.missing(header.clone(), "model", &what, "\"llama-3.1-8b-instruct\"");
            }
            let provider = cx.string(at, "provider", &what);
            if let Some(p) = &provider {
                check_name(&mut cx, &p.value, p.span.clone(), "provider");
            }
            let autonomy = match cx.string(at, "autonomy", &what) {
                Some(a) => match a.value.parse::<Autonomy>() {
                    Ok(l) => l,
                    Err(e) => {
                        let hint = suggest(
                            &a.value.to_uppercase(),
                            ["L0", "L1", "L2", "L3", "L4", "L5"],
                        )
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "L0 suggests only; L5 acts without a human".into());
                        cx.error_hint(Code::BadValue, a.span, e.to_string(), hint);
                        Autonomy(0)
                    }
                },
                None => {
                    if get(at, "autonomy").is_none() {
                        cx.missing(header.clone(), "autonomy", &what, "\"L1\"");
                    }
                    Autonomy(0)
                }
            };
            let tags = cx.string_map(at, "tags", &what);
            for (tk, tv) in &tags {
                check_tag_key(&mut cx, tk);
                check_tag_value(&mut cx, tk, tv);
            }
            let mut versions = Vec::new();
            if let Some(vt) = cx.table(at, "versions", &what) {
                for (vk, vv) in entries_in_order(vt.value) {
                    let version = vk.get_ref().to_string();
                    let vwhat = format!("version `{version}` of agent `{name}`");
                    check_version(&mut cx, &version, vk.span());
                    let Value::Table(vtab) = vv.get_ref() else {
                        cx.error(Code::Type, vv.span(), format!("{vwhat} must be a table"));
                        continue;
                    };
                    cx.check_keys(vtab, &["artifact", "sha256", "env"], &vwhat);
                    let venv = env_map(&mut cx, vtab, &vwhat);
                    let artifact = cx.string(vtab, "artifact", &vwhat);
                    if artifact.is_none() && get(vtab, "artifact").is_none() {
                        cx.missing(
                            vk.span(),
                            "artifact",
                            &vwhat,
                            "\"artifacts/agent-1.0.0.tar.gz\"",
                        );
                    }
                    let sha = cx.string(vtab, "sha256", &vwhat);
                    match &sha {
                        Some(s) => check_sha256(&mut cx, s),
                        None if get(vtab, "sha256").is_none() => {
                            cx.missing(vk.span(), "sha256", &vwhat, "\"<64 hex digits>\"")
                        }
                        None => {}
                    }
                    versions.push(AgentVersion {
                        version,
                        artifact: artifact.map(|a| a.value).unwrap_or_default(),
                        sha256: sha.map(|s| s.value).unwrap_or_default(),
                        env: venv,
                    });
                }
            }
            let command = cx.string(at, "command", &what);
            if let Some(c) = &command
                && c.value.trim().is_empty()
            {
                cx.error(
                    Code::BadValue,
                    c.span.clone(),
                    format!("`command` of {what} is empty"),
                );
            }
            let port = cx
                .integer(at, "port", &what)
                .and_then(|p| check_port(&mut cx, &p));
            let env = env_map(&mut cx, at, &what);
            let health = cx
                .table(at, "health", &what)
                .map(|h| health(&mut cx, h, port, &what))
                .unwrap_or_default();
            let keep = match cx.integer(at, "keep", &what) {
                Some(k) if (1..=100).contains(&k.value) => k.value as u32,
                Some(k) => {
                    cx.error_hint(
                        Code::BadValue,
                        k.span,
                        format!("`keep` of {what} must be between 1 and 100"),
                        "the number of versions kept on each node, the running one included",
                    );
                    3
                }
                None => 3,
            };
            let gateway = cx
                .table(at, "gateway", &what)
                .and_then(|g| gateway(&mut cx, g, port, &what));
            if name.ends_with(".preview") || name.ends_with("-preview") {
                cx.error_hint(
                    Code::BadValue,
                    header.clone(),
                    format!("the name of {what} ends with `preview`"),
                    "a node names the second instance of agent NAME `NAME.preview` (pidfile) and `NAME-preview` (unit); choose another name",
                );
            }
            let current = cx.string(at, "current", &what);
            let profile = cx.string(at, "profile", &what);
            let description = cx.string(at, "description", &what).map(|d| d.value);
            let owner = cx.string(at, "owner", &what).map(|d| d.value);
            if let Some(m) = &model {
                self.refer(RefKind::Model, idx, m);
            }
            if let Some(c) = &current {
                self.refs.push(Reference {
                    kind: RefKind::AgentVersion,
                    name: c.value.clone(),
                    origin: Origin {
                        file: idx,
                        span: c.span.clone(),
                    },
                    agent: Some(name.clone()),
                });
            }
            if let Some(p) = &profile {
                self.refer(RefKind::Profile, idx, p);
            }
            let rollout = cx!(self, idx).string(at, "rollout", &what);
            if let Some(r) = &rollout {
                self.refer(RefKind::Strategy, idx, r);
            }
            out.insert(
                name.clone(),
                Agent {
                    name,
                    description,
                    model: model.map(|m| m.value).unwrap_or_default(),
                    provider: provider.map(|p| p.value),
                    autonomy,
                    owner,
                    profile: profile.map(|p| p.value),
                    current: current.map(|c| c.value),
                    tags: tags.into_iter().map(|(k, v)| (k.value, v.value)).collect(),
                    versions,
                    command: command.map(|c| c.value),
                    port,
                    env,
                    health,
                    keep,
                    rollout: rollout.map(|r| r.value),
                    gateway,
                },
            );
        }
    }
}

/// `env = { KEY = "value" }`: names a shell accepts, string values.
fn env_map(cx: &mut Cx<'_>, t: &Table<'_>, what: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in cx.string_map(t, "env", what) {
        let ok = k.value.bytes().enumerate().all(|(i, b)| {
            b == b'_'
                || b.is_ascii_uppercase()
                || b.is_ascii_lowercase()
                || (i > 0 && b.is_ascii_digit())
        }) && !k.value.is_empty();
        if !ok {
            cx.error_hint(
                Code::BadValue,
                k.span,
                format!(
                    "`{}` in the env of {what} is not an environment variable name",
                    k.value
                ),
                "use letters, digits and `_`, not starting with a digit",
            );
        } else if k.value.starts_with("MAESTRO_") {
            cx.error_hint(
                Code::BadValue,
                k.span,
                format!(
                    "`{}` in the env of {what} is set by maestro itself",
                    k.value
                ),
                "MAESTRO_* variables name the agent, version, node, address and port",
            );
        } else {
            out.insert(k.value, v.value);
        }
    }
    out
}

/// `gateway = { port, preview_port }`: two ports in range, distinct from
/// each other and from the agent's own `port`, which it needs.
fn gateway(
    cx: &mut Cx<'_>,
    g: At<&Table<'_>>,
    port: Option<u16>,
    what: &str,
) -> Option<AgentGateway> {
    let gwhat = format!("the gateway of {what}");
    let t = g.value;
    cx.check_keys(t, &["port", "preview_port"], &gwhat);
    let read = |cx: &mut Cx<'_>, key: &str| {
        let v = cx.integer(t, key, &gwhat);
        if v.is_none() && get(t, key).is_none() {
            cx.missing(g.span.clone(), key, &gwhat, "18081");
        }
        v.and_then(|p| check_port(cx, &p).map(|n| (n, p.span)))
    };
    let listen = read(cx, "port");
    let preview = read(cx, "preview_port");
    let Some(primary) = port else {
        cx.error_hint(
            Code::BadValue,
            g.span,
            format!("{what} has a gateway but no `port`"),
            "the gateway forwards to the agent's `port` (the primary instance); set e.g. `port = 8081`",
        );
        return None;
    };
    let mut ok = listen.is_some() && preview.is_some();
    for (p, key) in [(&listen, "port"), (&preview, "preview_port")] {
        if let Some((p, span)) = p
            && *p == primary
        {
            cx.error_hint(
                Code::BadPort,
                span.clone(),
                format!("`{key}` of {gwhat} is {p}, the agent's own `port`"),
                "the gateway, the primary and the preview instance each need their own port",
            );
            ok = false;
        }
    }
    let (Some((listen, _)), Some((preview, _))) = (listen, preview) else {
        return None;
    };
    if ok && listen == preview {
        cx.error_hint(
            Code::BadPort,
            g.span,
            format!("`port` and `preview_port` of {gwhat} are both {listen}"),
            "the gateway listens on `port`; the preview instance on `preview_port`",
        );
        ok = false;
    }
    ok.then_some(AgentGateway {
        port: listen,
        preview_port: preview,
    })
}

/// `[agent.NAME.health]`: `http = "/healthz"` or `command = "..."`, with
/// `timeout`, `interval`, `retries` and `min_healthy`.
fn health(cx: &mut Cx<'_>, h: At<&Table<'_>>, port: Option<u16>, what: &str) -> HealthCheck {
    let hwhat = format!("the health check of {what}");
    let t = h.value;
    cx.check_keys(
        t,
        &[
            "http",
            "command",
            "timeout",
            "interval",
            "retries",
            "min_healthy",
        ],
        &hwhat,
    );
    let mut check = HealthCheck::default();
    let http = cx.string(t, "http", &hwhat);
    let command = cx.string(t, "command", &hwhat);
    check.probe = match (http, command) {
        (Some(_), Some(c)) => {
            cx.error(
                Code::BadValue,
                c.span,
                format!("{hwhat} has both `http` and `command`; choose one"),
            );
            HealthProbe::Process
        }
        (Some(u), None) => {
            if !u.value.starts_with('/')
                || u.value
                    .bytes()
                    .any(|b| b <= b' ' || b == b'\'' || b == 0x7f)
            {
                cx.error_hint(
                    Code::BadValue,
                    u.span.clone(),
                    format!("`http` of {hwhat} must be a path such as \"/healthz\""),
                    "it is fetched on the node's loopback at the agent's port",
                );
            } else if port.is_none() {
                cx.error_hint(
                    Code::BadValue,
                    u.span.clone(),
                    format!("{hwhat} is over HTTP but {what} has no `port`"),
                    "set `port = 8080` (the port it listens on)",
                );
            }
            HealthProbe::Http { path: u.value }
        }
        (None, Some(c)) => HealthProbe::Command { command: c.value },
        (None, None) => HealthProbe::Process,
    };
    let ms = |cx: &mut Cx<'_>, key: &str, default: u64| -> u64 {
        match cx.string(t, key, &hwhat) {
            Some(d) => match parse_duration(&d.value) {
                Some(v) if v.as_millis() <= 86_400_000 => v.as_millis() as u64,
                _ => {
                    cx.error_hint(
                        Code::BadValue,
                        d.span,
                        format!("`{key}` of {hwhat} is not a duration: `{}`", d.value),
                        "write numbers and units: \"500ms\", \"2s\", \"5m\", \"1h30m\"",
                    );
                    default
                }
            },
            None => default,
        }
    };
    let defaults = HealthCheck::default();
    check.timeout_ms = ms(cx, "timeout", defaults.timeout_ms).max(1);
    check.interval_ms = ms(cx, "interval", defaults.interval_ms);
    check.min_healthy_ms = ms(cx, "min_healthy", defaults.min_healthy_ms);
    if let Some(r) = cx.integer(t, "retries", &hwhat) {
        if (1..=1000).contains(&r.value) {
            check.retries = r.value as u32;
        } else {
            cx.error(
                Code::BadValue,
                r.span,
                format!("`retries` of {hwhat} must be between 1 and 1000"),
            );
        }
    }
    check
}
