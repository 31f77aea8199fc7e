//! The headless face of a run: an indicatif progress display on a terminal,
//! plain lines otherwise, or one JSON object per event with `--json`; then an
//! Ansible-like recap. Node output is printed through [`sanitize`] so hostile
//! bytes never reach the terminal raw.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bus::{Envelope, Subscriber, SubscriberError};
use crate::fleet::event::{Event, NodeResult, NodeStatus, TaskCounts, TaskStatus};
use crate::fleet::{Cancel, RunReport};
pub use crate::terminal_text::sanitize;

/// A node running longer than this is shown as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(10);
/// Node output shown per stream in the terminal (the store keeps more).
const SHOWN_BYTES: usize = 64 * 1024;

enum Mode {
    Json,
    Quiet,
    Progress {
        bar: ProgressBar,
        _multi: MultiProgress,
    },
    Plain,
}

pub struct Printer {
    mode: Mode,
    /// Print playbook task lines (changed and failed tasks, with diffs).
    show_tasks: bool,
    running: BTreeMap<String, Instant>,
    done: usize,
    failed: usize,
    show_output: bool,
    /// Stdout was closed: print nothing more, and the run was cancelled.
    closed: bool,
    /// What to stop, and what to tell, when stdout is closed.
    on_broken_pipe: Option<(Cancel, Arc<AtomicBool>)>,
}

