//! The console's views and popups. Each has `draw(&self, frame, area)`, a
//! pure function of its state, and `handle_key(&mut self, key) ->
//! Option<Action>`: `None` means the key means nothing here (the app then
//! says so), `Some(Action::Redraw)` that the component used it itself.

pub mod agents;
pub mod api;
pub mod approvals;
pub mod confirm;
pub mod fleet;
pub mod groups;
pub mod help;
pub mod kill;
pub mod ledger;
pub mod lessons;
pub mod list;
pub mod live;
pub mod node;
pub mod prompt;
pub mod reflect;
pub mod rollouts;
pub mod run;
pub mod runs;
pub mod telemetry;

/// `lines` wrapped in a bordered box titled `title` across the top of
/// `area`, as tall as they wrap to but at most half of it; returns the rest
/// of `area`, below the box.
pub fn draw_summary_box(
    frame: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    title: String,
    lines: Vec<ratatui::text::Line<'_>>,
) -> ratatui::layout::Rect {
    use ratatui::layout::{Constraint, Layout};
    use ratatui::text::Line;
    use ratatui::widgets::{Block, Paragraph, Wrap};
    let inner = usize::from(area.width.saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(rows + 2)
        .unwrap_or(u16::MAX)
        .min(area.height / 2);
    let [top, rest] =
        Layout::vertical([Constraint::Length(height), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Line::styled(title, crate::tui::text::header_style()))),
        top,
    );
    rest
}

/// Data that a background task is fetching.
#[derive(Debug, Clone)]
pub enum Loadable<T> {
    Loading,
    Loaded(T),
    Failed(String),
}
