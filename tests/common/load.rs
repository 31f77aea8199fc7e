//! A load generator on loopback: threads doing HTTP/1.1 GETs against one or
//! more addresses (over keep-alive connections, or a fresh connection per
//! request), counting the answers by status and by the agent's version
//! (the example agent's `X-Agent-Version` header, else the `"version"` of
//! its JSON body) and every failure with a sample of each kind.
//!
//! A failure is what a client would notice: a refused or reset connection,
//! a timeout, a malformed answer, or a status that is not 2xx. One thing
//! is not: a keep-alive connection the server closed while it was idle
//! (nginx's old workers close theirs on a graceful reload) is retried once
//! on a new connection when nothing of the answer had arrived, as every
//! HTTP client does for an idempotent request (RFC 9112, 9.3.1). Those are
//! counted apart (`retried_idle`), never hidden among the answers.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How each request gets its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// One connection per thread and address, reused while the server keeps it.
    KeepAlive,
    /// A new connection for every request (`Connection: close`).
    Fresh,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    pub connection: Connection,
    pub path: String,
    /// Connect, read and write timeout of each request.
    pub timeout: Duration,
    /// Pause between two requests of a thread (none: as fast as answered).
    pub pause: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            concurrency: 4,
            connection: Connection::KeepAlive,
            path: "/work".into(),
            timeout: Duration::from_secs(5),
            pause: None,
        }
    }
}

/// Kinds of failure a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The connection could not be made (refused, unreachable, timed out).
    Connect,
    /// The connection broke before the whole answer arrived.
    Reset,
    /// No (complete) answer within the timeout.
    Timeout,
    /// An answer that is not HTTP/1.x.
    BadResponse,
    /// A status that is not 2xx.
    Status(u16),
}

/// What the load saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests that got an answer or failed (retries not counted twice).
    pub requests: u64,
    /// Complete answers by status.
    pub by_status: BTreeMap<u16, u64>,
    /// 2xx answers by the agent version that gave them.
    pub by_version: BTreeMap<String, u64>,
    /// Failures by kind: how many, and the first one's description.
    pub failures: BTreeMap<Failure, (u64, String)>,
    /// Requests retried on a new connection because the server had closed
    /// the idle keep-alive connection before answering.
    pub retried_idle: u64,
    pub elapsed: Duration,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.failures.values().map(|(n, _)| n).sum()
    }

    pub fn ok(&self) -> u64 {
        self.by_version.values().sum()
    }

    /// 2xx answers given by `version`.
    pub fn answered_by(&self, version: &str) -> u64 {
        self.by_version.get(version).copied().unwrap_or(0)
    }

    /// What happened after `earlier` (a snapshot of the same load).
    pub fn since(&self, earlier: &Report) -> Report {
        let sub = |a: &BTreeMap<u16, u64>, b: &BTreeMap<u16, u64>| {
            a.iter()
                .map(|(k, v)| (*k, v - b.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Report {
            requests: self.requests - earlier.requests,
            by_status: sub(&self.by_status, &earlier.by_status),
            by_version: self
                .by_version
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - earlier.by_version.get(k).copied().unwrap_or(0),
                    )
                })
                .filter(|(_, v)| *v > 0)
                .collect(),
            failures: self
                .failures
                .iter()
                .filter_map(|(k, (n, s))| {
                    let before = earlier.failures.get(k).map(|(n, _)| *n).unwrap_or(0);
                    (*n > before).then(|| (*k, (n - before, s.clone())))
                })
                .collect(),
            retried_idle: self.retried_idle - earlier.retried_idle,
            elapsed: self.elapsed.saturating_sub(earlier.elapsed),
        }
    }

    fn fail(&mut self, kind: Failure, what: String) {
        self.requests += 1;
        let e = self.failures.entry(kind).or_insert((0, what));
        e.0 += 1;
    }

    fn answer(&mut self, status: u16, version: Option<String>, body: &str) {
        self.requests += 1;
        *self.by_status.entry(status).or_insert(0) += 1;
        if (200..300).contains(&status) {
            let v = version.unwrap_or_else(|| "-".into());
            *self.by_version.entry(v).or_insert(0) += 1;
        } else {
            let sample = format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            );
            let e = self
                .failures
                .entry(Failure::Status(status))
                .or_insert((0, sample));
            e.0 += 1;
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.1}s ({:.0}/s): by status {:?}, by version {:?}, {} failed",
            self.requests,
            self.elapsed.as_secs_f64(),
            self.requests as f64 / self.elapsed.as_secs_f64().max(0.001),
            self.by_status,
            self.by_version,
            self.failed()
        )?;
        for (k, (n, sample)) in &self.failures {
            write!(f, "\n  {k:?} x{n}, e.g. {sample}")?;
        }
        if self.retried_idle > 0 {
            write!(
                f,
                "\n  {} idle keep-alive connections closed by the server, their requests retried",
                self.retried_idle
            )?;
        }
        Ok(())
    }
}

/// A running load; [`Load::stop`] ends it.
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Report>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    started: Instant,
}

impl Load {
    /// `concurrency` threads over keep-alive connections, each request to
    /// the next address in turn.
    pub fn start(addrs: &[SocketAddr], concurrency: usize) -> Load {
        Load::with(
            addrs,
            Options {
                concurrency,
                ..Options::default()
            },
        )
    }

