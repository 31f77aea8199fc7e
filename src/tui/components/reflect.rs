//! The Checklists view (`:reflect`): the reflections operations left, the
//! pending ones first, with their checklist, trigger, agent and age, and
//! the selected one's questions below. `a` (or Enter) opens the answer
//! form: one item at a time, the answer typed, its evidence picked from
//! the store's runs and rollouts, the ledger's entries and the lessons (no
//! ids to type; `Ctrl-E` types what no list holds — a commit, a file, a
//! URL), `Ctrl-S` signs and commits it as `maestro reflect ID`.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::list::{ListState, placeholder};
use crate::reflect::answer::{Cited, ItemAnswer};
use crate::reflect::evidence::Pick;
use crate::reflect::{Answers, Checklist, Stats};
use crate::store::Reflection;
use crate::terminal_text::sanitize;
use crate::tui::action::Action;
use crate::tui::text::{age, dim, fit, header_style, selected_style};

/// What `:reflect` shows, read from the store and the SoT.
#[derive(Debug, Clone)]
pub struct ReflectData {
    pub reflections: Vec<Reflection>,
    pub checklists: Vec<Checklist>,
    pub picks: Vec<Pick>,
    pub stats: Stats,
}

/// An answer the form made, for the app to commit.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: String,
    pub answers: Answers,
}

impl PartialEq for Submitted {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Submitted {}

#[derive(Default)]
pub struct ReflectView {
    data: Option<ReflectData>,
    error: Option<String>,
    selected: usize,
    now_ms: i64,
    form: Option<AnswerForm>,
    /// An answer is being signed and committed: a second `Ctrl-S` waits
    /// for it instead of committing the same reflection twice.
    pub signing: bool,
}

impl ReflectView {
    pub fn new() -> ReflectView {
        ReflectView::default()
    }

