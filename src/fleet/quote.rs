//! Quoting for POSIX `sh`: every value that reaches a remote shell goes through here.

/// Quote `s` as one `sh` word: single quotes, with `'` written as `'\''`.
/// Nothing inside is expanded: no `$`, no backticks, no globs, no newlines split.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::sh_quote;

    #[test]
    fn hostile_values_stay_one_literal_word() {
        let hostile = [
            "it's",
            "$(touch /tmp/pwned)",
            "`id`",
            "a\nb",
            "*",
            "",
            "--rm -rf /",
            "\\'\"",
            "$HOME",
        ];
        for h in hostile {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf '%s' {}", sh_quote(h)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), h, "quoting {h:?}");
        }
        assert_eq!(sh_quote("plain-word_1.2"), "plain-word_1.2");
    }
}
