//! The `:api` view: the read-only HTTP API's tokens (`tokens.toml`: who
//! each one acts as, when it was made, its hash's first digits; the tokens
//! themselves were printed once and are nowhere else), how to serve them,
//! and which store the API and this console read, shared or not.

use std::cell::Cell;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::list::{Nav, navigate};
use crate::api::token::ApiToken;
use crate::sot::Sot;
use crate::terminal_text::sanitize;
use crate::tui::action::Action;
use crate::tui::text::{dim, header_style};

/// Hex digits of a token's SHA-256 shown: enough to tell tokens apart.
const HASH_SHOWN: usize = 12;

pub struct ApiView {
    tokens: Vec<ApiToken>,
    /// Where runs, rollouts and the ledger are read from, as shown.
    store: String,
    cursor: usize,
    offset: Cell<usize>,
    page: Cell<usize>,
}

impl ApiView {
    pub fn new(sot: &Sot, store: String) -> ApiView {
        ApiView {
            tokens: sot.api_tokens.values().cloned().collect(),
            store,
            cursor: 0,
            offset: Cell::new(0),
            page: Cell::new(10),
        }
    }

    pub fn handle_key(&mut self, key: crossterm::event::KeyEvent) -> Option<Action> {
        let nav = Nav::of(key)?;
        self.cursor = navigate(nav, self.cursor, self.tokens.len(), self.page.get());
        Some(Action::Redraw)
    }

    fn about(&self) -> Vec<Line<'static>> {
        let shared =
            self.store.starts_with("postgres://") || self.store.starts_with("postgresql://");
        vec![
            Line::raw(format!(
                "store {} · {}",
                sanitize(self.store.as_bytes()),
                if shared {
                    "PostgreSQL: shared with every controller of the team (runs, rollouts, approvals, kill switches, one ledger chain)"
                } else {
                    "this machine's SQLite file (a team shares one PostgreSQL store: [store] url in maestro.toml)"
                }
            )),
            Line::raw(
                "maestro serve --listen 127.0.0.1:PORT answers these tokens, read-only: the SoT at any commit, runs, rollouts, the ledger, telemetry (/openapi.json)",
            ),
            Line::styled(
                "maestro token add NAME --person WHO -r WHY prints a new token once and commits its hash · maestro token remove NAME revokes it",
                dim(),
            ),
        ]
    }

    pub fn draw(&self, frame: &mut Frame, area: Rect) {
        let bottom = super::draw_summary_box(frame, area, " api ".into(), self.about());
        let block = Block::bordered().title(Line::styled(
            format!(" tokens {} ", self.tokens.len()),
            header_style(),
        ));
        let inner = block.inner(bottom);
        frame.render_widget(block, bottom);
        if self.tokens.is_empty() {
            frame.render_widget(
                Paragraph::new(
                    "tokens.toml holds no token, so the API refuses every request.\nmaestro token add NAME --person YOU -r WHY makes one.",
                ),
                inner,
            );
            return;
        }
        let visible = super::list::visible(
            &self.offset,
            &self.page,
            self.cursor,
            self.tokens.len(),
            inner,
        );
        let rows = self.tokens[visible.start..visible.end].iter().map(|t| {
            Row::new(vec![
                sanitize(t.name.as_bytes()),
                sanitize(t.person.as_bytes()),
                t.created
                    .as_deref()
                    .map_or("-".into(), |c| sanitize(c.as_bytes())),
                format!("{}…", &t.sha256[..t.sha256.len().min(HASH_SHOWN)]),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(20),
                Constraint::Length(16),
                Constraint::Length(21),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(vec!["TOKEN", "ACTS AS", "CREATED", "SHA-256"]).style(header_style()));
        super::list::draw_table(frame, table, inner, self.cursor, visible.start);
    }
}
