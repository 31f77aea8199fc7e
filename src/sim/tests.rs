//! Tests of the simulator through a russh client.
//! Run with `cargo test -- --test-threads=1 --nocapture` to see the timings.

// The scale tests report what they measured; tests may print.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::{
    Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate,
};
use russh::{ChannelMsg, Disconnect, client};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{SimConfig, SimError, SimNode, Simulator};

/// Client handler that accepts exactly one host key.
struct Pinned(PublicKey);

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data() == self.0.key_data(),
            _ => false,
        })
    }
}

fn new_key() -> Arc<PrivateKey> {
    Arc::new(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("ed25519 key"))
}

fn config(nodes: usize, client: &PrivateKey, root: &Path) -> SimConfig {
    SimConfig::new(nodes, client.public_key().clone(), root)
}

/// Connects to `node` pinning `host_key`, without authenticating.
async fn connect_as(
    node: &SimNode,
    host_key: &PublicKey,
) -> Result<client::Handle<Pinned>, russh::Error> {
    let config = Arc::new(client::Config::default());
    client::connect(config, node.addr, Pinned(host_key.clone())).await
}

async fn authenticate(handle: &mut client::Handle<Pinned>, key: &Arc<PrivateKey>) -> bool {
    handle
        .authenticate_publickey("maestro", PrivateKeyWithHashAlg::new(Arc::clone(key), None))
        .await
        .expect("auth exchange")
        .success()
}

/// Connects and authenticates, panicking on failure.
async fn connect(node: &SimNode, key: &Arc<PrivateKey>) -> client::Handle<Pinned> {
    let mut handle = connect_as(node, &node.host_key).await.expect("connect");
    assert!(
        authenticate(&mut handle, key).await,
        "{}: auth rejected",
        node.name
    );
    handle
}

#[derive(Debug, Default)]
struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
    signal: Option<String>,
    /// When each stdout message arrived, and what it held.
    stdout_msgs: Vec<(Instant, Vec<u8>)>,
}

impl Output {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs `command` on a new channel, feeding `stdin` (then EOF) if given.
async fn exec(handle: &client::Handle<Pinned>, command: &str, stdin: Option<&[u8]>) -> Output {
    let mut ch = handle.channel_open_session().await.expect("open session");
    ch.exec(true, command).await.expect("exec");
    if let Some(input) = stdin {
        ch.data_bytes(input.to_vec()).await.expect("stdin data");
        ch.eof().await.expect("stdin eof");
    }
    let mut out = Output::default();
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                out.stdout.extend_from_slice(&data);
                out.stdout_msgs.push((Instant::now(), data.to_vec()));
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.signal = Some(format!("{signal_name:?}"))
            }
            _ => {}
        }
    }
    out
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pid written to a file by a command, once the file is complete.
fn read_pid(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.strip_suffix('\n')?.parse().ok()
}

