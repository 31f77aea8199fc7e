//! Every key of the console, in one table: the help popup lists all of it
//! and the footer shows the short hints of the current view, so the two can
//! never disagree.

/// Where a key works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Fleet,
    Groups,
    Node,
    Runs,
    Run,
    Live,
    Agents,
    Top,
    Rollouts,
    Ledger,
    Approvals,
    Reflect,
    AnswerForm,
    Lessons,
    Api,
    Prompt,
    Confirm,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "everywhere",
            Scope::Fleet => "nodes (the fleet table)",
            Scope::Groups => "groups",
            Scope::Node => "node",
            Scope::Runs => "runs (history)",
            Scope::Run => "run detail",
            Scope::Live => "live run",
            Scope::Agents => "agents",
            Scope::Top => "telemetry (:top)",
            Scope::Rollouts => "rollouts (:rollouts)",
            Scope::Ledger => "ledger (:ledger)",
            Scope::Approvals => "approvals (:approvals)",
            Scope::Reflect => "reflections (:reflect)",
            Scope::AnswerForm => "answer form (a in :reflect)",
            Scope::Lessons => "lessons (:lessons)",
            Scope::Api => "api tokens (:api)",
            Scope::Prompt => "command line, filter and exec prompt",
            Scope::Confirm => "confirmation",
        }
    }
}

pub struct KeyHelp {
    pub scope: Scope,
    pub keys: &'static str,
    pub what: &'static str,
    /// Shown in the footer when set.
    pub hint: Option<&'static str>,
}

const fn key(
    scope: Scope,
    keys: &'static str,
    what: &'static str,
    hint: Option<&'static str>,
) -> KeyHelp {
    KeyHelp {
        scope,
        keys,
        what,
        hint,
    }
}

use Scope::*;

pub const KEYMAP: &[KeyHelp] = &[
    key(Global, ":", "command mode (Tab completes)", Some("cmd")),
    key(
        Global,
        "/",
        "filter the fleet: text, key=value, group=NAME",
        Some("filter"),
    ),
    key(Global, "?", "this help", Some("help")),
    key(Global, "Esc", "back / close / clear the filter", None),
    key(Global, "q  Ctrl-C", "quit", Some("quit")),
    key(Global, "↑↓ j k", "move", None),
    key(Global, "PgUp PgDn g G", "page, first, last", None),
    key(Fleet, "Space", "mark / unmark the node", Some("mark")),
    key(Fleet, "a  u", "mark all shown / unmark all", None),
    key(Fleet, "Enter", "open the node", Some("node")),
    key(
        Fleet,
        "x",
        "exec a command on the marked nodes (or this one)",
        Some("exec"),
    ),
    key(
        Fleet,
        "s  S",
        "sort by the next column / reverse",
        Some("sort"),
    ),
    key(
        Fleet,
        "p  i  h",
        "playbook / install / hardening audit on the marked nodes",
        None,
    ),
    key(Groups, "Enter", "show the group's nodes", Some("nodes")),
    key(Node, "Enter", "open the selected run", Some("run")),
    key(Node, "x", "exec a command on this node", Some("exec")),
    key(Runs, "Enter", "open the run", Some("open")),
    key(Runs, "r", "reload from the run store", Some("reload")),
    key(Run, "↑↓", "choose a node; its output is shown", None),
    key(Run, "PgUp PgDn", "scroll the output", Some("scroll")),
    key(
        Global,
        "K",
        "kill switch: :kill AGENT REASON on the marked (or shown) nodes",
        None,
    ),
    key(Live, "c", "cancel the selected node", Some("cancel node")),
    key(Live, "C", "cancel the whole run", Some("cancel run")),
    key(Live, "Enter", "open the finished run", Some("open")),
    key(Agents, "Enter", "the agent on each node", Some("nodes")),
    key(
        Agents,
        "d",
        "deploy its current version on the marked nodes",
        Some("deploy"),
    ),
    key(Agents, "e", "enable it on the marked nodes", Some("enable")),
    key(Agents, "r", "ask the nodes again", Some("reload")),
    key(Top, "Enter", "the node's charts", Some("charts")),
    key(Top, "Esc", "back from the charts", None),
    key(Rollouts, "j k", "select a rollout", None),
    key(
        Rollouts,
        "P",
        "promote: leave the pause or inconclusive gate (asks first)",
        Some("promote"),
    ),
    key(
        Rollouts,
        "A",
        "abort: roll the new version back everywhere (asks first)",
        Some("abort"),
    ),
    key(
        Rollouts,
        "U",
        "undo a finished rollout: its nodes back at once (asks first)",
        Some("undo"),
    ),
    key(Ledger, "j k", "select an entry (its detail below)", None),
    key(Approvals, "j k", "select a request", None),
    key(
        Approvals,
        "a",
        "approve it: sign its plan with your SSH key (asks first)",
        Some("approve"),
    ),
    key(
        Reflect,
        "j k",
        "select a reflection (its checklist below)",
        None,
    ),
    key(Reflect, "a  Enter", "answer it: the form", Some("answer")),
    key(Reflect, "r", "read the store again", Some("reload")),
    key(AnswerForm, "type", "the answer to the current item", None),
    key(
        AnswerForm,
        "↑↓ Enter",
        "choose evidence / cite it or not",
        Some("cite"),
    ),
    key(
        AnswerForm,
        "Tab  Shift-Tab",
        "next / previous item",
        Some("next item"),
    ),
    key(
        AnswerForm,
        "Ctrl-S",
        "sign with your key and commit it (as maestro reflect ID)",
        Some("sign"),
    ),
    key(
        AnswerForm,
        "Esc",
        "close the form (nothing is kept)",
        Some("cancel"),
    ),
    key(
        AnswerForm,
        "Ctrl-E  Ctrl-D",
        "type evidence no list holds (commit:ID, file:PATH, url:…) / drop the last typed",
        Some("evidence"),
    ),
    key(Lessons, "j k", "select a lesson (its evidence below)", None),
    key(
        Lessons,
        "p",
        "how to promote it (a reviewed commit)",
        Some("promote"),
    ),
    key(Lessons, "r", "read the uses again", Some("reload")),
    key(Api, "j k", "select a token", None),
    key(Prompt, "Enter", "run / apply", None),
    key(Prompt, "Tab", "complete the command", None),
    key(Prompt, "Esc", "cancel", None),
    key(Prompt, "Ctrl-U", "clear the line", None),
    key(Confirm, "y", "yes: run exactly what is shown", None),
    key(Confirm, "n  Esc", "no", None),
];

