//! What an operator needs to drive a simulated fleet with maestro: a SoT
//! listing the simulated nodes, a client key, and a known_hosts file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use russh::keys::{Algorithm, PrivateKey, ssh_key::LineEnding};

use super::Simulator;

/// A fresh client key for a simulated fleet.
pub fn client_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("ed25519 key generation")
}

/// The SoT files (relative paths, contents) describing the simulated nodes:
/// two regions and a few roles so targeting has something to select.
///
/// With `scratch_vars`, each node's `runtime_root`, `log_dir` and `state_dir`
/// point into its own scratch directory and `service_user` is the simulator's
/// user, so the agent-runtime playbook (minus its `users`, `logging` and
/// `service` tags, which touch system paths) can run against simulated nodes.
///
/// `user` is the login user of every node: `root` runs commands as the
/// sandbox's unprivileged uid, so scripts need no sudo.
pub fn sot_files(
    sim: &Simulator,
    name: &str,
    user: &str,
    scratch_vars: bool,
) -> Vec<(PathBuf, String)> {
    let settings = format!(
        "# A simulated fleet written by maestro: every node is an in-process SSH server.\n\
         [maestro]\nname = \"{name}\"\n\n[connection]\nuser = \"{user}\"\n\n\
         [tags]\nrequired = [\"env\", \"region\"]\n\n[tags.values]\nenv = [\"sim\"]\n\
         region = [\"eu-west\", \"us-east\"]\nrole = [\"inference\", \"gateway\", \"batch\"]\n"
    );
    let mut nodes = String::with_capacity(sim.nodes().len() * 160);
    for (i, n) in sim.nodes().iter().enumerate() {
        let region = if i % 2 == 0 { "eu-west" } else { "us-east" };
        let (role, group) = match i % 10 {
            0 => ("gateway", "gateways"),
            1 | 2 => ("batch", "batch"),
            _ => ("inference", "gpu"),
        };
        let _ = write!(
            nodes,
            "[node.{}]\naddress = \"{}\"\nport = {}\ngroups = [\"{group}\"]\n\
             tags = {{ env = \"sim\", region = \"{region}\", role = \"{role}\" }}\n",
            n.name,
            n.addr.ip(),
            n.addr.port()
        );
        if scratch_vars {
            let d = n.dir.display();
            let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
            let _ = writeln!(
                nodes,
                "vars = {{ runtime_root = \"{d}/opt/maestro\", log_dir = \"{d}/log\", state_dir = \"{d}/state\", service_user = \"{user}\" }}"
            );
        }
        nodes.push('\n');
    }
    let groups = "[group.gpu]\ndescription = \"simulated inference nodes\"\n\n\
                  [group.gateways]\ndescription = \"simulated gateways\"\n\n\
                  [group.batch]\ndescription = \"simulated batch workers\"\n"
        .to_string();
    vec![
        ("maestro.toml".into(), settings),
        ("nodes.toml".into(), nodes),
        ("groups.toml".into(), groups),
    ]
}

/// The installer library of a demo SoT: a playbook that lays out an agent
/// runtime inside each node's own directory (the `runtime_root`, `log_dir`
/// and `state_dir` of [`sot_files`] with scratch vars), a `demo` profile
/// that installs it, and the hardening baselines (their audits only read).
/// Every path is relative to the SoT.
pub fn demo_library() -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = crate::sot::example::EMBEDDED
        .iter()
        .filter(|(path, _)| path.starts_with("hardening/"))
        .map(|(path, text)| {
            (
                PathBuf::from(path),
                String::from_utf8_lossy(text).into_owned(),
            )
        })
        .collect();
    files.push(("playbooks/demo-runtime.toml".into(), DEMO_PLAYBOOK.into()));
    // Reflection: a run with failed nodes or a kill leaves a review in
    // :reflect (the demo's typed name may draft it; a person signs it).
    files.push(("checklists/demo-review.toml".into(), DEMO_CHECKLIST.into()));
    files.push((
        "profiles/demo.toml".into(),
        "description = \"The demo's agent runtime, inside each simulated node's directory\"\n\
         playbooks = [\"demo-runtime\"]\nhardening = \"baseline\"\nrequired_tags = [\"env\", \"region\"]\n"
            .into(),
    ));
    files
}

const DEMO_CHECKLIST: &str = r#"[checklist.demo-review]
title = "Demo review (LAW-REFLECT-001's shape)"

[checklist.demo-review.on]
failed_nodes = true
kill_engaged = true

[[checklist.demo-review.item]]
id = "what-happened"
question = "What happened, and on which nodes?"
evidence = ["run", "ledger"]

[[checklist.demo-review.item]]
id = "change"
question = "What do we change?"
"#;

const DEMO_PLAYBOOK: &str = r##"# The agent runtime's layout, configuration and manifest, inside the
# simulated node's own directory (the demo's sandbox lets nothing else change).
name = "demo-runtime"
description = "Agent runtime layout and configuration on a simulated node"

[vars]
runtime_version = "1.0.0"
log_level = "info"

[[task]]
name = "runtime root"
dir = { path = "{{ runtime_root }}", mode = "0755" }

[[task]]
name = "configuration directory"
dir = { path = "{{ runtime_root }}/etc", mode = "0750" }

[[task]]
name = "log and state directories"
command = { run = "mkdir -p {{ log_dir }} {{ state_dir }}", creates = "{{ state_dir }}" }

[[task]]
name = "runtime configuration"
template = { path = "{{ runtime_root }}/etc/runtime.toml", content = "# rendered by maestro for {{ node.name }}\nversion = \"{{ runtime_version }}\"\nregion = \"{{ node.tags.region }}\"\nlog_level = \"{{ log_level }}\"\n", mode = "0640" }

[[task]]
name = "runtime environment"
line = { path = "{{ runtime_root }}/etc/runtime.env", regexp = "^LOG_LEVEL=", line = "LOG_LEVEL={{ log_level }}", create = true }

[[task]]
name = "manifest"
template = { path = "{{ runtime_root }}/MANIFEST", content = "demo-runtime {{ runtime_version }}\n", mode = "0644" }
"##;

/// Write `~/.ssh/id_ed25519(.pub)` and `~/.ssh/known_hosts` under `home`.
pub fn write_home(home: &Path, key: &PrivateKey, sim: &Simulator) -> std::io::Result<()> {
    let ssh = home.join(".ssh");
    std::fs::create_dir_all(&ssh)?;
    let secret = key
        .to_openssh(LineEnding::LF)
        .map_err(std::io::Error::other)?;
    let path = ssh.join("id_ed25519");
    std::fs::write(&path, secret.as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(std::io::Error::other)?;
    std::fs::write(ssh.join("id_ed25519.pub"), format!("{public}\n"))?;
    std::fs::write(ssh.join("known_hosts"), sim.known_hosts())
}