/// Gone, or a zombie waiting for a reaper (a container's init may not reap).
fn is_dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .map(|v| v.trim_start_matches(':').trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_in_the_node_environment() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(3, &key, scratch.path()))
        .await
        .unwrap();
    let nodes = sim.nodes();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["sim-00001", "sim-00002", "sim-00003"]
    );
    assert_ne!(
        nodes[0].host_key.key_data(),
        nodes[1].host_key.key_data(),
        "one key per node"
    );

    for node in nodes {
        let handle = connect(node, &key).await;
        let out = exec(
            &handle,
            "echo $MAESTRO_SIM_NODE; pwd; echo $HOME; echo err >&2; exit 3",
            None,
        )
        .await;
        let dir = node.dir.display();
        assert_eq!(out.stdout(), format!("{}\n{dir}\n{dir}\n", node.name));
        assert_eq!(out.stderr(), "err\n");
        assert_eq!(out.status, Some(3));
        assert_eq!(sim.exec_count(&node.name), 1);
    }

    // Files land in the node's own directory only.
    let handle = connect(&nodes[1], &key).await;
    let out = exec(&handle, "echo hello > note.txt", None).await;
    assert_eq!(out.status, Some(0));
    assert_eq!(
        std::fs::read_to_string(nodes[1].dir.join("note.txt")).unwrap(),
        "hello\n"
    );
    assert!(!nodes[0].dir.join("note.txt").exists());
    assert!(!nodes[2].dir.join("note.txt").exists());
    assert_eq!(sim.exec_count("sim-00002"), 2);

    // Stdin, fast path, death by signal, several channels on one connection.
    let out = exec(&handle, "tr a-z A-Z", Some(b"piped in\n")).await;
    assert_eq!((out.stdout().as_str(), out.status), ("PIPED IN\n", Some(0)));
    let out = exec(&handle, "true", None).await;
    assert_eq!((out.stdout.len(), out.status), (0, Some(0)));
    let out = exec(&handle, "kill -TERM $$", None).await;
    assert_eq!((out.status, out.signal.as_deref()), (None, Some("TERM")));
    assert_eq!(sim.exec_count("sim-00002"), 5);

    // known_hosts: one line per node, "[ip]:port algo base64", no comment.
    let known_hosts = sim.known_hosts();
    let lines: Vec<&str> = known_hosts.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(known_hosts.ends_with('\n') && !known_hosts.starts_with('\n'));
    for (line, node) in lines.iter().zip(nodes) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line:?}");
        assert_eq!(fields[0], format!("[127.0.0.1]:{}", node.addr.port()));
        assert_eq!(fields[1], "ssh-ed25519");
        let parsed = PublicKey::from_openssh(&format!("{} {}", fields[1], fields[2])).unwrap();
        assert_eq!(parsed.key_data(), node.host_key.key_data());
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(2, &key, scratch.path()))
        .await
        .unwrap();
    let node = &sim.nodes()[0];

    let mut handle = connect_as(node, &node.host_key).await.unwrap();
    assert!(
        !authenticate(&mut handle, &new_key()).await,
        "foreign client key accepted"
    );
    // The right key still works on the same connection afterwards.
    assert!(authenticate(&mut handle, &key).await);

    // Pinning another node's host key must fail the handshake.
    let other = sim.nodes()[1].host_key.clone();
    let err = connect_as(node, &other)
        .await
        .err()
        .expect("connected despite wrong host key");
    assert!(matches!(err, russh::Error::UnknownKey), "{err:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_node_refuses_and_drops_connections() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    // An address of its own: on 127.0.0.1 another test's simulator may bind
    // the port the stopped node freed, and accept the connection below.
    let mut cfg = config(3, &key, scratch.path());
    cfg.bind_ip = std::net::Ipv4Addr::new(127, 0, 77, 1);
    let sim = Simulator::start(cfg).await.unwrap();
    let nodes = sim.nodes().to_vec();
    let live = connect(&nodes[1], &key).await;
    let mut ch = live.channel_open_session().await.unwrap();
    ch.exec(true, "echo $$ > sh.pid; sleep 30").await.unwrap();
    let pidfile = nodes[1].dir.join("sh.pid");
    wait_until("sh.pid", Duration::from_secs(5), || {
        read_pid(&pidfile).is_some()
    })
    .await;
    let pid = read_pid(&pidfile).unwrap();

    assert!(sim.stop_node("sim-00002").await);
    assert!(!sim.stop_node("sim-00002").await, "already stopped");
    assert!(!sim.stop_node("sim-09999").await, "no such node");

    // Refused once no process holds the listener: a child forked by a
    // concurrent test keeps a copy of every descriptor until its exec.
    let addr = nodes[1].addr;
    wait_until("connections to be refused", Duration::from_secs(5), || {
        matches!(
            std::net::TcpStream::connect(addr),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    })
    .await;
    // The live connection was cut and its command killed.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ch.wait().await {
            assert!(!matches!(msg, ChannelMsg::ExitStatus { .. }), "{msg:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "channel still open after stop_node");
    wait_until(
        "the live connection to drop",
        Duration::from_secs(5),
        || live.is_closed(),
    )
    .await;
    wait_until("the command to be killed", Duration::from_secs(5), || {
        is_dead(pid)
    })
    .await;

    for node in [&nodes[0], &nodes[2]] {
        let handle = connect(node, &key).await;
        let out = exec(&handle, "echo $MAESTRO_SIM_NODE", None).await;
        assert_eq!(out.stdout(), format!("{}\n", node.name));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thousand_nodes_exec_true() {
    const NODES: usize = 1000;
    const CONCURRENCY: usize = 256;
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let mut cfg = config(NODES, &key, scratch.path());
    cfg.shared_host_key = true;

    let t0 = Instant::now();
    let sim = Simulator::start(cfg).await.unwrap();
    let started = t0.elapsed();

    let t1 = Instant::now();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    for node in sim.nodes().iter().cloned() {
        let (limit, key) = (Arc::clone(&limit), Arc::clone(&key));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            let handle = connect(&node, &key).await;
            let out = exec(&handle, "true", None).await;
            let _ = handle.disconnect(Disconnect::ByApplication, "", "").await;
            (node.name, out.status)
        });
    }
    let mut ok = 0;
    while let Some(res) = tasks.join_next().await {
        let (name, status) = res.unwrap();
        assert_eq!(status, Some(0), "{name}");
        ok += 1;
    }
    let ran = t1.elapsed();
    assert_eq!(ok, NODES);
    assert!(sim.nodes().iter().all(|n| sim.exec_count(&n.name) == 1));
    let max = sim.max_open_sessions();
    assert!((2..=CONCURRENCY).contains(&max), "max open sessions {max}");
    wait_until("sessions to close", Duration::from_secs(5), || {
        sim.open_sessions() == 0
    })
    .await;

    println!(
        "sim: {NODES} nodes started in {started:.2?}; connect+auth+exec true on all \
         (concurrency {CONCURRENCY}) in {ran:.2?} ({:.0}/s); max open sessions {max}; \
         VmHWM {} VmRSS {}",
        NODES as f64 / ran.as_secs_f64(),
        proc_status("VmHWM"),
        proc_status("VmRSS"),
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_streamed() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(1, &key, scratch.path()))
        .await
        .unwrap();
    let handle = connect(&sim.nodes()[0], &key).await;
    let t0 = Instant::now();
    let out = exec(&handle, "echo a; sleep 1; echo b", None).await;
    assert_eq!(out.stdout(), "a\nb\n");
    assert_eq!(out.status, Some(0));
    let msgs = &out.stdout_msgs;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].1, b"a\n");
    assert_eq!(msgs[1].1, b"b\n");
    let first = msgs[0].0 - t0;
    let gap = msgs[1].0 - msgs[0].0;
    assert!(
        first < Duration::from_millis(700),
        "a arrived after {first:?}"
    );
    assert!(
        gap >= Duration::from_millis(800),
        "a and b only {gap:?} apart"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_the_channel_or_connection_kills_the_command() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(1, &key, scratch.path()))
        .await
        .unwrap();
    let node = sim.nodes()[0].clone();
    let handle = connect(&node, &key).await;

    // Background child too: the whole process group must go.
    let command =
        |tag: &str| format!("echo $$ > {tag}.sh.pid; sleep 30 & echo $! > {tag}.sleep.pid; wait");
    let pids = |tag: &str| {
        let sh = read_pid(&node.dir.join(format!("{tag}.sh.pid")))?;
        let sleep = read_pid(&node.dir.join(format!("{tag}.sleep.pid")))?;
        Some((sh, sleep))
    };

    let ch = handle.channel_open_session().await.unwrap();
    ch.exec(true, command("close")).await.unwrap();
    wait_until("pid files", Duration::from_secs(5), || {
        pids("close").is_some()
    })
    .await;
    let (sh, sleep) = pids("close").unwrap();
    assert!(!is_dead(sh) && !is_dead(sleep));
    assert_eq!(sim.running_commands(), 1);
    ch.close().await.unwrap();
    wait_until("sh and sleep to die", Duration::from_secs(5), || {
        is_dead(sh) && is_dead(sleep)
    })
    .await;
    wait_until("the command to be reaped", Duration::from_secs(5), || {
        sim.running_commands() == 0
    })
    .await;
    wait_until("the session to close", Duration::from_secs(5), || {
        sim.open_sessions() == 0
    })
    .await;

    // The same when the whole connection goes away.
    let ch = handle.channel_open_session().await.unwrap();
    ch.exec(true, command("drop")).await.unwrap();
    wait_until("pid files", Duration::from_secs(5), || {
        pids("drop").is_some()
    })
    .await;
    let (sh, sleep) = pids("drop").unwrap();
    handle
        .disconnect(Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    drop(handle);
    wait_until("sh and sleep to die", Duration::from_secs(5), || {
        is_dead(sh) && is_dead(sleep)
    })
    .await;
    wait_until("the connection to close", Duration::from_secs(5), || {
        sim.open_connections() == 0
    })
    .await;
    assert_eq!(sim.open_sessions(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_nodes_for_the_fd_limit_is_an_error() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let err = Simulator::start(config(usize::MAX / 8, &key, scratch.path()))
        .await
        .err()
        .expect("started an impossible fleet");
    assert!(matches!(err, SimError::TooManyNodes { .. }), "{err}");
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_output_and_input_flow() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(1, &key, scratch.path()))
        .await
        .unwrap();
    let handle = connect(&sim.nodes()[0], &key).await;
    // More than the 2 MiB channel window each way.
    let out = exec(
        &handle,
        "head -c 5000000 /dev/zero; head -c 3000000 /dev/zero >&2",
        None,
    )
    .await;
    assert_eq!(
        (out.stdout.len(), out.stderr.len(), out.status),
        (5_000_000, 3_000_000, Some(0))
    );
    assert!(out.stdout.iter().all(|&b| b == 0));
    let input = vec![b'x'; 3_000_000];
    let out = exec(&handle, "wc -c", Some(&input)).await;
    assert_eq!((out.stdout().trim(), out.status), ("3000000", Some(0)));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shells_are_limited_and_queued() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Arc::new(
        Simulator::start(config(4, &key, scratch.path()))
            .await
            .unwrap(),
    );
    let total = super::MAX_CHILDREN + 36;
    let t0 = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let (sim, key) = (Arc::clone(&sim), Arc::clone(&key));
        tasks.spawn(async move {
            let handle = connect(&sim.nodes()[i % 4], &key).await;
            exec(&handle, "sleep 0.5", None).await.status
        });
    }
    let mut peak = 0;
    while !tasks.is_empty() {
        peak = peak.max(sim.running_commands());
        tokio::select! {
            Some(res) = tasks.join_next() => assert_eq!(res.unwrap(), Some(0)),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    let elapsed = t0.elapsed();
    assert!(peak <= super::MAX_CHILDREN, "{peak} shells at once");
    assert!(peak >= super::MAX_CHILDREN / 2, "peak only {peak}");
    // Two waves of sleeps.
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    println!("sim: {total} x sleep 0.5: peak {peak} shells, {elapsed:.2?}");
    Arc::into_inner(sim).unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_signals_reach_the_command() {
    let scratch = tempfile::tempdir().unwrap();
    let key = new_key();
    let sim = Simulator::start(config(1, &key, scratch.path()))
        .await
        .unwrap();
    let handle = connect(&sim.nodes()[0], &key).await;
    let mut ch = handle.channel_open_session().await.unwrap();
    ch.exec(
        true,
        "trap 'echo got; exit 7' USR1; echo ready; while :; do sleep 0.1; done",
    )
    .await
    .unwrap();
    let mut stdout = String::new();
    let mut status = None;
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                stdout.push_str(&String::from_utf8_lossy(&data));
                if stdout == "ready\n" {
                    ch.signal(russh::Sig::USR1).await.unwrap();
                }
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    assert_eq!((stdout.as_str(), status), ("ready\ngot\n", Some(7)));
    sim.shutdown().await;
}