impl Printer {
    pub fn new(json: bool, show_output: bool) -> Printer {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Mode::Progress { bar, _multi: multi }
        } else {
            Mode::Plain
        };
        Printer {
            mode,
            show_tasks: false,
            running: BTreeMap::new(),
            done: 0,
            failed: 0,
            show_output,
            closed: false,
            on_broken_pipe: None,
        }
    }

    /// Prints nothing (for plan runs and runs whose result is shown as a table).
    pub fn quiet() -> Printer {
        Printer {
            mode: Mode::Quiet,
            show_tasks: false,
            running: BTreeMap::new(),
            done: 0,
            failed: 0,
            show_output: false,
            closed: false,
            on_broken_pipe: None,
        }
    }

    /// When stdout is closed (`| head -1`), cancel the run and set `flag`.
    pub fn on_broken_pipe(mut self, cancel: Cancel, flag: Arc<AtomicBool>) -> Printer {
        self.on_broken_pipe = Some((cancel, flag));
        self
    }

    /// Print each changed or failed task as it finishes (playbook runs).
    pub fn with_tasks(mut self) -> Printer {
        self.show_tasks = true;
        self
    }

    /// Lines printed above the progress display (or plainly).
    fn line(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let written = match &self.mode {
            Mode::Progress { bar, .. } => bar.suspend(|| print_stdout(text)),
            _ => print_stdout(text),
        };
        if !written {
            self.stdout_closed();
        }
    }

    pub fn handle(&mut self, envelope: &Envelope) {
        match self.mode {
            Mode::Json => {
                let text = serde_json::to_string(envelope).expect("events serialize");
                self.line(&text);
                return;
            }
            Mode::Quiet => return,
            _ => {}
        }
        if self.closed {
            return;
        }
        match &envelope.event {
            Event::RunStarted { nodes, .. } => {
                if let Mode::Progress { bar, .. } = &self.mode {
                    bar.set_length(nodes.len() as u64);
                    bar.enable_steady_tick(Duration::from_millis(100));
                }
            }
            Event::NodeConnecting { node } => {
                self.running.insert(node.clone(), Instant::now());
            }
            Event::HostKeyLearned {
                node,
                host,
                fingerprint,
                file,
            } => {
                eprintln_safe(&format!(
                    "{node}: trusted new host key {host} {fingerprint} (recorded in {file})"
                ));
            }
            Event::Warning { node, message } => {
                eprintln_safe(&format!(
                    "warning: {}{}",
                    node.as_ref().map(|n| format!("{n}: ")).unwrap_or_default(),
                    message
                ));
            }
            Event::TaskFinished { node, task } if self.show_tasks => {
                if matches!(
                    task.status,
                    TaskStatus::Changed | TaskStatus::Failed | TaskStatus::Unknown
                ) {
                    let mut text = format!(
                        "{node} | {} | {}: {}",
                        task.status.as_str(),
                        sanitize(task.name.as_bytes()),
                        sanitize(task.message.as_bytes())
                    );
                    for block in [&task.diff, &task.output].into_iter().flatten() {
                        text.push('\n');
                        text.push_str(sanitize(block.as_bytes()).trim_end());
                    }
                    self.line(&text);
                }
            }
            Event::NodeFinished { result } => {
                self.running.remove(&result.node);
                self.done += 1;
                if result.status != NodeStatus::Ok {
                    self.failed += 1;
                }
                let block = node_block(result, self.show_output);
                self.line(block.trim_end_matches('\n'));
                if let Mode::Progress { bar, .. } = &self.mode {
                    bar.set_position(self.done as u64);
                }
            }
            _ => {}
        }
        self.tick();
    }

    /// Notice a reader that went away even while nothing is printed (a
    /// pipe whose reader closed reports POLLERR on our end).
    fn check_stdout(&mut self) {
        if self.closed || matches!(self.mode, Mode::Quiet) {
            return;
        }
        let mut fd = libc::pollfd {
            fd: libc::STDOUT_FILENO,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut fd, 1, 0) };
        if n == 1 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            self.stdout_closed();
        }
    }

    fn stdout_closed(&mut self) {
        self.closed = true;
        if let Mode::Progress { bar, .. } = &self.mode {
            bar.finish_and_clear();
        }
        if let Some((cancel, flag)) = &self.on_broken_pipe {
            flag.store(true, Ordering::SeqCst);
            eprintln!("maestro: stdout was closed; cancelling the run");
            cancel.cancel_all();
        }
    }

    /// Refresh the status line (called on events and on a timer).
    pub fn tick(&self) {
        let Mode::Progress { bar, .. } = &self.mode else {
            return;
        };
        let stuck: Vec<String> = self
            .running
            .iter()
            .filter(|(_, t)| t.elapsed() > STUCK_AFTER)
            .take(5)
            .map(|(n, t)| format!("{n} ({}s)", t.elapsed().as_secs()))
            .collect();
        let mut msg = format!(
            "running {} · done {} · failed {}",
            self.running.len(),
            self.done,
            self.failed
        );
        if !stuck.is_empty() {
            msg.push_str(&format!(" · stuck: {}", stuck.join(", ")));
        }
        bar.set_message(msg);
    }

    pub fn finish(&mut self, report: &RunReport) {
        if let Mode::Progress { bar, .. } = &self.mode {
            bar.finish_and_clear();
        }
        if let Mode::Json | Mode::Quiet = self.mode {
            return;
        }
        self.line(&recap(report));
    }

    /// Print a line of a face's own (a plan, a table) with the same
    /// broken-pipe handling as the events.
    pub fn print(&mut self, text: &str) {
        self.line(text);
    }

    pub fn is_json(&self) -> bool {
        matches!(self.mode, Mode::Json)
    }
}

impl Subscriber for Printer {
    fn name(&self) -> &'static str {
        "printer"
    }

    fn event(&mut self, envelope: &Envelope) -> Result<(), SubscriberError> {
        self.handle(envelope);
        Ok(())
    }

    fn tick(&mut self) {
        self.check_stdout();
        Printer::tick(self);
    }
}

/// What one node did, with its output (for `maestro runs show`).
pub fn node_block_public(r: &NodeResult) -> String {
    node_block(r, true)
}

