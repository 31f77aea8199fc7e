//! Running the kill switch's node script on every target node, in parallel,
//! through the fleet executor.

use std::collections::HashMap;
use std::sync::Arc;

use super::script::{self, Marker};
use super::{ALL, Engaged};
use crate::bus::EventSink;
use crate::fleet::run::outcome_to_result;
use crate::fleet::ssh::ConnectSpec;
use crate::fleet::ssh::Request;
use crate::fleet::{Cancel, RunOptions, RunReport, run_nodes};
use crate::sot::Sot;

/// The script each of `nodes` (SoT indices) runs to kill (or release)
/// `agent`. A kill needs the engaged state in the SoT: the marker records
/// who engaged it, when and why.
pub fn node_scripts(
    sot: &Sot,
    agent: &str,
    release: bool,
    nodes: &[usize],
) -> Result<HashMap<String, String>, String> {
    let all = agent == ALL;
    if !all && !sot.agents.contains_key(agent) {
        let hint = crate::diag::suggest(agent, sot.agents.keys().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!("there is no agent `{agent}`{hint} in the SoT"));
    }
    let agents: Vec<String> = if all {
        sot.agents.keys().cloned().collect()
    } else {
        vec![agent.to_string()]
    };
    let mut scripts = HashMap::new();
    if release {
        // Markers stay where another engaged kill switch still holds the node.
        let others: Vec<&Engaged> = sot.killswitch.iter().filter(|e| e.agent != agent).collect();
        let held: Vec<(String, Vec<usize>)> = others
            .iter()
            .map(|e| (e.agent.clone(), e.nodes(sot)))
            .collect();
        for &i in nodes {
            let keep: Vec<String> = held
                .iter()
                .filter(|(_, ns)| ns.contains(&i))
                .map(|(a, _)| a.clone())
                .collect();
            scripts.insert(
                sot.nodes[i].name.clone(),
                script::release(&agents, all, &keep),
            );
        }
        return Ok(scripts);
    }
    let Some(engaged) = sot.killswitch.iter().find(|e| e.agent == agent) else {
        return Err(format!(
            "the kill switch for `{agent}` is not engaged in the SoT: `maestro kill {agent} --reason \"...\"` engages it and stops the agent"
        ));
    };
    let marker = Marker {
        agent: agent.to_string(),
        by: engaged.by.clone(),
        at: crate::freeze::stamp(&engaged.at),
        reason: engaged.reason.clone(),
    };
    let text = script::kill(&agents, all, &marker);
    for &i in nodes {
        scripts.insert(sot.nodes[i].name.clone(), text.clone());
    }
    Ok(scripts)
}

/// Run each node's script (sent on stdin, as root) on every node of `specs`.
pub async fn run(
    specs: Vec<ConnectSpec>,
    scripts: Arc<HashMap<String, String>>,
    opts: RunOptions,
    events: EventSink,
    cancel: Cancel,
) -> RunReport {
    run_nodes(specs, opts, events, cancel, move |session, ctx| {
        let scripts = scripts.clone();
        async move {
            let script = scripts.get(&ctx.node).map(String::as_str).unwrap_or("");
            let command = if ctx.login_user == "root" {
                "sh -s"
            } else {
                "sudo -n sh -s"
            };
            let request = Request {
                stdin_file: None,
                command,
                stdin: script.as_bytes(),
                output_events: false,
                sudo: None,
            };
            let outcome = session
                .run(request, &ctx.limits, &ctx.cancel, &ctx.events, &mut |_| {})
                .await;
            outcome_to_result(&ctx.node, outcome)
        }
    })
    .await
}
