//! The help popup (`?`): every key of every view and every `:` command,
//! from the same table the footer uses.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::tui::action::Action;
use crate::tui::keys::{COMMANDS, KEYMAP};
use crate::tui::text::{dim, header_style};

#[derive(Default)]
pub struct HelpPopup {
    scroll: u16,
}

impl HelpPopup {
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        Some(match key.code {
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') => Action::ToggleHelp,
            KeyCode::Down | KeyCode::Char('j') => {
                self.scroll = (self.scroll + 1).min(Self::lines().len() as u16);
                Action::Redraw
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.scroll = self.scroll.saturating_sub(1);
                Action::Redraw
            }
            KeyCode::PageDown => {
                self.scroll = (self.scroll + 10).min(Self::lines().len() as u16);
                Action::Redraw
            }
            KeyCode::PageUp => {
                self.scroll = self.scroll.saturating_sub(10);
                Action::Redraw
            }
            _ => Action::Unavailable("the help is open: ↑↓ scroll, Esc or ? closes it".into()),
        })
    }

    fn lines() -> Vec<Line<'static>> {
        let mut lines = Vec::new();
        let mut scope = None;
        for k in KEYMAP {
            if scope != Some(k.scope) {
                if scope.is_some() {
                    lines.push(Line::from(""));
                }
                lines.push(Line::styled(k.scope.title(), header_style()));
                scope = Some(k.scope);
            }
            lines.push(Line::from(vec![
                Span::raw(format!("  {:<14}", k.keys)),
                Span::raw(k.what),
            ]));
        }
        lines.push(Line::from(""));
        lines.push(Line::styled(": commands", header_style()));
        for (name, what) in COMMANDS {
            lines.push(Line::from(vec![
                Span::raw(format!("  :{name:<13}")),
                Span::raw(*what),
            ]));
        }
        lines
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let lines = Self::lines();
        let popup = area.centered(
            Constraint::Length(area.width.saturating_sub(4).min(84)),
            Constraint::Length((lines.len() as u16 + 2).min(area.height)),
        );
        let visible = popup.height.saturating_sub(2);
        let max_scroll = (lines.len() as u16).saturating_sub(visible);
        let scroll = self.scroll.min(max_scroll);
        let more = if max_scroll > 0 {
            format!(
                " {}/{} · ↑↓ scroll ",
                scroll + visible.min(lines.len() as u16),
                lines.len()
            )
        } else {
            String::new()
        };
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).scroll((scroll, 0)).block(
                Block::bordered()
                    .title(Line::styled(" help · Esc closes ", header_style()))
                    .title_bottom(Line::styled(more, dim()).right_aligned()),
            ),
            popup,
        );
    }
}
