//! The controller's reader of a sampler's output (see `sampler.sh` for the
//! records) and of agents' Prometheus text.
//!
//! Everything here comes from a node, so nothing is trusted: a line that
//! does not parse is counted and skipped, never fatal; memory is bounded
//! whatever arrives (a line outside a metrics body is cut at
//! [`MAX_LINE`], a body at [`MAX_BODY`]); negative and NaN counters are
//! refused. Feeding 10 MB of junk costs one pass over it and yields nothing.

use std::collections::BTreeMap;

use super::sample::{
    AgentMetrics, AgentSample, CpuTimes, Filesystem, Gpu, Memory, NetCounters, NodeSample, Process,
    Scrape,
};

/// Longest record line kept; the rest of a longer one is skipped.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest agent metrics body accepted (the sampler sends at most one byte more).
pub const MAX_BODY: usize = 1 << 20;

/// The sampler's first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub clock_ticks: u64,
    pub page_size: u64,
    /// How it fetches agents' metrics: curl, wget, python3 or none.
    pub fetcher: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Header(Header),
    Sample(Box<NodeSample>),
}

/// An agent's metrics body being read.
struct Body {
    agent: usize,
    bytes: Vec<u8>,
    too_large: bool,
}

/// Incremental parser of one sampler's stdout.
pub struct StreamParser {
    nonce: String,
    pending: Vec<u8>,
    /// The current line is longer than allowed: skip to its end.
    skipping: bool,
    header: Header,
    current: Option<NodeSample>,
    body: Option<Body>,
    /// Lines seen outside any sample (before the header, between samples).
    pub stray_lines: u64,
}

impl StreamParser {
    pub fn new(nonce: &str) -> StreamParser {
        StreamParser {
            nonce: nonce.to_string(),
            pending: Vec::new(),
            skipping: false,
            header: Header {
                clock_ticks: 100,
                page_size: 4096,
                fetcher: String::new(),
            },
            current: None,
            body: None,
            stray_lines: 0,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Parse `data`, appending every complete header and sample to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Parsed>) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (chunk, rest, complete) = match newline {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if !self.skipping {
                let room = self.line_limit().saturating_sub(self.pending.len());
                if chunk.len() > room {
                    self.pending.extend_from_slice(&chunk[..room]);
                    self.skipping = true;
                    self.overlong();
                } else {
                    self.pending.extend_from_slice(chunk);
                }
            }
            if complete {
                let line = std::mem::take(&mut self.pending);
                let skipped = std::mem::replace(&mut self.skipping, false);
                if !skipped {
                    self.line(&line, out);
                }
                self.pending = line;
                self.pending.clear();
                if self.pending.capacity() > 2 * MAX_LINE {
                    self.pending = Vec::new();
                }
            }
        }
    }

    fn line_limit(&self) -> usize {
        // Inside a body a line may be as long as the body's remaining room
        // (the end marker is short and never cut by this).
        match &self.body {
            Some(b) if !b.too_large => (MAX_BODY + 1).saturating_sub(b.bytes.len()).max(256),
            _ => MAX_LINE,
        }
    }

