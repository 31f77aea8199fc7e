//! Drawing the whole frame: the header (SoT, git HEAD, fleet counts), the
//! current view, the footer (message and key hints, or the prompt) and the
//! popups on top. A pure function of the app's state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use unicode_width::UnicodeWidthStr;

use super::{App, ExecPolicy, Level};
use crate::tui::action::ViewId;
use crate::tui::components::Loadable;
use crate::tui::keys::{self, Scope};
use crate::tui::text::{count, dim, fit, fit_left, header_style};

impl App {
    pub fn draw(&self, frame: &mut Frame) {
        let area = frame.area();
        if area.width < 40 || area.height < 10 {
            frame.render_widget(
                Paragraph::new(format!(
                    "The terminal is {}×{}: maestro needs at least 40×10 (80×24 is comfortable).",
                    area.width, area.height
                ))
                .wrap(Wrap { trim: false }),
                area,
            );
            return;
        }
        // While a kill switch is engaged, a banner row nobody can miss.
        let banner_rows = if self.killswitch.is_empty() { 0 } else { 1 };
        let [banner, header, body, bottom] = Layout::vertical([
            Constraint::Length(banner_rows),
            Constraint::Length(2),
            Constraint::Fill(1),
            Constraint::Length(2),
        ])
        .areas(area);
        if banner_rows > 0 {
            self.draw_kill_banner(frame, banner);
        }
        self.draw_header(frame, header);
        match self.view() {
            ViewId::Fleet => self.fleet.draw(frame, body),
            ViewId::Groups => self.groups.draw(frame, body),
            ViewId::Runs => self.runs.draw(frame, body),
            ViewId::Agents => self.agents.draw(frame, body),
            ViewId::Top => self.telemetry.draw(frame, body),
            ViewId::Rollouts => self.rollouts.draw(frame, body),
            ViewId::Ledger => self.ledger.draw(frame, body),
            ViewId::Approvals => self.approvals.draw(frame, body),
            ViewId::Reflect => self.reflect.draw(frame, body),
            ViewId::Lessons => self.lessons.draw(frame, body),
            ViewId::Api => self.api.draw(frame, body),
            ViewId::Run => match &self.run {
                Some((_, Loadable::Loaded(r))) => r.draw(frame, body),
                Some((id, Loadable::Loading)) => {
                    placeholder(frame, body, id, "reading the run store…")
                }
                Some((id, Loadable::Failed(e))) => placeholder(frame, body, id, e),
                None => {}
            },
            ViewId::Node => {
                if let Some(n) = &self.node {
                    n.draw(frame, body);
                }
            }
            ViewId::Live => {
                if let Some(l) = &self.live {
                    l.draw(frame, body);
                }
            }
        }
        match &self.prompt {
            Some(p) => p.draw(frame, bottom),
            None => self.draw_footer(frame, bottom),
        }
        if let Some(h) = &self.help {
            h.draw(frame, body);
        }
        if let Some(k) = &self.kill {
            k.draw(frame, body);
        }
        if let Some(c) = &self.confirm {
            c.draw(frame, body);
        }
    }

    /// White on red, the full width: which agents are killed (all of them
    /// first, so a narrow terminal still shows every name), then why and by whom.
    fn draw_kill_banner(&self, frame: &mut Frame, area: Rect) {
        let name = |e: &crate::killswitch::Engaged| {
            let who = if e.agent == crate::killswitch::ALL {
                "ALL AGENTS".to_string()
            } else {
                e.agent.clone()
            };
            match &e.limit {
                Some(l) => format!("{who} on {l}"),
                None => who,
            }
        };
        let names: Vec<String> = self.killswitch.iter().map(name).collect();
        let why: Vec<String> = self
            .killswitch
            .iter()
            .map(|e| format!("{} ({})", e.reason, e.by))
            .collect();
        let text = format!(
            " ■ KILL SWITCH ENGAGED: {} — {} ",
            crate::terminal_text::sanitize(names.join(", ").as_bytes()),
            crate::terminal_text::sanitize(why.join(" · ").as_bytes())
        );
        let style = Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(ratatui::style::Modifier::BOLD);
        frame.render_widget(
            Paragraph::new(Line::styled(fit(&text, area.width as usize), style)).style(style),
            area,
        );
    }

