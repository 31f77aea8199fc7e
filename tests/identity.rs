//! Who maestro takes the operator for: a person of people.toml only when
//! their SSH key signs (a key file, or a real ssh-agent), never a typed
//! name; a key file that proves nobody is an error, not a fallback.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{init_sot, maestro, stderr, stdout};

fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(o.status.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

fn whoami(sot: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = maestro();
    c.args(["--sot", sot.to_str().unwrap(), "whoami"])
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("MAESTRO_IDENTITY")
        .env("MAESTRO_ACTOR", "ada");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A real ssh-agent on its own socket, stopped by PID when dropped.
struct Agent {
    child: std::process::Child,
    sock: std::path::PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client) is installed");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Agent { child, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn only_a_signature_by_a_persons_key_makes_the_actor_that_person() {
    let tmp = tempfile::tempdir().unwrap();
    let sot = init_sot(tmp.path(), "fleet");
    let public = keygen(tmp.path(), "ada_key");
    keygen(tmp.path(), "stranger_key");
    // The example's people, with ada's key replaced by one this test holds.
    let people = std::fs::read_to_string(sot.join("people.toml")).unwrap();
    let at = people.find("[person.ada]").unwrap();
    let keys = at + people[at..].find("keys = [").unwrap();
    let end = keys + people[keys..].find('\n').unwrap();
    let people = format!("{}keys = [\"{public}\"]{}", &people[..keys], &people[end..]);
    std::fs::write(sot.join("people.toml"), people).unwrap();

    // A typed name is only a claim.
    let o = whoami(&sot, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ada (unverified"), "{}", stdout(&o));

    // Ada's key file proves her.
    let key = tmp.path().join("ada_key");
    let o = whoami(&sot, &[("MAESTRO_IDENTITY", key.to_str().unwrap())]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ada (proven by SHA256:"),
        "{}",
        stdout(&o)
    );

    // A key of nobody in people.toml is an error, not a quiet fallback.
    let other = tmp.path().join("stranger_key");
    let o = whoami(&sot, &[("MAESTRO_IDENTITY", other.to_str().unwrap())]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no person's key in people.toml"),
        "{}",
        stderr(&o)
    );

    // The same key through a real ssh-agent.
    let agent = Agent::start(tmp.path());
    let sock = agent.sock.to_str().unwrap().to_string();
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let o = whoami(&sot, &[("SSH_AUTH_SOCK", &sock)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("ada (proven by SHA256:"),
        "{}",
        stdout(&o)
    );

    // A people.toml key that is not an SSH public key: file:line:col, exit 2.
    let people = std::fs::read_to_string(sot.join("people.toml")).unwrap();
    std::fs::write(
        sot.join("people.toml"),
        people.replacen(&public, "ssh-ed25519 not-base64", 1),
    )
    .unwrap();
    let line = std::fs::read_to_string(sot.join("people.toml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("not-base64"))
        .unwrap()
        + 1;
    let o = whoami(&sot, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("people.toml:{line}:")),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("not an SSH public key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn init_with_a_key_makes_the_operator_a_person_the_policies_let_act() {
    let tmp = tempfile::tempdir().unwrap();
    keygen(tmp.path(), "me");
    let dir = tmp.path().join("fleet");
    let o = maestro()
        .args(["init"])
        .arg(&dir)
        .args(["--key"])
        .arg(tmp.path().join("me.pub"))
        .args([
            "--person",
            "tester",
            "--actor",
            "Tess Ter <tess@example.org>",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("you are `tester` in people.toml"),
        "{}",
        stdout(&o)
    );
    let key = tmp.path().join("me");
    let who = whoami(&dir, &[("MAESTRO_IDENTITY", key.to_str().unwrap())]);
    assert!(
        stdout(&who).starts_with("tester (proven by SHA256:"),
        "{}",
        stdout(&who)
    );
    // The example policies let the platform team change a staging node.
    let explain = maestro()
        .args([
            "--sot",
            dir.to_str().unwrap(),
            "policy",
            "explain",
            "--actor",
            "tester",
            "exec",
            "gpu-eu-04",
        ])
        .output()
        .unwrap();
    assert!(explain.status.success(), "{}", stdout(&explain));
    assert!(stdout(&explain).contains("allow"), "{}", stdout(&explain));

    // A key that is already an example person's is refused, and nothing is left behind.
    let again = tmp.path().join("again");
    let ada = std::fs::read_to_string(dir.join("people.toml")).unwrap();
    let line = ada
        .lines()
        .find(|l| l.starts_with("keys = [\"ssh-ed25519"))
        .unwrap();
    let public = &line[9..line.len() - 2];
    std::fs::write(tmp.path().join("ada.pub"), format!("{public}\n")).unwrap();
    let o = maestro()
        .args(["init"])
        .arg(&again)
        .args(["--key"])
        .arg(tmp.path().join("ada.pub"))
        .args(["--actor", "Tess Ter <tess@example.org>"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already the key of person"),
        "{}",
        stderr(&o)
    );
    assert!(!again.exists());
}
