//! The console's state and its reactions: keys become actions, actions
//! change state and queue [`Effect`]s (store reads, engine runs) that the
//! event loop in `runtime` carries out; their results come back as
//! [`Msg`]s. Nothing here blocks, touches the disk or the network, so the
//! whole app can be driven and drawn in tests without a terminal. Drawing
//! the frame is in `frame.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod frame;

use super::action::{Action, AgentJob, ExecPlan, Job, KillPlan, Pending, PromptKind, ViewId};
use super::components::Loadable;
use super::components::agents::AgentsView;
use super::components::api::ApiView;
use super::components::approvals::ApprovalsView;
use super::components::confirm::ConfirmDialog;
use super::components::fleet::FleetView;
use super::components::groups::GroupsView;
use super::components::help::HelpPopup;
use super::components::kill::KillPanel;
use super::components::ledger::{LedgerData, LedgerView};
use super::components::lessons::LessonsView;
use super::components::live::LiveView;
use super::components::node::{NodeCompliance, NodeView};
use super::components::prompt::Prompt;
use super::components::reflect::{ReflectData, ReflectView, Submitted};
use super::components::rollouts::RolloutsView;
use super::components::run::{RunDetail, RunView};
use super::components::runs::RunsView;
use super::components::telemetry::TelemetryView;
use super::keys::COMMANDS;
use super::text::count;
use crate::bus::Envelope;
use crate::fleet::{Cancel, Event, NodeResult};
use crate::killswitch::Engaged;
pub use crate::ops::ExecPolicy;
use crate::ops::{Plan, Refusal};
use crate::sot::Sot;
use crate::store::{LastResult, RunRow};

/// A job's plan as the operations layer made it, and the gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// None when the gate refused the job (nothing was planned).
    pub plan: Option<Plan>,
    pub refusal: Option<Refusal>,
    /// The policies' decision as the dialog shows it before `y`: who may,
    /// by which policies (none when the SoT has no policies).
    pub policy: Option<String>,
    /// The long-term lessons in the job's scope, one line each.
    pub lessons: Vec<String>,
}

impl Planned {
    /// The line of a policy answer: "allowed for ada by a, b" or the
    /// denial's count (its reasons are the refusal's).
    pub fn policy_line(answer: &crate::policy::Answer) -> String {
        let who = answer.actor.label();
        if answer.allowed() {
            let by: Vec<&str> = answer.deciding().into_iter().collect();
            format!("allowed for {who} by {}", by.join(", "))
        } else {
            let denied = answer.denied().count();
            let mut by: Vec<&str> = answer
                .denied()
                .flat_map(|n| n.policies.iter().map(String::as_str))
                .collect();
            by.sort();
            by.dedup();
            format!(
                "denied for {who} on {denied} of {} nodes{}",
                answer.nodes.len(),
                if by.is_empty() {
                    " (no policy permits it)".to_string()
                } else {
                    format!(" by {}", by.join(", "))
                }
            )
        }
    }
}

/// What the header and the dialogs say about where the console works.
#[derive(Debug, Clone)]
pub struct Info {
    /// `maestro`, or `maestro demo`.
    pub title: String,
    /// The SoT directory as shown.
    pub sot: String,
    /// Short id of the SoT's git HEAD.
    pub head: Option<String>,
    /// The run store as shown.
    pub store: String,
    pub policy: ExecPolicy,
    /// How runs are made (forks, timeouts), shown in the confirmation.
    pub run_details: Vec<String>,
}

/// Work for the event loop.
pub enum Effect {
    LoadLastResults,
    LoadRuns,
    LoadRun(String),
    LoadNodeHistory(String),
    /// What agents the nodes run (`agent status` on the fleet).
    LoadAgents,
    /// Start streaming telemetry from the fleet (once per console).
    StartTelemetry,
    /// Prepare the job, ask the gate, and plan it (check mode) for the dialog.
    Plan(ExecPlan),
    /// Apply it; its run has this id.
    StartExec {
        plan: ExecPlan,
        cancel: Cancel,
        run_id: String,
    },
    /// Engage the kill switch in the SoT, then stop the agent on the
    /// plan's nodes (its run has the plan's id).
    Kill(KillPlan),
    /// Read every rollout's overview from the store.
    LoadRollouts,
    /// Run a rollout verb (promote, abort, undo) as `maestro rollout` would.
    Rollout(crate::tui::action::RolloutPlan),
    /// Read the ledger's newest entries and verify it.
    LoadLedger,
    /// Read the pending approval requests.
    LoadApprovals,
    /// Sign this request with the operator's key, as `maestro approve`.
    Approve(crate::tui::action::ApprovePlan),
    /// Read the reflections, the checklists and the evidence to cite.
    LoadReflections,
    /// Read the lessons with their uses.
    LoadLessons,
    /// Sign and commit this answer, as `maestro reflect ID --answers`.
    AnswerReflection(Submitted),
}