    fn draw_header(&self, frame: &mut Frame, area: Rect) {
        let [top, second] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        let head = self
            .info
            .head
            .as_deref()
            .map(|h| format!(" @ {h}"))
            .unwrap_or_else(|| " (not in git)".into());
        let fleet = format!(" │ fleet {}", self.sot.settings.name);
        let fixed = self.info.title.len() + 8 + head.len() + fleet.len() + 2;
        let sot = fit_left(
            &self.info.sot,
            (area.width as usize).saturating_sub(fixed).max(8),
        );
        let mut spans = vec![
            Span::styled(
                format!(" {} ", self.info.title),
                header_style().fg(Color::Cyan),
            ),
            Span::raw(format!("│ SoT {sot}{head}{fleet}")),
        ];
        if let ExecPolicy::Refused(_) = self.info.policy {
            spans.push(Span::styled(" │ read-only", Style::new().fg(Color::Yellow)));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), top);

        let c = self.fleet.counts();
        let mut spans = vec![Span::raw(format!(
            " {} · {} reachable · {} unreachable · {} unknown",
            count(c.nodes, "node"),
            c.reachable,
            c.unreachable,
            c.unknown
        ))];
        if c.last_failed > 0 {
            spans.push(Span::styled(
                format!(" · {} not ok in their last run", c.last_failed),
                Style::new().fg(Color::Red),
            ));
        }
        // Reflection, as seed 002 counts it: answered over triggered.
        if let Some((adoption, pending)) = self.reflect.summary()
            && (pending > 0 || adoption.is_some())
        {
            let text = format!(
                " · reflections {} answered, {pending} pending",
                adoption
                    .map(|p| format!("{p:.0}%"))
                    .unwrap_or_else(|| "-".into())
            );
            spans.push(if pending > 0 {
                Span::styled(text, Style::new().fg(Color::Yellow))
            } else {
                Span::raw(text)
            });
        }
        if self.fleet.marked_count() > 0 {
            spans.push(Span::raw(format!(
                " · {} marked",
                self.fleet.marked_count()
            )));
        }
        if let Some(l) = &self.live
            && l.in_flight()
        {
            let (done, total) = l.progress();
            spans.push(Span::styled(
                format!(" │ run in flight {done}/{total} (:live)"),
                Style::new().fg(Color::Yellow),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)).style(dim()), second);
    }

    fn draw_footer(&self, frame: &mut Frame, area: Rect) {
        let [message, hints] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
        if let Some((level, text)) = &self.message {
            let style = match level {
                Level::Info => Style::new(),
                Level::Warn => Style::new().fg(Color::Yellow),
                Level::Error => Style::new().fg(Color::Red),
            };
            frame.render_widget(
                Paragraph::new(Line::styled(fit(text, message.width as usize), style)),
                message,
            );
        }
        let scope = match self.view() {
            ViewId::Fleet => Scope::Fleet,
            ViewId::Groups => Scope::Groups,
            ViewId::Node => Scope::Node,
            ViewId::Runs => Scope::Runs,
            ViewId::Agents => Scope::Agents,
            ViewId::Top => Scope::Top,
            ViewId::Rollouts => Scope::Rollouts,
            ViewId::Ledger => Scope::Ledger,
            ViewId::Approvals => Scope::Approvals,
            ViewId::Reflect if self.reflect.form_open() => Scope::AnswerForm,
            ViewId::Reflect => Scope::Reflect,
            ViewId::Lessons => Scope::Lessons,
            ViewId::Api => Scope::Api,
            ViewId::Run => Scope::Run,
            ViewId::Live => Scope::Live,
        };
        // The view's keys while they fit, then always back, help and quit.
        let mut view_hints: Vec<(&str, &str)> = keys::hints(scope);
        view_hints.retain(|(k, _)| !matches!(*k, "?" | "q  Ctrl-C"));
        if self.stack.len() > 1 {
            view_hints.push(("Esc", "back"));
        }
        let tail = [("?", "help"), ("q", "quit")];
        let width = |items: &[(&str, &str)]| -> usize {
            items
                .iter()
                .map(|(k, h)| k.split_whitespace().next().unwrap_or(k).width() + h.width() + 5)
                .sum()
        };
        let room = (hints.width as usize).saturating_sub(width(&tail));
        while width(&view_hints) > room && !view_hints.is_empty() {
            view_hints.pop();
        }
        let mut spans = Vec::new();
        for (keys, hint) in view_hints.iter().chain(tail.iter()) {
            let key = keys.split_whitespace().next().unwrap_or(keys);
            spans.push(Span::styled(format!("<{key}>"), header_style()));
            spans.push(Span::raw(format!(" {hint}  ")));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), hints);
    }
}

fn placeholder(frame: &mut Frame, area: Rect, id: &str, text: &str) {
    frame.render_widget(
        Paragraph::new(text.to_string())
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Line::styled(format!(" run {id} "), header_style()))),
        area,
    );
}
