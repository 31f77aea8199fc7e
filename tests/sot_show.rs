//! What the SoT commands show an operator: registry entries as the SoT spells
//! them, and nothing from the SoT or the command line that could drive the
//! terminal.

mod common;

use std::path::Path;

use common::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sot");
const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sot-corpus");

/// Bytes that act on a terminal: C0 controls other than newline and tab, DEL,
/// and the C1 controls' UTF-8 forms.
fn raw_controls(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t') || ('\u{80}'..='\u{9f}').contains(&c)
        })
        .map(|c| c as u32 as u8)
        .collect()
}

#[test]
fn agent_show_prints_the_autonomy_level_and_only_a_provider_that_is_set() {
    let o = run(&["--sot", EXAMPLE, "agent", "show", "support-triage"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(shown.contains("autonomy = \"L2\""), "{shown}");
    assert!(!shown.contains("provider"), "{shown}");

    let o = run(&["--sot", EXAMPLE, "agent", "show", "fleet-doctor"]);
    let shown = stdout(&o);
    assert!(
        shown.contains("autonomy = \"L3\"") && shown.contains("provider = \"anthropic\""),
        "{shown}"
    );

    let o = run(&[
        "--json",
        "--sot",
        EXAMPLE,
        "agent",
        "show",
        "support-triage",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["agent"]["autonomy"], "L2");
    assert!(v["agent"]["provider"].is_null(), "{v}");
}

#[test]
fn sot_check_shows_control_characters_from_the_sot_made_visible() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = tmp.path().join("s");
    copy_dir(&Path::new(CORPUS).join("base"), &sot);
    // A node name that sets the terminal title and clears the screen.
    let nodes = std::fs::read_to_string(sot.join("nodes.toml")).unwrap();
    std::fs::write(
        sot.join("nodes.toml"),
        nodes.replace(
            "[node.web-2]",
            "[node.\"x\\u001b]0;pwned\\u0007\\u001b[2J\\u009b1m\"]",
        ),
    )
    .unwrap();
    let o = run(&["--sot", sot.to_str().unwrap(), "sot", "check"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(raw_controls(&o.stderr), b"", "{}", stderr(&o));
    assert!(
        stderr(&o).contains("invalid node name `x^[]0;pwned^G^[[2J\\u{9b}1m`"),
        "{}",
        stderr(&o)
    );

    // --json keeps the raw value, escaped as JSON (serde_json escapes C0
    // controls; C1 controls stay as their UTF-8 bytes, as JSON allows).
    let o = run(&["--json", "--sot", sot.to_str().unwrap(), "sot", "check"]);
    assert!(!o.stdout.iter().any(|&b| b < 0x20 && b != b'\n'));
    let diagnostic = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "diagnostic" && v["diagnostic"]["code"] == "bad-value")
        .unwrap();
    assert_eq!(
        diagnostic["diagnostic"]["message"],
        "invalid node name `x\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}1m`"
    );
}

#[test]
fn raw_control_bytes_in_a_file_are_shown_visibly_with_the_caret_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = tmp.path().join("s");
    copy_dir(&Path::new(CORPUS).join("base"), &sot);
    // A raw ESC inside a string is a TOML syntax error; its excerpt is shown.
    std::fs::write(
        sot.join("groups.toml"),
        "[group.web]\ndescription = \"\x1b[2Jweb\" \x07bad\n",
    )
    .unwrap();
    let o = run(&["--sot", sot.to_str().unwrap(), "sot", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(raw_controls(&o.stderr), b"", "{err}");
    let excerpt = err
        .lines()
        .find(|l| l.starts_with("2 | "))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(excerpt, "2 | description = \"^[[2Jweb\" ^Gbad");
    // The caret under the excerpt points at the character the message is about.
    let caret = err
        .lines()
        .skip_while(|l| !l.starts_with("2 | "))
        .nth(1)
        .unwrap();
    let col = caret.find('^').unwrap();
    assert!(
        excerpt[col..].starts_with("^[") || excerpt[col..].starts_with("^G"),
        "caret at {col}:\n{excerpt}\n{caret}"
    );
}

#[test]
fn names_typed_on_the_command_line_are_shown_visibly_in_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let sot = sot.to_str().unwrap();
    for args in [
        &["node", "show", "gpu\x1b]0;pwned\x07"][..],
        &["agent", "show", "\x1b[2Jdoctor"][..],
        &[
            "node",
            "add",
            "web\x1b[2J",
            "--address",
            "10.9.9.9",
            "--reason",
            "r",
            "--actor",
            "A <a@b>",
        ][..],
    ] {
        let mut full = vec!["--sot", sot];
        full.extend_from_slice(args);
        let o = run(&full);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(raw_controls(&o.stderr), b"", "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("^["), "{args:?}: {}", stderr(&o));
    }
}