/// Results of background work and engine events, for the app.
#[derive(Debug)]
pub enum Msg {
    LastResults(Result<HashMap<String, LastResult>, String>),
    Runs(Result<Vec<RunRow>, String>),
    Run {
        id: String,
        result: Result<Option<RunDetail>, String>,
    },
    NodeHistory {
        node: String,
        result: Result<Vec<(RunRow, NodeResult)>, String>,
    },
    /// The node's recorded hardening audits (newest first) and its first.
    NodeCompliance {
        node: String,
        result: Result<NodeCompliance, String>,
    },
    /// The plan of the job the dialog shows (or why it could not be made).
    Planned {
        plan: ExecPlan,
        result: Result<Planned, String>,
    },
    Engine(Envelope),
    /// The run task ended; with the reason when the run could not start.
    RunEnded {
        error: Option<String>,
    },
    /// Something the operator should know (the store failed, ssh_config warnings).
    Warning(String),
    Agents(Result<Vec<crate::agent::AgentOnNode>, String>),
    Rollouts(Result<Vec<crate::rollout::view::Overview>, String>),
    Ledger(Result<LedgerData, String>),
    Approvals(Result<Vec<crate::approval::Pending>, String>),
    /// An approval from :approvals was signed (what it said) or refused.
    Approved(Result<String, String>),
    Reflections(Result<ReflectData, String>),
    Lessons(Result<Vec<crate::reflect::lesson::LessonStatus>, String>),
    /// An answer from the form was committed (what it said) or refused.
    ReflectionAnswered(Result<String, String>),
    /// A rollout verb from :rollouts ended (what it said).
    RolloutDone(Result<String, String>),
    /// The kill switch was engaged in the SoT (with its commit, when one
    /// was made), or could not be.
    KillEngaged(Result<(Engaged, Option<String>), String>),
    /// The kill task ended; with the reason when its run could not start.
    KillEnded {
        error: Option<String>,
    },
    /// The telemetry at this second (or why it could not start).
    Telemetry(Result<Arc<crate::telemetry::summary::Summary>, String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

/// How often the live views (:runs, :rollouts) read the store again: the
/// latency with which another operator's run or rollout appears.
pub const LIVE_REFRESH_MS: i64 = 1000;

pub struct App {
    info: Info,
    sot: Arc<Sot>,
    /// Views from the bottom (always the fleet) to the one shown.
    stack: Vec<ViewId>,
    fleet: FleetView,
    groups: GroupsView,
    runs: RunsView,
    agents: AgentsView,
    telemetry: TelemetryView,
    rollouts: RolloutsView,
    rollouts_loaded_ms: i64,
    /// When :runs last asked the store (it refreshes while shown).
    runs_loaded_ms: i64,
    ledger: LedgerView,
    approvals: ApprovalsView,
    reflect: ReflectView,
    lessons: LessonsView,
    api: ApiView,
    telemetry_started: bool,
    run: Option<(String, Loadable<RunView>)>,
    node: Option<NodeView>,
    live: Option<LiveView>,
    prompt: Option<Prompt>,
    confirm: Option<ConfirmDialog>,
    kill: Option<KillPanel>,
    /// The engaged kill switches, as the SoT says (and as kills from here
    /// engage them): the header shows them.
    killswitch: Vec<Engaged>,
    help: Option<HelpPopup>,
    message: Option<(Level, String)>,
    /// The run in flight started here.
    cancel: Option<Cancel>,
    effects: Vec<Effect>,
    quit: bool,
    now_ms: i64,
    /// Where run ids come from (fixed in tests).
    run_ids: fn() -> String,
}

impl App {
    pub fn new(info: Info, sot: Arc<Sot>, now_ms: i64) -> App {
        let mut app = App {
            fleet: FleetView::new(&sot),
            groups: GroupsView::new(&sot),
            runs: RunsView::new(info.store.clone()),
            agents: AgentsView::new(&sot),
            telemetry: TelemetryView::new(),
            telemetry_started: false,
            rollouts: RolloutsView::new(),
            rollouts_loaded_ms: 0,
            runs_loaded_ms: 0,
            ledger: LedgerView::new(),
            approvals: ApprovalsView::new(),
            reflect: ReflectView::new(),
            lessons: LessonsView::new(),
            api: ApiView::new(&sot, info.store.clone()),
            info,
            sot,
            stack: vec![ViewId::Fleet],
            run: None,
            node: None,
            live: None,
            prompt: None,
            confirm: None,
            kill: None,
            killswitch: Vec::new(),
            help: None,
            message: None,
            cancel: None,
            effects: vec![
                Effect::LoadLastResults,
                Effect::LoadRuns,
                Effect::LoadReflections,
            ],
            quit: false,
            now_ms: 0,
            run_ids: crate::fleet::event::new_run_id,
        };
        app.killswitch = app.sot.killswitch.clone();
        app.set_now(now_ms);
        if let ExecPolicy::Refused(why) = &app.info.policy {
            app.message = Some((Level::Warn, format!("read-only: {why}")));
        }
        app
    }

    /// Use `ids` for the ids of runs started here (tests fix them).
    pub fn set_run_ids(&mut self, ids: fn() -> String) {
        self.run_ids = ids;
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
        // :rollouts and :runs are live: read the store again about once a
        // second, so with a team's shared store the runs and rollouts other
        // operators start appear within LIVE_REFRESH_MS.
        if self.view() == ViewId::Rollouts && now_ms - self.rollouts_loaded_ms >= LIVE_REFRESH_MS {
            self.rollouts_loaded_ms = now_ms;
            self.effects.push(Effect::LoadRollouts);
        }
        if self.view() == ViewId::Runs && now_ms - self.runs_loaded_ms >= LIVE_REFRESH_MS {
            self.runs_loaded_ms = now_ms;
            self.effects.push(Effect::LoadRuns);
        }
        self.fleet.set_now(now_ms);
        self.runs.set_now(now_ms);
        self.approvals.set_now(now_ms);
        self.reflect.set_now(now_ms);
        if let Some(n) = &mut self.node {
            n.set_now(now_ms);
        }
        if let Some((_, Loadable::Loaded(r))) = &mut self.run {
            r.set_now(now_ms);
        }
        if let Some(l) = &mut self.live {
            l.set_now(now_ms);
        }
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Quit without asking (the terminal went away): a run in flight is
    /// cancelled.
    pub fn quit_now(&mut self) {
        if let Some(c) = &self.cancel {
            c.cancel_all();
        }
        self.quit = true;
    }

    /// Whether a run started here has not finished yet.
    pub fn run_in_flight(&self) -> bool {
        self.live.as_ref().is_some_and(|l| l.in_flight())
    }

    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn view(&self) -> ViewId {
        *self.stack.last().unwrap_or(&ViewId::Fleet)
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.message = Some((level, text.into()));
    }

    // ---- keys -------------------------------------------------------------

    pub fn handle_key(&mut self, key: KeyEvent) {
        self.message = None;
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            let action = match &self.confirm {
                Some(c) if c.pending == Pending::QuitDuringRun => {
                    Action::Confirmed(Pending::QuitDuringRun)
                }
                _ => Action::Quit,
            };
            self.dispatch(action);
            return;
        }
        let action = if let Some(c) = &mut self.confirm {
            c.handle_key(key)
        } else if let Some(k) = &mut self.kill {
            k.handle_key(key)
        } else if let Some(h) = &mut self.help {
            h.handle_key(key)
        } else if let Some(p) = &mut self.prompt {
            let action = p.handle_key(key);
            if p.finished && !matches!(action, Some(Action::ClosePrompt)) {
                self.prompt = None;
            }
            action
        } else {
            let used = match self.view() {
                ViewId::Fleet => self.fleet.handle_key(key),
                ViewId::Groups => self.groups.handle_key(key),
                ViewId::Runs => self.runs.handle_key(key),
                ViewId::Agents => self.agents.handle_key(key),
                ViewId::Top => self.telemetry.handle_key(key),
                ViewId::Rollouts => self.rollouts.handle_key(key),
                ViewId::Ledger => self.ledger.handle_key(key),
                ViewId::Approvals => self.approvals.handle_key(key),
                ViewId::Reflect => self.reflect.handle_key(key),
                ViewId::Lessons => self.lessons.handle_key(key),
                ViewId::Api => self.api.handle_key(key),
                ViewId::Run => match &mut self.run {
                    Some((_, Loadable::Loaded(r))) => r.handle_key(key),
                    _ => None,
                },
                ViewId::Node => self.node.as_mut().and_then(|n| n.handle_key(key)),
                ViewId::Live => self.live.as_mut().and_then(|l| l.handle_key(key)),
            };
            used.or_else(|| self.global_key(key))
        };
        if let Some(action) = action {
            self.dispatch(action);
        }
    }

    fn global_key(&self, key: KeyEvent) -> Option<Action> {
        Some(match key.code {
            KeyCode::Char(':') => Action::OpenPrompt(PromptKind::Command),
            KeyCode::Char('/') => Action::OpenPrompt(PromptKind::Filter),
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('K') => Action::OpenCommand("kill ".into()),
            KeyCode::Esc => Action::Back,
            _ => Action::Unavailable(format!(
                "{} does nothing in the {} view; ? lists the keys",
                key_name(key),
                view_name(self.view())
            )),
        })
    }

    // ---- actions ----------------------------------------------------------

    pub fn dispatch(&mut self, action: Action) {
        match action {
            Action::Redraw => {}
            Action::Quit => {
                if self.run_in_flight() {
                    self.confirm = Some(ConfirmDialog::new(Pending::QuitDuringRun, Vec::new()));
                } else {
                    self.quit = true;
                }
            }
            Action::Back => {
                if self.view() == ViewId::Agents && self.agents.back() {
                    // closed the per-node detail
                } else if self.view() == ViewId::Top && self.telemetry.back() {
                    // closed the node's charts
                } else if self.stack.len() > 1 {
                    self.stack.pop();
                } else {
                    self.say(Level::Info, "this is the first view: q quits");
                }
            }
            Action::Show(view) => self.show(view),
            Action::AnswerReflection(submitted) => {
                if let ExecPolicy::Refused(why) = &self.info.policy {
                    let why = format!("read-only: {why}");
                    self.say(Level::Warn, why);
                } else if self.reflect.signing {
                    self.say(Level::Info, "still signing the last answer: wait for it");
                } else {
                    self.reflect.signing = true;
                    self.say(
                        Level::Info,
                        format!("signing and committing {}…", submitted.id),
                    );
                    self.effects.push(Effect::AnswerReflection(*submitted));
                }
            }
            Action::LoadAgents => {
                self.agents.set_status(Loadable::Loading);
                self.effects.push(Effect::LoadAgents);
            }
            Action::AgentJob(kind, agent) => {
                let nodes = self.fleet.selection();
                let action = if nodes.is_empty() {
                    Action::Unavailable(
                        "no node to work on: mark nodes in :nodes (Space), then come back".into(),
                    )
                } else {
                    let (command, job) = match kind {
                        AgentJob::Deploy => (format!("deploy {agent}"), Job::Deploy(agent)),
                        AgentJob::Enable => (format!("enable {agent}"), Job::Enable(agent)),
                    };
                    Action::Confirm(Pending::Exec(ExecPlan {
                        nodes,
                        command,
                        job,
                    }))
                };
                self.dispatch(action);
            }
            Action::OpenNode(name) => match self.sot.node(&name) {
                Some(node) => {
                    self.node = Some(NodeView::new(node.clone(), self.now_ms));
                    self.effects.push(Effect::LoadNodeHistory(name));
                    self.push(ViewId::Node);
                }
                None => self.say(Level::Warn, format!("{name} is not in the SoT")),
            },
            Action::OpenRun(id) => {
                self.run = Some((id.clone(), Loadable::Loading));
                self.effects.push(Effect::LoadRun(id));
                self.push(ViewId::Run);
            }
            Action::ToggleHelp => {
                self.help = match self.help {
                    Some(_) => None,
                    None => Some(HelpPopup::default()),
                }
            }
            Action::OpenPrompt(kind) => self.open_prompt(kind),
            Action::OpenCommand(text) => {
                self.prompt = Some(Prompt::new(PromptKind::Command, &text))
            }
            Action::ClosePrompt => {
                if let Some(p) = self.prompt.take()
                    && p.kind == PromptKind::Filter
                {
                    self.fleet.set_filter(&p.before);
                }
            }
            Action::Filter(text) => {
                self.fleet.set_filter(&text);
                if self.view() != ViewId::Fleet {
                    self.stack = vec![ViewId::Fleet];
                }
            }
            Action::Command(line) => self.command(&line),
            Action::Confirm(pending) => self.confirm(pending),
            Action::Confirmed(pending) => {
                self.confirm = None;
                match pending {
                    Pending::Exec(plan) => self.start_exec(plan),
                    Pending::Rollout(plan) => {
                        self.say(Level::Info, format!("{}: running…", plan.summary));
                        self.effects.push(Effect::Rollout(plan));
                    }
                    Pending::QuitDuringRun => {
                        if let Some(c) = &self.cancel {
                            c.cancel_all();
                        }
                        self.quit = true;
                    }
                    Pending::Approve(plan) => {
                        self.say(Level::Info, format!("{}: signing…", plan.id));
                        self.effects.push(Effect::Approve(plan));
                    }
                }
            }
            Action::Dismiss => {
                if let Some(c) = self.confirm.take()
                    && matches!(c.pending, Pending::Exec(_))
                {
                    self.say(Level::Info, "cancelled: nothing ran");
                }
            }
            Action::CancelNode(node) => {
                if let (Some(c), Some(l)) = (&self.cancel, &mut self.live) {
                    c.cancel_node(&node);
                    l.note_cancel(&node);
                    self.say(Level::Info, format!("cancelling {node}"));
                }
            }
            Action::CancelRun => {
                if let (Some(c), Some(l)) = (&self.cancel, &mut self.live) {
                    c.cancel_all();
                    l.note_cancel_all();
                    self.say(Level::Info, "cancelling the run: stopping remote commands");
                }
            }
            Action::Unavailable(why) => self.say(Level::Warn, why),
            Action::OpenKill(plan) => {
                if let ExecPolicy::Refused(why) = &self.info.policy {
                    self.say(Level::Warn, format!("read-only: {why}"));
                    return;
                }
                if self.kill.as_ref().is_some_and(|k| k.follows().is_some()) {
                    self.say(
                        Level::Warn,
                        "a kill is shown: Esc closes it first (it runs on either way)",
                    );
                    return;
                }
                self.kill = Some(KillPanel::new(plan));
            }
            Action::KillConfirmed(plan) => {
                if let Some(k) = &mut self.kill {
                    k.started();
                }
                self.say(
                    Level::Warn,
                    format!(
                        "kill switch: stopping {} on {}",
                        plan.agent,
                        count(plan.nodes.len(), "node")
                    ),
                );
                self.effects.push(Effect::Kill(plan));
            }
            Action::CloseKill => {
                if let Some(k) = self.kill.take()
                    && k.follows().is_none()
                {
                    self.say(Level::Info, "cancelled: no kill switch was engaged");
                }
            }
        }
    }

    /// `:kill AGENT|all REASON` on the marked (or shown) nodes.
    fn kill_plan(&self, rest: &str) -> Action {
        let (agent, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let (agent, reason) = (agent.trim(), reason.trim());
        let agents: Vec<&str> = self.sot.agents.keys().map(String::as_str).collect();
        if agent.is_empty() || reason.is_empty() {
            return Action::Unavailable(format!(
                "usage: :kill AGENT|all REASON (on the marked nodes); agents: {}",
                agents.join(", ")
            ));
        }
        if agent != crate::killswitch::ALL && !agents.contains(&agent) {
            let hint = crate::diag::suggest(agent, agents.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Action::Unavailable(format!("no agent `{agent}`{hint}"));
        }
        let nodes = self.fleet.selection();
        if nodes.is_empty() {
            return Action::Unavailable("no node to kill on: none is shown or marked".into());
        }
        let whole_fleet = nodes.len() == self.sot.nodes.len();
        let scope = if whole_fleet {
            "all nodes".to_string()
        } else if self.fleet.marked_count() > 0 {
            "the marked nodes".to_string()
        } else {
            "the nodes shown".to_string()
        };
        Action::OpenKill(KillPlan {
            agent: agent.to_string(),
            reason: reason.to_string(),
            scope,
            nodes,
            whole_fleet,
            run_id: (self.run_ids)(),
        })
    }

    /// The engaged kill switches, for the header.
    pub fn killswitch(&self) -> &[Engaged] {
        &self.killswitch
    }

    fn push(&mut self, view: ViewId) {
        if self.view() != view {
            self.stack.push(view);
        }
    }

    /// `:name` views are top-level: back from them is the fleet.
    fn show(&mut self, view: ViewId) {
        match view {
            ViewId::Live if self.live.is_none() => {
                self.say(
                    Level::Warn,
                    "no run started in this session yet: mark nodes in :nodes and press x",
                );
                return;
            }
            ViewId::Runs => {
                self.runs_loaded_ms = self.now_ms;
                self.effects.push(Effect::LoadRuns);
            }
            ViewId::Agents => {
                self.agents.set_status(Loadable::Loading);
                self.effects.push(Effect::LoadAgents);
            }
            ViewId::Rollouts => {
                self.rollouts_loaded_ms = self.now_ms;
                self.effects.push(Effect::LoadRollouts);
            }
            ViewId::Ledger => self.effects.push(Effect::LoadLedger),
            ViewId::Approvals => self.effects.push(Effect::LoadApprovals),
            ViewId::Reflect => self.effects.push(Effect::LoadReflections),
            ViewId::Lessons => self.effects.push(Effect::LoadLessons),
            ViewId::Top if !self.telemetry_started => {
                self.telemetry_started = true;
                self.effects.push(Effect::StartTelemetry);
            }
            ViewId::Node | ViewId::Run => return,
            _ => {}
        }
        self.stack = vec![ViewId::Fleet];
        self.push(view);
    }

    fn exec_refusal(&self) -> Option<String> {
        if let ExecPolicy::Refused(why) = &self.info.policy {
            return Some(format!("read-only: {why}"));
        }
        if self.run_in_flight() {
            return Some(
                "a run is in flight: wait for it, or cancel it in :live (C), before starting another"
                    .into(),
            );
        }
        None
    }

    fn open_prompt(&mut self, kind: PromptKind) {
        match &kind {
            PromptKind::Exec { .. } => {
                if let Some(why) = self.exec_refusal() {
                    self.say(Level::Warn, why);
                    return;
                }
                self.prompt = Some(Prompt::new(kind, ""));
            }
            PromptKind::Filter => {
                self.stack = vec![ViewId::Fleet];
                self.prompt = Some(Prompt::new(kind, self.fleet.filter_text()));
            }
            PromptKind::Command => self.prompt = Some(Prompt::new(kind, "")),
        }
    }

    fn command(&mut self, line: &str) {
        let line = line.trim();
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let action = match word {
            "" => return,
            "nodes" => Action::Show(ViewId::Fleet),
            "groups" => Action::Show(ViewId::Groups),
            "runs" => Action::Show(ViewId::Runs),
            "agents" => Action::Show(ViewId::Agents),
            "top" => Action::Show(ViewId::Top),
            "rollouts" => Action::Show(ViewId::Rollouts),
            "ledger" => Action::Show(ViewId::Ledger),
            "approvals" => Action::Show(ViewId::Approvals),
            "reflect" => Action::Show(ViewId::Reflect),
            "lessons" => Action::Show(ViewId::Lessons),
            "api" | "tokens" => Action::Show(ViewId::Api),
            "live" => Action::Show(ViewId::Live),
            "help" => Action::ToggleHelp,
            "q" | "quit" => Action::Quit,
            "filter" => Action::Filter(rest.to_string()),
            "exec" if rest.is_empty() => {
                Action::Unavailable("usage: :exec COMMAND (runs on the marked nodes)".into())
            }
            "exec" => {
                let nodes = self.fleet.selection();
                if nodes.is_empty() {
                    Action::Unavailable("no node to exec on: none is shown or marked".into())
                } else {
                    Action::Confirm(Pending::Exec(ExecPlan {
                        nodes,
                        command: rest.to_string(),
                        job: Job::Command,
                    }))
                }
            }
            "play" | "install" | "harden" => self.job_plan(word, rest),
            "kill" => self.kill_plan(rest),
            other => {
                let near = COMMANDS
                    .iter()
                    .map(|(c, _)| *c)
                    .filter(|c| c.len() > 1)
                    .min_by_key(|c| strsim::levenshtein(c, other))
                    .filter(|c| strsim::levenshtein(c, other) <= 2)
                    .map(|c| format!(" (did you mean :{c}?)"))
                    .unwrap_or_default();
                Action::Unavailable(format!(
                    "unknown command :{other}{near}; Tab completes, ? lists the commands"
                ))
            }
        };
        self.dispatch(action);
    }

    /// `:play NAME`, `:install PROFILE`, `:harden [BASELINE]` on the marked
    /// (or shown) nodes: checked against the SoT, then confirmed like exec.
    fn job_plan(&self, word: &str, name: &str) -> Action {
        let sot = &self.sot;
        let (known, label): (Vec<String>, &str) = match word {
            "play" => (sot.playbooks.clone(), "playbook"),
            "install" => (sot.profiles.keys().cloned().collect(), "profile"),
            _ => (sot.baselines.clone(), "hardening baseline"),
        };
        let name = if word == "harden" && name.is_empty() {
            crate::harden::default_name(sot)
        } else {
            name.to_string()
        };
        if name.is_empty() {
            return Action::Unavailable(format!(
                "usage: :{word} NAME; {label}s: {}",
                known.join(", ")
            ));
        }
        // A playbook may also be a file, given as a path (`./site.toml`).
        let is_path = word == "play" && name.contains('/');
        if !is_path && !known.contains(&name) {
            return Action::Unavailable(format!(
                "no {label} `{name}`; {label}s: {}",
                known.join(", ")
            ));
        }
        let nodes = self.fleet.selection();
        if nodes.is_empty() {
            return Action::Unavailable(format!("no node to {word} on: none is shown or marked"));
        }
        let (command, job) = match word {
            "play" => (format!("play {name}"), Job::Playbook(name)),
            "install" => (format!("install --profile {name}"), Job::Install(name)),
            _ => (
                format!("harden --audit --baseline {name}"),
                Job::HardenAudit(name),
            ),
        };
        Action::Confirm(Pending::Exec(ExecPlan {
            nodes,
            command,
            job,
        }))
    }

    fn confirm(&mut self, pending: Pending) {
        if let Pending::Exec(plan) = &pending {
            if let Some(why) = self.exec_refusal() {
                self.say(Level::Warn, why);
                return;
            }
            if plan.nodes.is_empty() {
                self.say(Level::Warn, "no node to exec on");
                return;
            }
        }
        if let Pending::Exec(plan) = &pending {
            self.effects.push(Effect::Plan(plan.clone()));
        }
        self.confirm = Some(ConfirmDialog::new(pending, self.info.run_details.clone()));
    }

    fn start_exec(&mut self, plan: ExecPlan) {
        if let Some(why) = self.exec_refusal() {
            self.say(Level::Warn, why);
            return;
        }
        let cancel = Cancel::new();
        let run_id = (self.run_ids)();
        self.live = Some(LiveView::new(
            &run_id,
            &plan.nodes,
            &plan.command,
            self.now_ms,
        ));
        self.cancel = Some(cancel.clone());
        self.stack = vec![ViewId::Fleet, ViewId::Live];
        self.say(
            Level::Info,
            format!("started on {}", count(plan.nodes.len(), "node")),
        );
        self.effects.push(Effect::StartExec {
            plan,
            cancel,
            run_id,
        });
    }

    // ---- messages from the loop -------------------------------------------

    pub fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::LastResults(Ok(last)) => self.fleet.set_last_results(&last),
            Msg::LastResults(Err(e)) => self.say(Level::Warn, format!("run store: {e}")),
            Msg::Runs(r) => self.runs.set_runs(loadable(r)),
            Msg::Agents(r) => self.agents.set_status(loadable(r)),
            Msg::Rollouts(r) => self.rollouts.set(r),
            Msg::Ledger(r) => self.ledger.set(r),
            Msg::Approvals(r) => self.approvals.set(r),
            Msg::Reflections(r) => self.reflect.set(r),
            Msg::Lessons(r) => self.lessons.set(r),
            Msg::ReflectionAnswered(r) => {
                self.reflect.signing = false;
                match r {
                    Ok(m) => {
                        self.reflect.close_form();
                        self.say(Level::Info, m);
                    }
                    // The form stays open with what was typed: fix and sign again.
                    Err(e) => self.say(Level::Warn, e),
                }
                self.effects.push(Effect::LoadReflections);
            }
            Msg::Approved(r) => {
                match r {
                    Ok(m) => self.say(Level::Info, m),
                    Err(e) => self.say(Level::Warn, e),
                }
                self.effects.push(Effect::LoadApprovals);
            }
            Msg::RolloutDone(r) => {
                match r {
                    Ok(m) => self.say(Level::Info, m),
                    Err(e) => self.say(Level::Warn, e),
                }
                self.effects.push(Effect::LoadRollouts);
            }
            Msg::Telemetry(Ok(s)) => {
                self.fleet.set_live(&s);
                self.telemetry.set_summary(s);
            }
            Msg::Telemetry(Err(e)) => self.telemetry.set_error(e),
            Msg::Run { id, result } => {
                if let Some((shown, state)) = &mut self.run
                    && *shown == id
                {
                    *state = match result {
                        Ok(Some(detail)) => Loadable::Loaded(RunView::new(detail, self.now_ms)),
                        Ok(None) => Loadable::Failed(format!("no run {id} in the run store")),
                        Err(e) => Loadable::Failed(e),
                    };
                }
            }
            Msg::NodeHistory { node, result } => {
                if let Some(n) = &mut self.node
                    && n.name() == node
                {
                    n.set_history(loadable(result));
                }
            }
            Msg::NodeCompliance { node, result } => {
                if let Some(n) = &mut self.node
                    && n.name() == node
                {
                    n.set_compliance(loadable(result));
                }
            }
            Msg::Planned { plan, result } => {
                if let Some(c) = &mut self.confirm {
                    c.set_plan(&plan, result);
                }
            }
            Msg::Engine(event) => self.on_event(event),
            Msg::RunEnded { error } => {
                // A finished job may have left a reflection: the header counts them.
                self.effects.push(Effect::LoadReflections);
                if let Some(e) = error {
                    if let Some(l) = &mut self.live {
                        l.failed_to_start(e.clone());
                    }
                    self.say(Level::Error, format!("the run could not start: {e}"));
                    self.cancel = None;
                }
            }
            Msg::Warning(w) => self.say(Level::Warn, w),
            Msg::KillEngaged(result) => {
                let shown = result
                    .as_ref()
                    .map(|(e, commit)| match commit {
                        Some(c) => format!("commit {}", &c[..c.len().min(12)]),
                        None => format!("already engaged by {}", e.by),
                    })
                    .map_err(Clone::clone);
                if let Ok((engaged, _)) = &result {
                    self.killswitch.retain(|e| e.agent != engaged.agent);
                    self.killswitch.push(engaged.clone());
                }
                if let Err(e) = &result {
                    self.say(
                        Level::Error,
                        format!("the kill switch was not engaged: {e}"),
                    );
                }
                if let Some(k) = &mut self.kill {
                    k.set_committed(shown);
                }
            }
            Msg::KillEnded { error } => {
                if let Some(e) = error {
                    if let Some(k) = &mut self.kill {
                        k.failed_to_start(e.clone());
                    }
                    self.say(Level::Error, format!("the kill could not run: {e}"));
                }
            }
        }
    }

    fn on_event(&mut self, envelope: Envelope) {
        if let Some(k) = &mut self.kill
            && k.follows() == Some(&*envelope.run_id)
        {
            k.apply(&envelope.event);
            if let Event::RunFinished { summary, .. } = &envelope.event {
                self.say(
                    if summary.all_ok() {
                        Level::Info
                    } else {
                        Level::Warn
                    },
                    format!(
                        "kill run {} finished: {} of {} nodes answered",
                        envelope.run_id,
                        summary.ok,
                        summary.total()
                    ),
                );
                self.effects.push(Effect::LoadLastResults);
                self.effects.push(Effect::LoadRuns);
            }
        }
        if let Some(l) = &mut self.live {
            l.apply(&envelope);
        }
        // Reachability is news from any run; results, warnings and the end
        // of a run only from the run this console started.
        let ours = self
            .live
            .as_ref()
            .is_some_and(|l| l.follows() == &*envelope.run_id);
        if !ours && !matches!(envelope.event, Event::NodeConnected { .. }) {
            return;
        }
        let run_id = envelope.run_id.to_string();
        match &envelope.event {
            Event::NodeConnected { node, .. } => self.fleet.mark_reachable(node),
            Event::NodeFinished { result } => {
                self.fleet.record_result(
                    &result.node,
                    LastResult {
                        run_id,
                        status: result.status,
                        finished_ms: self.now_ms,
                    },
                );
            }
            Event::Warning { node, message } => {
                let at = node.as_ref().map(|n| format!("{n}: ")).unwrap_or_default();
                self.say(
                    Level::Warn,
                    format!("{at}{}", crate::terminal_text::sanitize(message.as_bytes())),
                );
            }
            Event::HostKeyLearned {
                node, fingerprint, ..
            } => {
                self.say(
                    Level::Info,
                    format!("{node}: trusted host key {fingerprint}"),
                );
            }
            Event::RunFinished {
                summary, cancelled, ..
            } => {
                self.cancel = None;
                let level = if summary.all_ok() {
                    Level::Info
                } else {
                    Level::Warn
                };
                self.say(
                    level,
                    format!(
                        "run {run_id} {}: ok {} · failed {} · unreachable {} · timed out {} · cancelled {}",
                        if *cancelled { "cancelled" } else { "finished" },
                        summary.ok,
                        summary.failed,
                        summary.unreachable,
                        summary.timed_out,
                        summary.cancelled
                    ),
                );
                self.effects.push(Effect::LoadLastResults);
                self.effects.push(Effect::LoadRuns);
            }
            _ => {}
        }
    }
}

fn loadable<T>(r: Result<T, String>) -> Loadable<T> {
    match r {
        Ok(v) => Loadable::Loaded(v),
        Err(e) => Loadable::Failed(e),
    }
}

fn view_name(v: ViewId) -> &'static str {
    match v {
        ViewId::Fleet => "nodes",
        ViewId::Groups => "groups",
        ViewId::Node => "node",
        ViewId::Runs => "runs",
        ViewId::Run => "run",
        ViewId::Live => "live run",
        ViewId::Agents => "agents",
        ViewId::Top => "telemetry",
        ViewId::Rollouts => "rollouts",
        ViewId::Ledger => "ledger",
        ViewId::Approvals => "approvals",
        ViewId::Reflect => "reflect",
        ViewId::Lessons => "lessons",
        ViewId::Api => "api",
    }
}

fn key_name(key: KeyEvent) -> String {
    let name = match key.code {
        KeyCode::Char(' ') => "Space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    };
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        format!("Ctrl-{name}")
    } else {
        name
    }
}