    pub fn with(addrs: &[SocketAddr], options: Options) -> Load {
        assert!(!addrs.is_empty(), "a load needs an address");
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Report::default()));
        let threads = (0..options.concurrency.max(1))
            .map(|i| {
                let (stop, shared, options) = (stop.clone(), shared.clone(), options.clone());
                let addrs = addrs.to_vec();
                std::thread::spawn(move || {
                    let mut conns: Vec<Option<BufReader<TcpStream>>> =
                        addrs.iter().map(|_| None).collect();
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let k = n % addrs.len();
                        n += 1;
                        one(&addrs[k], &mut conns[k], &options, &shared);
                        if let Some(p) = options.pause {
                            std::thread::sleep(p);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            shared,
            threads,
            started: Instant::now(),
        }
    }

    /// The counts so far (the load goes on).
    pub fn snapshot(&self) -> Report {
        let mut r = self.shared.lock().unwrap().clone();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Run until at least `n` more requests were made (or `limit` passed).
    pub fn wait_for(&self, n: u64, limit: Duration) -> Report {
        let start = self.snapshot().requests;
        let until = Instant::now() + limit;
        loop {
            let now = self.snapshot();
            if now.requests >= start + n || Instant::now() > until {
                return now;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop every thread (each finishes its request) and report.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
        let mut r = self.shared.lock().unwrap().clone();
        r.elapsed = self.started.elapsed();
        r
    }
}

enum Outcome {
    Answer(u16, Option<String>, String, bool),
    /// The reused connection was closed before any byte of the answer.
    IdleClosed,
    Failed(Failure, String),
}

fn one(
    addr: &SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
    options: &Options,
    shared: &Mutex<Report>,
) {
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            match TcpStream::connect_timeout(addr, options.timeout) {
                Ok(s) => {
                    let _ = s.set_read_timeout(Some(options.timeout));
                    let _ = s.set_write_timeout(Some(options.timeout));
                    let _ = s.set_nodelay(true);
                    *conn = Some(BufReader::new(s));
                }
                Err(e) => {
                    shared
                        .lock()
                        .unwrap()
                        .fail(Failure::Connect, format!("connect {addr}: {e}"));
                    return;
                }
            }
        }
        let reader = conn.as_mut().unwrap();
        let outcome = exchange(reader, addr, options, reused);
        match outcome {
            Outcome::Answer(status, version, body, keep) => {
                if !keep || options.connection == Connection::Fresh {
                    *conn = None;
                }
                shared.lock().unwrap().answer(status, version, &body);
                return;
            }
            Outcome::IdleClosed if attempt == 0 => {
                *conn = None;
                shared.lock().unwrap().retried_idle += 1;
            }
            Outcome::IdleClosed => {
                *conn = None;
                shared.lock().unwrap().fail(
                    Failure::Reset,
                    format!("{addr}: closed before answering, twice"),
                );
                return;
            }
            Outcome::Failed(kind, what) => {
                *conn = None;
                shared.lock().unwrap().fail(kind, format!("{addr}: {what}"));
                return;
            }
        }
    }
}

fn io_failure(e: &std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Failure::Timeout,
        _ => Failure::Reset,
    }
}

fn exchange(
    reader: &mut BufReader<TcpStream>,
    addr: &SocketAddr,
    options: &Options,
    reused: bool,
) -> Outcome {
    let close = if options.connection == Connection::Fresh {
        "Connection: close\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: maestro-load\r\n{close}\r\n",
        options.path
    );
    if let Err(e) = reader.get_mut().write_all(request.as_bytes()) {
        if reused {
            return Outcome::IdleClosed;
        }
        return Outcome::Failed(io_failure(&e), format!("sending the request: {e}"));
    }
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) if reused => return Outcome::IdleClosed,
        Ok(0) => return Outcome::Failed(Failure::Reset, "closed before answering".into()),
        Err(e)
            if reused
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
        {
            return Outcome::IdleClosed;
        }
        Err(e) => return Outcome::Failed(io_failure(&e), format!("reading the status: {e}")),
        Ok(_) => {}
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(status) = code
        .parse::<u16>()
        .ok()
        .filter(|_| proto.starts_with("HTTP/1."))
    else {
        return Outcome::Failed(Failure::BadResponse, format!("status line {line:?}"));
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut keep = proto == "HTTP/1.1";
    let mut version = None;
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) => return Outcome::Failed(Failure::Reset, "closed in the headers".into()),
            Err(e) => return Outcome::Failed(io_failure(&e), format!("reading headers: {e}")),
            Ok(_) => {}
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Outcome::Failed(Failure::BadResponse, format!("header {h:?}"));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse().ok(),
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => {
                if v.eq_ignore_ascii_case("close") {
                    keep = false
                } else if v.eq_ignore_ascii_case("keep-alive") {
                    keep = true
                }
            }
            "x-agent-version" => version = Some(v.to_string()),
            _ => {}
        }
    }
    let mut body = Vec::new();
    let read = if chunked {
        read_chunked(reader, &mut body)
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)
    } else {
        keep = false;
        reader.read_to_end(&mut body).map(|_| ())
    };
    if let Err(e) = read {
        return Outcome::Failed(io_failure(&e), format!("reading the body: {e}"));
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    if version.is_none() {
        version = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["version"].as_str().map(str::to_string));
    }
    Outcome::Answer(status, version, body, keep)
}

fn read_chunked(reader: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "chunk size"))?;
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
}
