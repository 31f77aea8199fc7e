//! One agent's nginx config: its upstreams (the primary and the preview
//! instance) and its server on the node's loopback at the gateway's port,
//! rendered from typed values only. The first line records the traffic it
//! applies, which is what a status reads back.

use std::fmt::Write as _;

use super::Traffic;

/// What the config of one agent on one node is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig<'a> {
    /// A SoT agent name (`[a-z0-9._-]`, checked by the loader), so it is a
    /// valid nginx word as it is.
    pub agent: &'a str,
    /// The node's loopback address, already checked to be an IP address.
    pub host: std::net::IpAddr,
    pub listen_port: u16,
    pub primary_port: u16,
    pub preview_port: u16,
    pub traffic: Traffic,
}

/// The first line of every agent's file: `# maestro traffic=split:30 ...`.
pub const HEADER: &str = "# maestro traffic=";

/// Connections kept open to each instance per worker: switching traffic
/// or reloading never waits for a TCP handshake to a busy instance.
const KEEPALIVE: u32 = 32;

fn addr(host: std::net::IpAddr, port: u16) -> String {
    match host {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// nginx variable names take letters, digits and `_`: the agent name in hex.
fn var_name(agent: &str) -> String {
    let mut s = String::from("maestro_mirror_");
    for b in agent.bytes() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The proxy settings every location shares: HTTP/1.1 with keep-alive to
/// the instance, and a request that could not reach an instance (refused,
/// reset, timed out before an answer, or a 502) tried again on another
/// attempt instead of failing the client. Non-idempotent requests are not
/// retried (nginx's default).
fn proxy_settings(out: &mut String, indent: &str) {
    for line in [
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_connect_timeout 2s;",
        "proxy_next_upstream error timeout http_502;",
        "proxy_next_upstream_tries 3;",
    ] {
        let _ = writeln!(out, "{indent}{line}");
    }
}

impl AgentConfig<'_> {
    /// The upstream a client's request goes to.
    fn live(&self) -> &'static str {
        match self.traffic {
            Traffic::Primary | Traffic::Mirror { .. } | Traffic::Split { preview_percent: 0 } => {
                "primary"
            }
            Traffic::Preview
            | Traffic::Split {
                preview_percent: 100,
            } => "preview",
            Traffic::Split { .. } => "split",
        }
    }

    pub fn render(&self) -> String {
        let name = self.agent;
        let primary = addr(self.host, self.primary_port);
        let preview = addr(self.host, self.preview_port);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{HEADER}{} agent={name} listen={} primary={} preview={}",
            self.traffic,
            addr(self.host, self.listen_port),
            self.primary_port,
            self.preview_port
        );
        let _ = writeln!(
            out,
            "# Written by maestro (`maestro gateway set {name}`); edits are replaced."
        );
        // max_fails=0: an instance is never marked down for later requests;
        // each request still tries another server after a failed attempt.
        for (slot, a) in [("primary", &primary), ("preview", &preview)] {
            let _ = writeln!(
                out,
                "upstream maestro.{name}.{slot} {{\n    server {a} max_fails=0;\n    keepalive {KEEPALIVE};\n}}"
            );
        }
        if let Traffic::Split { preview_percent } = self.traffic
            && (1..100).contains(&preview_percent)
        {
            let _ = writeln!(
                out,
                "upstream maestro.{name}.split {{\n    server {primary} weight={} max_fails=0;\n    server {preview} weight={preview_percent} max_fails=0;\n    keepalive {KEEPALIVE};\n}}",
                100 - preview_percent
            );
        }
        let mirror = match self.traffic {
            Traffic::Mirror { percent } if percent > 0 => Some(percent),
            _ => None,
        };
        let var = var_name(name);
        if let Some(p) = mirror
            && p < 100
        {
            // A random share of requests: $request_id is 128 random bits.
            let _ = writeln!(
                out,
                "split_clients \"${{request_id}}\" ${var} {{\n    {p}% 1;\n    * \"\";\n}}"
            );
        }
        let _ = writeln!(
            out,
            "server {{\n    listen {};\n    location / {{",
            addr(self.host, self.listen_port)
        );
        if mirror.is_some() {
            let _ = writeln!(out, "        mirror /.maestro-mirror;");
            let _ = writeln!(out, "        mirror_request_body on;");
        }
        let _ = writeln!(
            out,
            "        proxy_pass http://maestro.{name}.{};",
            self.live()
        );
        proxy_settings(&mut out, "        ");
        let _ = writeln!(out, "    }}");
        if let Some(p) = mirror {
            // The copy goes to the preview instance; its answer is
            // discarded by nginx, the client only ever sees the primary's.
            let _ = writeln!(out, "    location = /.maestro-mirror {{\n        internal;");
            if p < 100 {
                let _ = writeln!(
                    out,
                    "        if (${var} = \"\") {{\n            return 204;\n        }}"
                );
            }
            let _ = writeln!(
                out,
                "        proxy_pass http://maestro.{name}.preview$request_uri;\n        proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        proxy_set_header Host $host;\n        proxy_connect_timeout 1s;\n        proxy_read_timeout 10s;\n        proxy_next_upstream off;\n    }}"
            );
        }
        let _ = writeln!(out, "}}");
        out
    }
}

/// The traffic an agent's file says it applies (its first line).
pub fn read_header(first_line: &str) -> Option<Traffic> {
    let rest = first_line.strip_prefix(HEADER)?;
    rest.split(' ').next()?.parse().ok()
}
