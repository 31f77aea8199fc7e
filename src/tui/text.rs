//! Small formatting helpers shared by the views: ages, durations, widths,
//! node output made safe for the terminal, and the status colours.

use ratatui::style::{Color, Modifier, Style};
use unicode_width::UnicodeWidthStr;

use crate::fleet::NodeStatus;

/// `12s`, `5m`, `3h`, `4d` since `at_ms`.
pub fn age(now_ms: i64, at_ms: i64) -> String {
    let s = (now_ms - at_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `850ms`, `4.2s`, `3m05s`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

/// Cut `s` to `width` terminal columns, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// Cut `s` from the left (paths): `…/fleet/sot`.
pub fn fit_left(s: &str, width: usize) -> String {
    if s.width() <= width {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out: Vec<char> = Vec::new();
    let mut used = 1;
    for &c in chars.iter().rev() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out.into_iter().rev().collect()
}

/// Node output as lines safe to draw: control bytes in caret notation
/// (the CLI's sanitizer), tabs expanded.
pub fn output_lines(bytes: &[u8]) -> Vec<String> {
    crate::terminal_text::sanitize(bytes)
        .lines()
        .map(|l| l.replace('\t', "    "))
        .collect()
}

/// The last non-empty line of some output, safe to draw.
pub fn last_line(bytes: &[u8]) -> String {
    output_lines(bytes)
        .into_iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

pub fn status_style(s: NodeStatus) -> Style {
    Style::new().fg(match s {
        NodeStatus::Ok => Color::Green,
        NodeStatus::Failed => Color::Red,
        NodeStatus::Unreachable => Color::Magenta,
        NodeStatus::TimedOut => Color::Yellow,
        NodeStatus::Cancelled => Color::DarkGray,
    })
}

pub fn header_style() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

pub fn selected_style() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

/// A plural: `1 node`, `3 nodes`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(age(100_000, 99_500), "0s");
        assert_eq!(age(10 * 60_000, 0), "10m");
        assert_eq!(age(3 * 86_400_000, 0), "3d");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(4200), "4.2s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(fit_left("/a/b/c/sot", 6), "…c/sot");
        assert_eq!(output_lines(b"a\tb\x1b[2J\nc"), vec!["a    b^[[2J", "c"]);
    }
}
