//! The Lessons view (`:lessons`): every lesson of lessons.toml with its
//! memory (short-term until promoted, long-term after), its evidenced uses,
//! whether it can be promoted (`maestro lesson promote ID`) or should
//! retire, its scope and text; the selected one's evidence below.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::list::{ListState, placeholder};
use crate::reflect::lesson::{LessonStatus, Memory, USES_TO_PROMOTE};
use crate::terminal_text::sanitize;
use crate::tui::action::{Action, ViewId};
use crate::tui::text::{dim, fit};

#[derive(Default)]
pub struct LessonsView {
    items: Vec<LessonStatus>,
    loaded: bool,
    error: Option<String>,
    selected: usize,
}

impl LessonsView {
    pub fn new() -> LessonsView {
        LessonsView::default()
    }

    /// Long-term memory first, then by uses.
    pub fn set(&mut self, result: Result<Vec<LessonStatus>, String>) {
        self.loaded = true;
        match result {
            Ok(mut items) => {
                items.sort_by_key(|l| {
                    (
                        l.lesson.memory != Memory::Ltm,
                        std::cmp::Reverse(l.uses),
                        l.lesson.id.clone(),
                    )
                });
                self.selected = self.selected.min(items.len().saturating_sub(1));
                self.items = items;
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.items.len().saturating_sub(1));
                Some(Action::Redraw)
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
                Some(Action::Redraw)
            }
            KeyCode::Char('r') => Some(Action::Show(ViewId::Lessons)),
            KeyCode::Char('p') => Some(Action::Unavailable(match self.items.get(self.selected) {
                None => "no lesson to promote".into(),
                Some(l) if l.lesson.memory == Memory::Ltm => {
                    format!("{} is in long-term memory already", l.lesson.id)
                }
                Some(l) if !l.promotable => format!(
                    "{} has {} of the {USES_TO_PROMOTE} evidenced uses promotion needs",
                    l.lesson.id, l.uses
                ),
                Some(l) => format!(
                    "promotion is a reviewed commit: run `maestro lesson promote {} --reason \"…\"`",
                    l.lesson.id
                ),
            })),
            _ => None,
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let rows = (self.items.len() as u16 + 2).clamp(3, area.height / 2 + 2);
        let [list, detail] =
            Layout::vertical([Constraint::Length(rows), Constraint::Min(3)]).areas(area);
        let width = list.width.saturating_sub(2) as usize;
        let mut lines: Vec<Line> = placeholder(
            ListState {
                source: "the lessons",
                error: self.error.as_deref(),
                loaded: self.loaded,
                is_empty: self.items.is_empty(),
                empty: "no lessons yet: a reflection's answer records them",
            },
            width,
        )
        .into_iter()
        .collect();
        let stm = self
            .items
            .iter()
            .filter(|l| l.lesson.memory == Memory::Stm)
            .count();
        for (i, l) in self.items.iter().enumerate() {
            let state = if l.promotable {
                "promotable"
            } else if l.retire {
                "retire?"
            } else {
                ""
            };
            let uses = match l.lesson.memory {
                Memory::Ltm => format!("{}", l.uses),
                Memory::Stm => format!("{}/{USES_TO_PROMOTE}", l.uses),
            };
            let text = format!(
                "{} {:26} {:3} {:>4} {:10} {:28} {}",
                if i == self.selected { "▶" } else { " " },
                l.lesson.id,
                l.lesson.memory.as_str().to_uppercase(),
                uses,
                state,
                sanitize(l.lesson.scope.describe().as_bytes()),
                sanitize(l.lesson.text.as_bytes())
            );
            let style = match (l.lesson.memory, l.promotable, l.retire) {
                (Memory::Ltm, ..) => Style::new().fg(Color::Green),
                (_, true, _) => Style::new().fg(Color::Yellow),
                (_, _, true) => dim(),
                _ => Style::new(),
            };
            lines.push(Line::styled(fit(&text, width), style));
        }
        let title = format!(
            " lessons  {} short-term · {} long-term ",
            stm,
            self.items.len() - stm
        );
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(title)),
            list,
        );
        let Some(l) = self.items.get(self.selected) else {
            frame.render_widget(Block::bordered(), detail);
            return;
        };
        let mut lines = vec![
            Line::from(sanitize(l.lesson.text.as_bytes())),
            Line::styled(
                format!(
                    "from {} by {}{}",
                    l.lesson.reflection.as_deref().unwrap_or("-"),
                    l.lesson.by.as_deref().unwrap_or("-"),
                    match &l.lesson.promoted {
                        Some(p) => format!(
                            " · promoted by {} after {} uses",
                            sanitize(p.by.as_bytes()),
                            p.uses
                        ),
                        None => String::new(),
                    }
                ),
                dim(),
            ),
        ];
        for e in &l.lesson.evidence {
            lines.push(Line::from(format!("  evidence {}", sanitize(e.as_bytes()))));
        }
        if l.unresolved > 0 {
            lines.push(Line::styled(
                format!(
                    "  {} use(s) not counted: their runs are no longer in the store",
                    l.unresolved
                ),
                Style::new().fg(Color::Yellow),
            ));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" lesson ")),
            detail,
        );
    }
}
