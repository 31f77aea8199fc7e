//! The input line at the bottom: `:` command mode with Tab completion, `/`
//! the fleet filter (applied as you type), and `x`'s command to exec.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use crate::tui::action::{Action, ExecPlan, Pending, PromptKind};
use crate::tui::keys::COMMANDS;
use crate::tui::text::{count, dim, header_style};

pub struct Prompt {
    pub kind: PromptKind,
    input: Vec<char>,
    cursor: usize,
    /// The filter when the prompt opened (Esc puts it back).
    pub before: String,
    candidates: Vec<&'static str>,
    cycle: usize,
    /// Set on Enter or Esc: the app closes the prompt.
    pub finished: bool,
}

impl Prompt {
    pub fn new(kind: PromptKind, initial: &str) -> Prompt {
        Prompt {
            kind,
            input: initial.chars().collect(),
            cursor: initial.chars().count(),
            before: initial.to_string(),
            candidates: Vec::new(),
            cycle: 0,
            finished: false,
        }
    }

    pub fn text(&self) -> String {
        self.input.iter().collect()
    }

    fn label(&self) -> String {
        match &self.kind {
            PromptKind::Command => ":".into(),
            PromptKind::Filter => "/".into(),
            PromptKind::Exec { nodes } => match nodes.as_slice() {
                [one] => format!("exec on {one}> "),
                _ => format!("exec on {}> ", count(nodes.len(), "node")),
            },
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let edited = match key.code {
            KeyCode::Esc => {
                self.finished = true;
                return Some(Action::ClosePrompt);
            }
            KeyCode::Enter => return Some(self.submit()),
            KeyCode::Tab if self.kind == PromptKind::Command => {
                self.complete();
                return Some(Action::Redraw);
            }
            KeyCode::Char('u') if ctrl => {
                self.input.clear();
                self.cursor = 0;
                true
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.input[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.input[start - 1] != ' ' {
                    start -= 1;
                }
                self.input.drain(start..self.cursor);
                self.cursor = start;
                true
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.insert(self.cursor, c);
                self.cursor += 1;
                true
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
                true
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
                true
            }
            KeyCode::Left => {
                self.cursor = self.cursor.saturating_sub(1);
                false
            }
            KeyCode::Right => {
                self.cursor = (self.cursor + 1).min(self.input.len());
                false
            }
            KeyCode::Home => {
                self.cursor = 0;
                false
            }
            KeyCode::End => {
                self.cursor = self.input.len();
                false
            }
            _ => false,
        };
        if edited {
            self.candidates.clear();
            if self.kind == PromptKind::Filter {
                return Some(Action::Filter(self.text()));
            }
        }
        // The prompt owns the keyboard while open.
        Some(Action::Redraw)
    }

    fn submit(&mut self) -> Action {
        let text = self.text();
        let action = match &self.kind {
            PromptKind::Command => Action::Command(text),
            PromptKind::Filter => Action::Filter(text),
            PromptKind::Exec { nodes } => {
                if text.trim().is_empty() {
                    return Action::Unavailable("type the command to run, or Esc to cancel".into());
                }
                Action::Confirm(Pending::Exec(ExecPlan {
                    job: crate::tui::action::Job::Command,
                    nodes: nodes.clone(),
                    command: text.trim().to_string(),
                }))
            }
        };
        self.finished = true;
        action
    }

    /// Tab: complete the command word; with several candidates, complete
    /// their common prefix, then cycle through them.
    fn complete(&mut self) {
        let text = self.text();
        let word = text.trim_start();
        if word.contains(' ') {
            return;
        }
        if self.candidates.len() > 1 && self.candidates.contains(&word) {
            self.cycle = (self.cycle + 1) % self.candidates.len();
            self.set(self.candidates[self.cycle]);
            return;
        }
        let candidates: Vec<&'static str> = COMMANDS
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| name.starts_with(word))
            .collect();
        match candidates.as_slice() {
            [] => {}
            [one] => {
                let takes_argument = matches!(*one, "exec" | "filter");
                self.set(&format!("{one}{}", if takes_argument { " " } else { "" }));
            }
            many => {
                let common = many.iter().skip(1).fold(many[0].to_string(), |acc, c| {
                    acc.chars()
                        .zip(c.chars())
                        .take_while(|(a, b)| a == b)
                        .map(|(a, _)| a)
                        .collect()
                });
                self.cycle = many
                    .iter()
                    .position(|c| *c == common)
                    .unwrap_or(many.len() - 1);
                self.set(&common);
            }
        }
        self.candidates = candidates;
    }

    fn set(&mut self, text: &str) {
        self.input = text.chars().collect();
        self.cursor = self.input.len();
    }

    /// Two lines: the input, then completion candidates or the keys.
    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let [input_area, hint_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        let label = self.label();
        let text = self.text();
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled(label.clone(), header_style()),
                Span::raw(text.clone()),
            ])),
            input_area,
        );
        let before_cursor: String = self.input[..self.cursor].iter().collect();
        let x = input_area.x + (label.width() + before_cursor.width()) as u16;
        frame.set_cursor_position(Position::new(
            x.min(input_area.right().saturating_sub(1)),
            input_area.y,
        ));
        let hint = if self.candidates.len() > 1 {
            Line::from(vec![
                Span::styled("complete: ", dim()),
                Span::raw(self.candidates.join("  ")),
            ])
        } else {
            let keys = match self.kind {
                PromptKind::Command => {
                    "Enter run · Tab complete · Esc cancel · :nodes :groups :runs :live :exec CMD :q"
                }
                PromptKind::Filter => {
                    "filtering as you type · Enter keep · Esc cancel · text  key=value  group=NAME"
                }
                PromptKind::Exec { .. } => "Enter shows the plan to confirm · Esc cancel",
            };
            Line::styled(keys, dim())
        };
        frame.render_widget(Paragraph::new(hint), hint_area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(p: &mut Prompt, code: KeyCode) -> Option<Action> {
        p.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(p: &mut Prompt, s: &str) {
        for c in s.chars() {
            press(p, KeyCode::Char(c));
        }
    }

    #[test]
    fn tab_completes_commands() {
        let mut p = Prompt::new(PromptKind::Command, "");
        typed(&mut p, "ru");
        press(&mut p, KeyCode::Tab);
        assert_eq!(p.text(), "runs");
        let mut p = Prompt::new(PromptKind::Command, "");
        typed(&mut p, "ex");
        press(&mut p, KeyCode::Tab);
        assert_eq!(p.text(), "exec ", "commands with an argument get a space");
        let mut p = Prompt::new(PromptKind::Command, "");
        typed(&mut p, "q");
        press(&mut p, KeyCode::Tab);
        assert_eq!(p.text(), "q", "q and quit share the prefix q");
        assert_eq!(p.candidates, vec!["q", "quit"]);
        press(&mut p, KeyCode::Tab);
        assert_eq!(p.text(), "quit", "Tab again cycles");
        press(&mut p, KeyCode::Tab);
        assert_eq!(p.text(), "q");
        press(&mut p, KeyCode::Tab);
        assert_eq!(
            press(&mut p, KeyCode::Enter),
            Some(Action::Command("quit".into()))
        );
    }

    #[test]
    fn exec_prompt_pins_its_nodes_and_needs_a_command() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let mut p = Prompt::new(
            PromptKind::Exec {
                nodes: nodes.clone(),
            },
            "",
        );
        assert!(matches!(
            press(&mut p, KeyCode::Enter),
            Some(Action::Unavailable(_))
        ));
        assert!(!p.finished);
        typed(&mut p, "uname -r");
        assert_eq!(
            press(&mut p, KeyCode::Enter),
            Some(Action::Confirm(Pending::Exec(ExecPlan {
                job: crate::tui::action::Job::Command,
                nodes,
                command: "uname -r".into()
            })))
        );
        assert!(p.finished);
    }

    #[test]
    fn the_filter_applies_as_you_type() {
        let mut p = Prompt::new(PromptKind::Filter, "");
        assert_eq!(
            press(&mut p, KeyCode::Char('g')),
            Some(Action::Filter("g".into()))
        );
        assert_eq!(
            press(&mut p, KeyCode::Backspace),
            Some(Action::Filter(String::new()))
        );
    }
}
