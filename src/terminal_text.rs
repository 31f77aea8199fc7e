//! Text that is safe to put on a terminal. Both faces print node output,
//! SoT values and diagnostics through [`sanitize`], so hostile bytes (escape
//! sequences, C1 controls, invalid UTF-8) never reach the terminal raw.

/// Make bytes safe for a terminal: valid UTF-8 text stays, newlines and tabs
/// stay, other control characters become caret notation (`ESC` → `^[`) and
/// invalid UTF-8 becomes U+FFFD.
pub fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\u{7f}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            // C1 controls (U+0080..U+009F) act as escapes on some terminals.
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// [`sanitize`] for text that is already a `str`.
pub fn sanitize_str(s: &str) -> String {
    sanitize(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn hostile_bytes_are_neutralised() {
        assert_eq!(sanitize(b"\x1b[31mred\x1b[0m\n"), "^[[31mred^[[0m\n");
        assert_eq!(sanitize(b"a\rb\x07"), "a^Mb^G");
        assert_eq!(sanitize(b"bad \xff\xfe utf8"), "bad \u{FFFD}\u{FFFD} utf8");
        assert_eq!(sanitize("csi \u{9b}2J".as_bytes()), "csi \\u{9b}2J");
        assert_eq!(sanitize("tab\tok ünï".as_bytes()), "tab\tok ünï");
    }
}