/// `:` commands, for completion and help.
pub const COMMANDS: &[(&str, &str)] = &[
    ("nodes", "the fleet table"),
    ("groups", "groups and their members"),
    ("runs", "run history from the store"),
    ("agents", "agents: versions per node, health, kill switch"),
    (
        "top",
        "live telemetry: CPU, memory, GPU, agent requests, errors, p95",
    ),
    (
        "rollouts",
        "rollouts: steps, weight, nodes per version, gate measurements",
    ),
    (
        "ledger",
        "the evidence ledger: entries, deciding policies, verify status",
    ),
    ("approvals", "jobs held by the two-person rule; a signs"),
    (
        "reflect",
        "reflections operations left (checklists); a answers with evidence",
    ),
    (
        "lessons",
        "lessons in short- and long-term memory, with their uses",
    ),
    (
        "api",
        "the read-only HTTP API: its tokens, who they act as, the store it reads",
    ),
    ("live", "the run in flight (or the last one started here)"),
    ("exec", "exec CMD: run CMD on the marked nodes (asks first)"),
    ("filter", "filter TEXT: same as /"),
    ("play", "run a playbook on the marked nodes: :play NAME"),
    (
        "install",
        "install a profile on the marked nodes: :install PROFILE",
    ),
    (
        "harden",
        "hardening audit of the marked nodes: :harden [BASELINE]",
    ),
    (
        "kill",
        "kill switch: :kill AGENT|all REASON on the marked nodes (type the name to confirm)",
    ),
    ("help", "this help"),
    ("q", "quit"),
    ("quit", "quit"),
];

/// Footer hints: the view's, then the global ones.
pub fn hints(scope: Scope) -> Vec<(&'static str, &'static str)> {
    KEYMAP
        .iter()
        .filter(|k| k.scope == scope)
        .chain(KEYMAP.iter().filter(|k| k.scope == Global))
        .filter_map(|k| k.hint.map(|h| (k.keys, h)))
        .collect()
}
