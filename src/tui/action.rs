//! What a key press asks the console to do. Components turn keys into
//! [`Action`]s; the app turns actions into state changes and engine work.
//!
//! Anything that changes nodes is a [`Pending`] that goes through
//! `Confirm(pending)` (the dialog shows the plan) and `Confirmed(pending)`
//! (the app starts it): gitui's queue pattern. A pending action owns copies
//! of its targets and inputs, taken when it was made, so a table that
//! refreshes or is filtered while the dialog is open never changes what runs.

/// Views reachable with `:name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewId {
    Fleet,
    Groups,
    Node,
    Runs,
    Run,
    Live,
    Agents,
    /// `:top`: live telemetry.
    Top,
    /// `:rollouts`: progressive delivery.
    Rollouts,
    /// `:ledger`: the evidence ledger and its verification.
    Ledger,
    /// `:approvals`: jobs held by the two-person rule.
    Approvals,
    /// `:reflect`: the reflections operations left, and the answer form.
    Reflect,
    /// `:lessons`: lessons in short- and long-term memory.
    Lessons,
    /// `:api`: the read-only HTTP API's tokens and the store it reads.
    Api,
}

/// The kinds of input line at the bottom of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptKind {
    /// `:` command mode.
    Command,
    /// `/` fleet filter.
    Filter,
    /// `x`: the command to exec on these nodes (pinned when the prompt opened).
    Exec { nodes: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The key was used; nothing else to do but redraw.
    Redraw,
    /// `q`, `:q`: quit (asks first while a run is in flight).
    Quit,
    /// `Esc`: close the top popup or go back to the previous view.
    Back,
    Show(ViewId),
    OpenNode(String),
    OpenRun(String),
    /// `?`
    ToggleHelp,
    OpenPrompt(PromptKind),
    /// Close the prompt without doing anything.
    ClosePrompt,
    /// Set the fleet filter (as the operator types, or from the groups view).
    Filter(String),
    /// A `:` command line, submitted.
    Command(String),
    /// Show the plan and ask before anything runs.
    Confirm(Pending),
    /// The operator said yes to exactly this.
    Confirmed(Pending),
    /// The operator said no.
    Dismiss,
    /// `c` in the live view: stop one node.
    CancelNode(String),
    /// `C` in the live view: stop the whole run.
    CancelRun,
    /// Say why a key does nothing here.
    Unavailable(String),
    /// Open `:` command mode with this text already typed (`p` → `:play `).
    OpenCommand(String),
    /// Ask the nodes again what agents they run (`r` in :agents).
    LoadAgents,
    /// `d` / `e` in :agents: deploy or enable the agent on the marked nodes.
    AgentJob(AgentJob, String),
    /// Ctrl-S in the answer form: sign and commit this answer.
    AnswerReflection(Box<crate::tui::components::reflect::Submitted>),
    /// `:kill AGENT REASON`: the kill-switch panel, everything pinned.
    OpenKill(KillPlan),
    /// The agent's name was typed: engage and stop exactly this.
    KillConfirmed(KillPlan),
    /// Close the kill-switch panel (a kill already started runs on).
    CloseKill,
}

/// What `d` and `e` do to an agent in the agents view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentJob {
    Deploy,
    Enable,
}

/// What `P`, `A` and `U` do to the selected rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutVerb {
    Promote,
    Abort,
    Undo,
}

impl RolloutVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutVerb::Promote => "promote",
            RolloutVerb::Abort => "abort",
            RolloutVerb::Undo => "undo",
        }
    }
}

/// A rollout verb, pinned to the rollout (and its nodes) when the key was pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    pub verb: RolloutVerb,
    pub id: String,
    pub agent: String,
    pub nodes: Vec<String>,
    /// What it does, as shown.
    pub summary: String,
}

/// A kill switch to engage, pinned when the panel opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillPlan {
    /// An agent of the registry, or `all`.
    pub agent: String,
    pub reason: String,
    /// How the scope was chosen, as shown (`all nodes`, `3 marked nodes`).
    pub scope: String,
    /// Node names, in SoT order.
    pub nodes: Vec<String>,
    /// Whether `nodes` is the whole fleet (the kill switch then has no limit).
    pub whole_fleet: bool,
    /// The id the kill run will have.
    pub run_id: String,
}

/// Work that needs the operator's confirmation, with everything it will use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Exec(ExecPlan),
    /// `P`/`A`/`U` in :rollouts: a verb on exactly this rollout.
    Rollout(RolloutPlan),
    /// Quit while a run is in flight (the run is cancelled).
    QuitDuringRun,
    /// `a` in :approvals: sign exactly this request with the operator's key.
    Approve(ApprovePlan),
}

/// One approval request as it was shown when `a` was pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovePlan {
    pub id: String,
    pub summary: String,
    pub requested_by: String,
    /// The plan digest the signature will cover.
    pub plan: String,
    pub valid: usize,
    pub quorum: usize,
}

/// Engine work on a fixed set of nodes: an ad-hoc command, or a playbook,
/// a profile install or a hardening audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecPlan {
    /// Node names, in SoT order, copied when the plan was made.
    pub nodes: Vec<String>,
    /// What runs, as shown to the operator (the command itself for `Job::Command`).
    pub command: String,
    pub job: Job,
}

/// Which engine function runs the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// `maestro exec`: `command` through the login shell.
    Command,
    /// `maestro play NAME --yes`.
    Playbook(String),
    /// `maestro install --profile NAME --yes`.
    Install(String),
    /// `maestro harden --audit --baseline NAME` (changes nothing).
    HardenAudit(String),
    /// `maestro deploy AGENT --yes` (its current version).
    Deploy(String),
    /// `maestro enable AGENT --yes`.
    Enable(String),
}