    pub fn set_now(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// Pending first (oldest first), then answered (newest first).
    pub fn set(&mut self, result: Result<ReflectData, String>) {
        match result {
            Ok(mut d) => {
                d.reflections.sort_by_key(|r| match r.answered_ms {
                    None => (0, r.created_ms),
                    Some(a) => (1, -a),
                });
                self.selected = self.selected.min(d.reflections.len().saturating_sub(1));
                self.data = Some(d);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Adoption and pending count, for the header.
    pub fn summary(&self) -> Option<(Option<f64>, usize)> {
        self.data
            .as_ref()
            .map(|d| (d.stats.adoption_percent, d.stats.pending))
    }

    /// The form was submitted and its answer committed: close it.
    pub fn close_form(&mut self) {
        self.form = None;
    }

    pub fn form_open(&self) -> bool {
        self.form.is_some()
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if let Some(form) = &mut self.form {
            return match form.handle_key(key) {
                FormKey::Used => Some(Action::Redraw),
                FormKey::Cancel => {
                    self.form = None;
                    Some(Action::Redraw)
                }
                FormKey::Submit(s) => Some(Action::AnswerReflection(Box::new(s))),
            };
        }
        let len = self.data.as_ref().map_or(0, |d| d.reflections.len());
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(len.saturating_sub(1));
                Some(Action::Redraw)
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Some(Action::Redraw)
            }
            KeyCode::Char('r') => Some(Action::Show(crate::tui::action::ViewId::Reflect)),
            KeyCode::Char('a') | KeyCode::Enter => Some(self.open_form()),
            _ => None,
        }
    }

    fn open_form(&mut self) -> Action {
        let Some(d) = &self.data else {
            return Action::Unavailable("the reflections are still loading".into());
        };
        let Some(r) = d.reflections.get(self.selected) else {
            return Action::Unavailable("no reflection to answer".into());
        };
        if let Some(by) = &r.answered_by {
            return Action::Unavailable(format!("{} was answered by {by} already", r.id));
        }
        let Some(c) = d.checklists.iter().find(|c| c.name == r.checklist) else {
            return Action::Unavailable(format!(
                "checklist {} is no longer in the SoT",
                r.checklist
            ));
        };
        self.form = Some(AnswerForm::new(r.clone(), c.clone(), d.picks.clone()));
        Action::Redraw
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let reflections = self.data.as_ref().map_or(&[][..], |d| &d.reflections[..]);
        let rows = (reflections.len() as u16 + 2).clamp(3, area.height / 2 + 2);
        let [list, detail] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
        let width = list.width.saturating_sub(2) as usize;
        let mut lines: Vec<Line> = placeholder(
            ListState {
                source: "the run store",
                error: self.error.as_deref(),
                loaded: self.data.is_some(),
                is_empty: reflections.is_empty(),
                empty: "no reflection yet: an operation a checklist names leaves one here",
            },
            width,
        )
        .into_iter()
        .collect();
        for (i, r) in reflections.iter().enumerate() {
            let text = format!(
                "{} {:14} {:18} {:16} {:14} {:>6}  {}",
                if i == self.selected { "▶" } else { " " },
                r.id,
                r.checklist,
                r.trigger,
                sanitize(r.agent.as_deref().unwrap_or("-").as_bytes()),
                age(self.now_ms, r.created_ms),
                match &r.answered_by {
                    Some(by) => format!("answered by {}", sanitize(by.as_bytes())),
                    None => "pending".into(),
                }
            );
            let style = if r.is_pending() {
                Style::new().fg(Color::Yellow)
            } else {
                dim()
            };
            lines.push(Line::styled(fit(&text, width), style));
        }
        let title = match self.data.as_ref().map(|d| &d.stats) {
            Some(s) => format!(
                " reflections  adoption {} · {} pending  a answer ",
                s.adoption_percent
                    .map(|p| format!("{p:.0}%"))
                    .unwrap_or_else(|| "-".into()),
                s.pending
            ),
            None => " reflections ".into(),
        };
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(title)),
            list,
        );
        let selected = reflections.get(self.selected);
        let checklist = selected.and_then(|r| {
            self.data
                .as_ref()
                .and_then(|d| d.checklists.iter().find(|c| c.name == r.checklist))
        });
        match (selected, checklist) {
            (Some(r), Some(c)) => {
                let mut lines = vec![
                    Line::from(format!(
                        "{} · {} · after {}",
                        r.id,
                        sanitize(c.title.as_bytes()),
                        sanitize(r.description.as_bytes())
                    )),
                    Line::styled(
                        format!("operation {} · answered by {}", r.source, c.answerers()),
                        dim(),
                    ),
                ];
                if let Some(commit) = &r.commit {
                    lines.push(Line::styled(
                        format!(
                            "committed {} · ledger {}",
                            &commit[..12.min(commit.len())],
                            r.ledger.as_deref().map_or("-", |l| &l[..12.min(l.len())])
                        ),
                        Style::new().fg(Color::Green),
                    ));
                }
                for item in &c.items {
                    lines.push(Line::from(format!(
                        "  {} {}",
                        if item.required { "•" } else { "◦" },
                        sanitize(item.question.as_bytes())
                    )));
                }
                frame.render_widget(
                    Paragraph::new(lines)
                        .wrap(Wrap { trim: false })
                        .block(Block::bordered().title(" checklist ")),
                    detail,
                );
            }
            _ => frame.render_widget(Block::bordered(), detail),
        }
        if let Some(form) = &self.form {
            form.draw(frame, area);
        }
    }
}

enum FormKey {
    Used,
    Cancel,
    Submit(Submitted),
}

/// Answering one reflection: an item at a time.
pub struct AnswerForm {
    reflection: Reflection,
    checklist: Checklist,
    picks: Vec<Pick>,
    item: usize,
    texts: Vec<String>,
    /// Per item, the picks cited (indices into `picks`).
    cited: Vec<BTreeSet<usize>>,
    /// The highlighted pick among the item's candidates.
    cursor: usize,
    /// Per item, evidence typed as `KIND:VALUE` (a commit, a file, a URL:
    /// what no list holds).
    typed: Vec<Vec<String>>,
    /// The evidence being typed (after `Ctrl-E`), until `Enter` or `Esc`.
    typing: Option<String>,
}

impl AnswerForm {
    fn new(reflection: Reflection, checklist: Checklist, picks: Vec<Pick>) -> AnswerForm {
        let n = checklist.items.len();
        let mut form = AnswerForm {
            reflection,
            checklist,
            picks,
            item: 0,
            texts: vec![String::new(); n],
            cited: vec![BTreeSet::new(); n],
            cursor: 0,
            typed: vec![Vec::new(); n],
            typing: None,
        };
        // The operation itself is the first evidence of every item that takes it.
        // (`rollout:ID#2` is the second attempt of rollout ID.)
        let source = form
            .reflection
            .source
            .split('#')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(p) = form.picks.iter().position(|p| p.value == source) {
            for (i, item) in form.checklist.items.iter().enumerate() {
                if item.evidence.contains(&form.picks[p].kind) {
                    form.cited[i].insert(p);
                }
            }
        }
        form
    }

    /// The picks the current item accepts, as indices into `picks`.
    fn candidates(&self) -> Vec<usize> {
        let Some(item) = self.checklist.items.get(self.item) else {
            return Vec::new();
        };
        self.picks
            .iter()
            .enumerate()
            .filter(|(_, p)| item.evidence.contains(&p.kind))
            .map(|(i, _)| i)
            .collect()
    }