/// What one node did, as printed when it finishes.
fn node_block(r: &NodeResult, show_output: bool) -> String {
    let mut s = format!("{} | {}", r.node, r.status.as_str().to_uppercase());
    if !r.tasks.is_empty() {
        s.push_str(&format!(" | {}", task_counts(r)));
    } else if let Some(code) = r.exit_code {
        s.push_str(&format!(" | rc={code}"));
    }
    if let Some(sig) = &r.signal {
        s.push_str(&format!(" | signal={}", sanitize(sig.as_bytes())));
    }
    s.push_str(&format!(" | {:.2}s", r.duration_ms as f64 / 1000.0));
    if let Some(e) = &r.error {
        s.push_str(&format!(" | {}", sanitize(e.as_bytes())));
    }
    if show_output && r.tasks.is_empty() {
        for (name, c) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            if c.bytes.is_empty() {
                continue;
            }
            let shown = &c.bytes[..c.bytes.len().min(SHOWN_BYTES)];
            s.push_str(if name == "stdout" {
                " >>\n"
            } else {
                "\n  [stderr]\n"
            });
            s.push_str(&sanitize(shown));
            if !s.ends_with('\n') {
                s.push('\n');
            }
            if c.total > shown.len() as u64 {
                s.push_str(&format!(
                    "  [{name}: {} of {} bytes shown; `maestro runs show` has up to 1 MiB]\n",
                    shown.len(),
                    c.total
                ));
            }
        }
    }
    s
}

pub fn recap(report: &RunReport) -> String {
    let s = &report.summary;
    let mut out = format!(
        "\nRECAP {} · {} node{} in {:.2}s: ok={} failed={} unreachable={} timed_out={} cancelled={}\n",
        report.run_id,
        s.total(),
        if s.total() == 1 { "" } else { "s" },
        report.elapsed.as_secs_f64(),
        s.ok,
        s.failed,
        s.unreachable,
        s.timed_out,
        s.cancelled
    );
    let w = report
        .results
        .iter()
        .map(|r| r.node.len())
        .max()
        .unwrap_or(4);
    for r in &report.results {
        let rc = if r.tasks.is_empty() {
            r.exit_code.map(|c| format!("rc={c}")).unwrap_or_default()
        } else {
            task_counts(r)
        };
        out.push_str(&format!(
            "  {:w$}  {:11}  {:6}  {:>7.2}s{}\n",
            r.node,
            r.status.as_str(),
            rc,
            r.duration_ms as f64 / 1000.0,
            r.error
                .as_ref()
                .map(|e| format!("  {}", sanitize(first_line(e).as_bytes())))
                .unwrap_or_default()
        ));
    }
    if report.cancelled {
        let cut: Vec<&str> = report
            .results
            .iter()
            .filter(|r| r.status == NodeStatus::Cancelled)
            .map(|r| r.node.as_str())
            .collect();
        out.push_str(&format!(
            "cancelled: cut off on {}\n",
            if cut.is_empty() {
                "no node".into()
            } else {
                cut.join(", ")
            }
        ));
    }
    out
}

fn task_counts(r: &NodeResult) -> String {
    let c = TaskCounts::of(&r.tasks);
    let mut s = format!(
        "ok={} changed={} failed={} skipped={}",
        c.ok, c.changed, c.failed, c.skipped
    );
    if c.refused > 0 {
        s.push_str(&format!(" refused={}", c.refused));
    }
    if c.unknown > 0 {
        s.push_str(&format!(" unknown={}", c.unknown));
    }
    s
}

/// Every task of a node, one line each with its status and message, and
/// its diff or output indented below (for `maestro runs show`).
pub fn task_lines(r: &NodeResult) -> String {
    let mut s = String::new();
    for t in &r.tasks {
        s.push_str(&format!(
            "  {:8} {}: {}\n",
            t.status.as_str(),
            sanitize(t.name.as_bytes()),
            sanitize(first_line(&t.message).as_bytes())
        ));
        for block in [&t.diff, &t.output].into_iter().flatten() {
            for line in sanitize(block.as_bytes()).lines() {
                s.push_str("      ");
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    s
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Whether the line reached stdout (false: the reader went away).
fn print_stdout(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
}

fn eprintln_safe(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", sanitize(text.as_bytes()));
}
