//! The groups view: every group with its member count; Enter shows the
//! group's nodes in the fleet view.

use std::cell::Cell;

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, HighlightSpacing, Paragraph, Row, Table, TableState};

use super::list::{Nav, navigate, scroll};
use crate::sot::Sot;
use crate::tui::action::Action;
use crate::tui::text::{header_style, selected_style};

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
        let page = (inner.height as usize).saturating_sub(1).max(1);
        self.page.set(page);
        let offset = scroll(self.offset.get(), self.cursor, page, self.groups.len());
        self.offset.set(offset);
        let end = (offset + page).min(self.groups.len());
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
        .header(Row::new(vec!["GROUP", "NODES", "DESCRIPTION"]).style(header_style()))
        .column_spacing(1)
        .highlight_symbol("> ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(selected_style());
        let mut state = TableState::default().with_selected(Some(self.cursor - offset));
        frame.render_stateful_widget(table, inner, &mut state);
    }
}