    fn handle_key(&mut self, key: KeyEvent) -> FormKey {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if let Some(line) = &mut self.typing {
            match key.code {
                KeyCode::Esc => self.typing = None,
                KeyCode::Enter => {
                    let value = line.trim().to_string();
                    if !value.is_empty() && !self.typed[self.item].contains(&value) {
                        self.typed[self.item].push(value);
                    }
                    self.typing = None;
                }
                KeyCode::Backspace => {
                    line.pop();
                }
                KeyCode::Char(c) if !ctrl => line.push(c),
                _ => {}
            }
            return FormKey::Used;
        }
        match key.code {
            KeyCode::Esc => return FormKey::Cancel,
            KeyCode::Char('s') if ctrl => return FormKey::Submit(self.submitted()),
            KeyCode::Char('e') if ctrl => self.typing = Some(String::new()),
            // The last typed evidence of the item goes again.
            KeyCode::Char('d') if ctrl => {
                self.typed[self.item].pop();
            }
            KeyCode::Tab => {
                self.item = (self.item + 1) % self.checklist.items.len().max(1);
                self.cursor = 0;
            }
            KeyCode::BackTab => {
                let n = self.checklist.items.len().max(1);
                self.item = (self.item + n - 1) % n;
                self.cursor = 0;
            }
            KeyCode::Down => {
                self.cursor = (self.cursor + 1).min(self.candidates().len().saturating_sub(1))
            }
            KeyCode::Up => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Enter => {
                if let Some(&p) = self.candidates().get(self.cursor)
                    && !self.cited[self.item].remove(&p)
                {
                    self.cited[self.item].insert(p);
                }
            }
            KeyCode::Backspace => {
                self.texts[self.item].pop();
            }
            KeyCode::Char(c) if !ctrl => self.texts[self.item].push(c),
            _ => {}
        }
        FormKey::Used
    }

    fn submitted(&self) -> Submitted {
        let mut answers = Answers::default();
        for (i, item) in self.checklist.items.iter().enumerate() {
            answers.items.insert(
                item.id.clone(),
                ItemAnswer {
                    text: self.texts[i].clone(),
                    evidence: self.cited[i]
                        .iter()
                        .map(|&p| Cited::new(self.picks[p].value.clone()))
                        .chain(self.typed[i].iter().map(|t| Cited::new(t.clone())))
                        .collect(),
                    span: None,
                },
            );
        }
        Submitted {
            id: self.reflection.id.clone(),
            answers,
        }
    }

    fn draw(&self, frame: &mut Frame, area: Rect) {
        // The whole body: nothing of the list behind shows through.
        let popup = area;
        frame.render_widget(Clear, popup);
        let width = popup.width.saturating_sub(2) as usize;
        let n = self.checklist.items.len();
        let mut lines = vec![Line::styled(
            fit(
                &format!(
                    "{} after {}",
                    sanitize(self.checklist.title.as_bytes()),
                    sanitize(self.reflection.description.as_bytes())
                ),
                width,
            ),
            dim(),
        )];
        // Every item with its state, the current one expanded.
        for (i, item) in self.checklist.items.iter().enumerate() {
            let answered = !self.texts[i].trim().is_empty();
            let mark = match (answered, item.required) {
                (true, _) => "✓",
                (false, true) => "•",
                (false, false) => "◦",
            };
            let head = format!(
                "{mark} {}/{n} {}{}",
                i + 1,
                sanitize(item.question.as_bytes()),
                match self.cited[i].len() + self.typed[i].len() {
                    0 => String::new(),
                    k => format!("  [{k} cited]"),
                }
            );
            if i != self.item {
                lines.push(Line::styled(fit(&head, width), dim()));
                continue;
            }
            lines.push(Line::styled(fit(&head, width), header_style()));
            lines.push(Line::from(fit(
                &format!("  > {}▏", sanitize(self.texts[i].as_bytes())),
                width,
            )));
            let candidates = self.candidates();
            if item.evidence.is_empty() {
                lines.push(Line::styled("    (no evidence needed)", dim()));
            } else if candidates.is_empty() {
                let kinds: Vec<&str> = item.evidence.iter().map(|k| k.key()).collect();
                lines.push(Line::styled(
                    fit(
                        &format!("    nothing of {} to cite yet", kinds.join(", ")),
                        width,
                    ),
                    dim(),
                ));
            }
            // Eight rows, scrolled so the highlighted one is always shown.
            let first = self.cursor.saturating_sub(7);
            for (row, &p) in candidates.iter().enumerate().skip(first).take(8) {
                let pick = &self.picks[p];
                let text = format!(
                    "    [{}] {:8} {}",
                    if self.cited[i].contains(&p) { "x" } else { " " },
                    pick.kind.key(),
                    sanitize(pick.label.as_bytes())
                );
                let style = if row == self.cursor {
                    selected_style()
                } else {
                    Style::new()
                };
                lines.push(Line::styled(fit(&text, width), style));
            }
            for t in &self.typed[i] {
                lines.push(Line::from(fit(
                    &format!("    [x] typed    {}", sanitize(t.as_bytes())),
                    width,
                )));
            }
            match &self.typing {
                Some(line) => lines.push(Line::styled(
                    fit(
                        &format!("    evidence> {}▏  (KIND:VALUE, Enter adds, Esc drops)", sanitize(line.as_bytes())),
                        width,
                    ),
                    selected_style(),
                )),
                None if !item.evidence.is_empty() => lines.push(Line::styled(
                    fit("    Ctrl-E types evidence (commit:ID, file:PATH, url:…), Ctrl-D drops the last", width),
                    dim(),
                )),
                None => {}
            }
        }
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::bordered()
                    .border_style(Style::new().fg(Color::Yellow))
                    .title(Line::styled(
                        format!(" answer {} ", self.reflection.id),
                        header_style(),
                    )),
            ),
            popup,
        );
    }
}
