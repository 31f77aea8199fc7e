//! The command line's own conveniences: shell completions and the man page,
//! generated from the same clap definitions as `--help`.

mod common;

use std::process::Command;

use common::{run, stdout};

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let o = run(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    let script = std::env::temp_dir().join(format!("maestro-completion-{}", std::process::id()));
    std::fs::write(&script, &o.stdout).unwrap();
    // What bash offers after `maestro ex<Tab>` and `maestro harden --a<Tab>`.
    let probe = format!(
        "source {}; \
         COMP_WORDS=(maestro ex); COMP_CWORD=1; _maestro maestro ex maestro; echo \"${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(maestro harden --a); COMP_CWORD=2; _maestro maestro --a harden; echo \"${{COMPREPLY[*]}}\"",
        script.display()
    );
    let b = Command::new("bash").args(["-c", &probe]).output().unwrap();
    std::fs::remove_file(&script).unwrap();
    let out = String::from_utf8_lossy(&b.stdout);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("exec"),
        "{out}{}",
        String::from_utf8_lossy(&b.stderr)
    );
    let flags = lines.next().unwrap_or_default();
    assert!(
        flags.contains("--audit") && flags.contains("--apply") && flags.contains("--accept-new"),
        "{flags}"
    );
}

#[test]
fn zsh_and_fish_completions_and_the_man_page() {
    for shell in ["zsh", "fish"] {
        let o = run(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).contains("become-password-file"), "{shell}");
    }
    let o = run(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is invalid input"
    );
    let man = run(&["man"]);
    assert_eq!(man.status.code(), Some(0));
    let text = stdout(&man);
    assert!(text.contains(".TH maestro 1"), "{text}");
    assert!(
        text.contains("Exit codes") && text.contains("denied by policy"),
        "the man page carries the exit-code table: {text}"
    );
}
