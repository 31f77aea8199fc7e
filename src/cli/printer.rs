//! The headless face of a run: an indicatif progress display on a terminal,
//! plain lines otherwise, or one JSON object per event with `--json`; then an
//! Ansible-like recap. Node output is printed through [`sanitize`] so hostile
//! bytes never reach the terminal raw.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::fleet::RunReport;
use crate::fleet::event::{Event, NodeResult, NodeStatus, TaskCounts, TaskStatus};
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
        }
    }

    /// Print each changed or failed task as it finishes (playbook runs).
    pub fn with_tasks(mut self) -> Printer {
        self.show_tasks = true;
        self
    }

    /// Lines printed above the progress display (or plainly).
    fn line(&self, text: &str) {
        match &self.mode {
            Mode::Progress { bar, .. } => bar.suspend(|| print_stdout(text)),
            _ => print_stdout(text),
        }
    }

    pub fn handle(&mut self, event: &Event) {
        match self.mode {
            Mode::Json => {
                print_stdout(&serde_json::to_string(event).expect("events serialize"));
                return;
            }
            Mode::Quiet => return,
            _ => {}
        }
        match event {
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
                if matches!(task.status, TaskStatus::Changed | TaskStatus::Failed) {
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
        print_stdout(&recap(report));
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
    format!(
        "ok={} changed={} failed={} skipped={}",
        c.ok, c.changed, c.failed, c.skipped
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

fn eprintln_safe(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", sanitize(text.as_bytes()));
}