    fn overlong(&mut self) {
        match (&mut self.body, &mut self.current) {
            (Some(b), _) => b.too_large = true,
            (None, Some(s)) => s.rejected_lines += 1,
            (None, None) => self.stray_lines += 1,
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Parsed>) {
        if self.body.is_some() {
            self.body_line(line);
            return;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            self.reject();
            return;
        };
        let mut fields = text.split_ascii_whitespace();
        let kind = fields.next().unwrap_or("");
        let fields: Vec<&str> = fields.collect();
        match kind {
            "H" => match fields.as_slice() {
                ["1", tck, page, fetcher] => {
                    self.header.clock_ticks = tck.parse().unwrap_or(100).max(1);
                    self.header.page_size = page.parse().unwrap_or(4096);
                    self.header.fetcher = (*fetcher).to_string();
                    out.push(Parsed::Header(self.header.clone()));
                }
                _ => self.stray_lines += 1,
            },
            "S" => {
                if self.current.is_some() {
                    // A sample that never ended: dropped, not half-used.
                    self.stray_lines += 1;
                }
                let mut s = NodeSample {
                    seq: fields.first().and_then(|f| f.parse().ok()).unwrap_or(0),
                    uptime: fields
                        .get(1)
                        .and_then(|f| f.parse::<f64>().ok())
                        .filter(|u| u.is_finite() && *u >= 0.0),
                    ..NodeSample::default()
                };
                if fields.is_empty() {
                    s.rejected_lines += 1;
                }
                self.current = Some(s);
            }
            "E" => match self.current.take() {
                Some(s) if fields.first().and_then(|f| f.parse().ok()) == Some(s.seq) => {
                    out.push(Parsed::Sample(Box::new(s)));
                }
                _ => self.stray_lines += 1,
            },
            "B" => {
                let agent = self.current.as_ref().and_then(|s| {
                    let name = fields.first()?;
                    s.agents.iter().rposition(|a| a.name == *name)
                });
                match agent {
                    Some(agent) => {
                        self.body = Some(Body {
                            agent,
                            bytes: Vec::new(),
                            too_large: false,
                        })
                    }
                    None => self.reject(),
                }
            }
            _ => {
                let Some(s) = self.current.as_mut() else {
                    self.stray_lines += 1;
                    return;
                };
                if record(s, kind, &fields, &self.header).is_none() {
                    s.rejected_lines += 1;
                }
            }
        }
    }

    fn reject(&mut self) {
        match self.current.as_mut() {
            Some(s) => s.rejected_lines += 1,
            None => self.stray_lines += 1,
        }
    }

    fn body_line(&mut self, line: &[u8]) {
        let end = line
            .strip_prefix(self.nonce.as_bytes())
            .and_then(|rest| rest.strip_prefix(b" "))
            .and_then(|rc| std::str::from_utf8(rc).ok())
            .and_then(|rc| rc.trim().parse::<i32>().ok());
        let body = self.body.as_mut().expect("in a body");
        let Some(rc) = end else {
            if !body.too_large {
                body.bytes.extend_from_slice(line);
                body.bytes.push(b'\n');
                if body.bytes.len() > MAX_BODY + 1 {
                    body.too_large = true;
                }
            }
            return;
        };
        let body = self.body.take().expect("in a body");
        let Some(agent) = self
            .current
            .as_mut()
            .and_then(|s| s.agents.get_mut(body.agent))
        else {
            return;
        };
        agent.scrape = finish_scrape(&body, rc);
    }
}

fn finish_scrape(body: &Body, rc: i32) -> Scrape {
    if body.too_large || body.bytes.len() > MAX_BODY + 1 {
        return Scrape::Failed {
            error: format!("the metrics endpoint sent more than {} MiB", MAX_BODY >> 20),
        };
    }
    // The sampler puts a newline before the end marker.
    let text = body.bytes.strip_suffix(b"\n\n").unwrap_or(&body.bytes);
    if text.iter().all(|b| b.is_ascii_whitespace()) {
        return Scrape::Failed {
            error: if rc == 0 {
                "the metrics endpoint answered nothing".into()
            } else {
                format!("the metrics endpoint did not answer (fetch exit {rc})")
            },
        };
    }
    let text = String::from_utf8_lossy(text);
    let metrics = parse_exposition(&text);
    let known = metrics.requests.is_some()
        || metrics.errors.is_some()
        || metrics.starts.is_some()
        || !metrics.buckets.is_empty();
    if !known && metrics.rejected_lines > 0 {
        return Scrape::Failed {
            error: format!(
                "the metrics endpoint answered something that is not Prometheus text ({} bad lines)",
                metrics.rejected_lines
            ),
        };
    }
    Scrape::Ok { metrics }
}

/// One record inside a sample; `None` when it does not parse.
fn record(s: &mut NodeSample, kind: &str, f: &[&str], header: &Header) -> Option<()> {
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match kind {
        "C" => {
            s.cpu = Some(CpuTimes {
                user: n(0)?,
                nice: n(1)?,
                system: n(2)?,
                idle: n(3)?,
                iowait: n(4).unwrap_or(0),
                irq: n(5).unwrap_or(0),
                softirq: n(6).unwrap_or(0),
                steal: n(7).unwrap_or(0),
            });
        }
        "L" => {
            let l = |i: usize| {
                f.get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v >= 0.0)
            };
            s.load = Some([l(0)?, l(1)?, l(2)?]);
        }
        "M" => {
            let total_kb = n(0).filter(|&t| t > 0)?;
            let available_kb = n(1).filter(|&a| a <= total_kb);
            s.memory = Some(Memory {
                total_kb,
                available_kb,
            });
        }
        "F" => {
            let total_kb = n(0).filter(|&t| t > 0)?;
            s.root_fs = Some(Filesystem {
                total_kb,
                used_kb: n(1)?.min(total_kb),
            });
        }
        "N" => {
            let interface = clean_name(f.first()?)?;
            s.net.push(NetCounters {
                interface,
                rx_bytes: n(1)?,
                tx_bytes: n(2)?,
            });
        }
        "G" => {
            let csv = f.join(" ");
            let mut cols = csv.split(',').map(str::trim);
            let index = cols.next()?.parse().ok()?;
            let mut v = || cols.next().and_then(gpu_value);
            s.gpus.push(Gpu {
                index,
                utilization_pct: v(),
                memory_used_mib: v(),
                memory_total_mib: v(),
                temperature_c: v(),
                power_w: v(),
            });
        }
        "A" => {
            let name = clean_name(f.first()?)?;
            let text = |i: usize| f.get(i).filter(|v| **v != "-").and_then(|v| clean_name(v));
            let pid = f.get(4).and_then(|p| p.parse::<u32>().ok());
            let process = match (pid, f.get(5).copied()) {
                (None, _) => Process::NoPidfile,
                (Some(pid), Some("gone")) => Process::Gone { pid },
                (Some(pid), Some("Z")) => Process::Zombie { pid },
                (Some(pid), Some(state)) if state.len() == 1 => Process::Running {
                    pid,
                    letter: state.chars().next()?,
                    cpu_ticks: n(6)?.checked_add(n(7)?)?,
                    rss_bytes: n(8)?.saturating_mul(header.page_size),
                },
                _ => return None,
            };
            s.agents.push(AgentSample {
                name,
                enabled: match f.get(1).copied() {
                    Some("1") => Some(true),
                    Some("0") => Some(false),
                    _ => None,
                },
                version: text(2),
                digest: text(3),
                process,
                scrape: Scrape::NotScraped,
            });
        }
        _ => return None,
    }
    Some(())
}

