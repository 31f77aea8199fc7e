//! The groups view: every group with its member count; Enter shows the
//! group's nodes in the fleet view.

use std::cell::Cell;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::list::{Nav, navigate};
use crate::sot::Sot;
use crate::tui::action::Action;
use crate::tui::text::header_style;

struct GroupRow {
    name: String,
    members: usize,
    description: String,
}

pub struct GroupsView {
    groups: Vec<GroupRow>,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
}

impl GroupsView {
    pub fn new(sot: &Sot) -> GroupsView {
        let groups = sot
            .groups
            .values()
            .map(|g| GroupRow {
                name: g.name.clone(),
                members: sot
                    .nodes
                    .iter()
                    .filter(|n| n.groups.contains(&g.name))
                    .count(),
                description: g.description.clone().unwrap_or_default(),
            })
            .collect();
        GroupsView {
            groups,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
        }
    }

    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Action> {
        if let Some(nav) = Nav::of(key) {
            self.cursor = navigate(nav, self.cursor, self.groups.len(), self.page.get());
            return Some(Action::Redraw);
        }
        match key.code {
            KeyCode::Enter => Some(match self.groups.get(self.cursor) {
                Some(g) => Action::Filter(format!("group={}", g.name)),
                None => Action::Unavailable("the SoT has no groups".into()),
            }),
            _ => None,
        }
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let block = Block::bordered().title(Line::styled(
            format!(" groups {} ", self.groups.len()),
            header_style(),
        ));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if self.groups.is_empty() {
            frame.render_widget(
                Paragraph::new("The SoT has no groups (groups.toml)."),
                inner,
            );
            return;
        }
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.groups.len(),
            inner,
        );
        let (offset, end) = (visible.start, visible.end);
        let rows = self.groups[offset..end].iter().map(|g| {
            Row::new(vec![
                g.name.clone(),
                g.members.to_string(),
                g.description.clone(),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(20),
                Constraint::Length(5),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(vec!["GROUP", "NODES", "DESCRIPTION"]).style(header_style()));
        super::list::draw_table(frame, table, inner, self.cursor, offset);
    }
}
