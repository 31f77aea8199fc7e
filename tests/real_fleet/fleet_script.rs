//! tests/fleet/fleet.sh itself, where its behaviour decides whether the
//! other tests can trust their fleet.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::fleet::script;

fn fleet_sh(net: &str, args: &[&str]) -> Output {
    Command::new("bash")
        .env("FLEET_NET_PREFIX", net)
        .arg(script())
        .args(args)
        .output()
        .expect("bash runs")
}

/// Stops the fleet in a directory when the test ends, however it ends.
struct Stopper<'a>(&'a Path);

impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = fleet_sh("127.0.10", &["stop", self.0.to_str().unwrap()]);
    }
}

/// The kernel gives a freed mount-namespace inode number to the next
/// namespace created. A fleet whose nodes take their time to stop (here a
/// process that ignores SIGTERM) rescans namespaces while the next test
/// binary's fleet starts; it must not signal the newcomers that got its
/// nodes' numbers. (CI saw this as a whole test binary failing to start its
/// fleet, with no message, right after the previous binary ended.)
#[test]
fn a_fleet_stopping_while_another_starts_leaves_the_other_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let _stop_a = Stopper(&a);
    let _stop_b = Stopper(&b);
    let o = fleet_sh("127.0.52", &["start", a_s, "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let mut stubborn = Command::new("bash")
        .arg(script())
        .args(["node-exec", a_s, "n01", "--", "setsid", "sh", "-c"])
        .arg("trap '' TERM; sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let stopping = Command::new("bash")
        .arg(script())
        .args(["stop", a_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let started = fleet_sh("127.0.53", &["start", b_s, "4"]);
    let stopped = stopping.wait_with_output().unwrap();
    let _ = stubborn.wait();
    assert!(
        started.status.success(),
        "the second fleet did not start while the first stopped:\n{}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );

    let status = fleet_sh("127.0.53", &["status", b_s]);
    let status = String::from_utf8_lossy(&status.stdout);
    let up = status.lines().filter(|l| l.ends_with(" up")).count();
    assert_eq!(
        up, 4,
        "every node of the second fleet is still up:\n{status}"
    );
    let a_status = fleet_sh("127.0.52", &["status", a_s]);
    let a_status = String::from_utf8_lossy(&a_status.stdout);
    assert!(
        a_status.lines().all(|l| l.ends_with(" down")),
        "the first fleet is down, its stubborn process included:\n{a_status}"
    );
}
