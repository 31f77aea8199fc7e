use super::*;
use crate::fleet::event::NodeStatus;

fn result(status: NodeStatus, stdout: &str) -> NodeResult {
    let mut r = NodeResult::new("n1", status);
    r.stdout.push(stdout.as_bytes(), 1 << 20);
    r
}

#[test]
fn only_a_node_whose_script_said_so_is_confirmed() {
    let c = confirmation(&result(NodeStatus::Ok, "maestro-kill: stopped 12 13\n"));
    assert_eq!(c.state, NodeKill::Stopped);
    assert_eq!(c.pids, vec![12, 13]);
    let c = confirmation(&result(NodeStatus::Ok, "maestro-kill: already-stopped\n"));
    assert_eq!(c.state, NodeKill::AlreadyStopped);
    // Unreachable is never stopped, whatever the output says.
    let c = confirmation(&result(
        NodeStatus::Unreachable,
        "maestro-kill: stopped 1\n",
    ));
    assert_eq!(c.state, NodeKill::Unreachable);
    assert!(!c.state.confirmed());
    let c = confirmation(&result(NodeStatus::Failed, "maestro-kill: remaining 99\n"));
    assert_eq!(c.state, NodeKill::Failed);
    assert!(c.detail.unwrap().contains("99"));
    // A script cut off before its verdict (timeout, lost connection).
    let c = confirmation(&result(NodeStatus::TimedOut, ""));
    assert_eq!(c.state, NodeKill::Failed);
    // A verdict from a failed exit is not believed.
    let c = confirmation(&result(NodeStatus::Failed, "maestro-kill: stopped 1\n"));
    assert_eq!(c.state, NodeKill::Failed);
}

#[test]
fn the_scripts_parse_as_sh_and_the_reason_stays_on_one_marker_line() {
    let marker = script::Marker {
        agent: "support-bot".into(),
        by: "Ada <ada@example.org>".into(),
        at: "2026-11-21T07:25:01Z".into(),
        reason: "it's $(touch /tmp/pwned) `id`\nsecond line".into(),
    };
    for text in [
        script::kill(&["support-bot".into()], false, &marker),
        script::kill(&["a".into(), "b".into()], true, &marker),
        script::release(&["support-bot".into()], false, &["all".into()]),
    ] {
        let o = std::process::Command::new("sh")
            .arg("-n")
            .arg("-c")
            .arg(&text)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !text.contains("\nsecond line"),
            "the reason stays on one marker line"
        );
    }
}