/// A name from a node (interface, agent, version): printable ASCII of a
/// sane length only, so it can go into a terminal, a label and JSON.
fn clean_name(s: &str) -> Option<String> {
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+:@".contains(&b)))
    .then(|| s.to_string())
}

/// nvidia-smi writes `[N/A]`, `[Not Supported]`, `[Unknown Error]` for what it cannot read.
fn gpu_value(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The agent metrics maestro reads from Prometheus text exposition; other
/// series are ignored, malformed lines and refused values counted.
pub fn parse_exposition(text: &str) -> AgentMetrics {
    let mut m = AgentMetrics::default();
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, le, value)) = exposition_line(line) else {
            m.rejected_lines += 1;
            continue;
        };
        // Counters and bucket counts are never negative or NaN.
        if value.is_nan() || value < 0.0 {
            m.rejected_lines += 1;
            continue;
        }
        let add = |slot: &mut Option<f64>| *slot = Some(slot.unwrap_or(0.0) + value);
        match name {
            "agent_requests_total" => add(&mut m.requests),
            "agent_errors_total" => add(&mut m.errors),
            "agent_starts_total" => add(&mut m.starts),
            "agent_request_duration_seconds_sum" => add(&mut m.duration_sum),
            "agent_request_duration_seconds_count" => add(&mut m.duration_count),
            "agent_request_duration_seconds_bucket" => match le {
                Some(le) if !le.is_nan() => {
                    let slot = buckets.entry(order_key(le)).or_insert((le, 0.0));
                    slot.1 += value;
                }
                _ => m.rejected_lines += 1,
            },
            _ => {}
        }
    }
    m.buckets = buckets.into_values().collect();
    m
}

/// A key that sorts f64 bucket bounds (none NaN) in numeric order.
fn order_key(le: f64) -> u64 {
    let bits = le.to_bits();
    if le.is_sign_negative() {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// `name{labels} value [timestamp]`: the name, the `le` label if any, the value.
fn exposition_line(line: &str) -> Option<(&str, Option<f64>, f64)> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut le = None;
    if let Some(labels) = rest.strip_prefix('{') {
        let (pairs, after) = split_labels(labels)?;
        for (k, v) in pairs {
            if k == "le" {
                le = Some(prom_float(&v)?);
            }
        }
        rest = after;
    }
    let mut parts = rest.split_ascii_whitespace();
    let value = prom_float(parts.next()?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<f64>().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((name, le, value))
}

/// `k="v",k2="v2"}` → the pairs and what follows the `}`.
fn split_labels(s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut pairs = Vec::new();
    let mut rest = s.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Some((pairs, after));
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        let mut chars = rest[eq + 1..].trim_start().char_indices();
        let start = rest.len() - rest[eq + 1..].trim_start().len();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut escaped = false;
        let mut end = None;
        for (i, c) in chars {
            if escaped {
                value.push(if c == 'n' { '\n' } else { c });
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = Some(start + i + 1);
                break;
            } else {
                value.push(c);
            }
        }
        pairs.push((key, value));
        rest = rest[end?..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

fn prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        s => s.parse().ok(),
    }
}
