//! Value rules shared by the registries: names, addresses, ports, users,
//! tags, checksums, versions. Each reports through `cx` and says whether the
//! value passed.

use std::net::IpAddr;
use std::ops::Range;

use crate::diag::Code;
use crate::sot::schema::{At, Cx};
pub(super) fn check_name(cx: &mut Cx<'_>, name: &str, span: Range<usize>, kind: &str) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !ok {
        cx.error_hint(
            Code::BadValue,
            span,
            format!("invalid {kind} name `{name}`"),
            "use 1-63 lowercase letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit",
        );
    }
    ok
}

pub(super) fn check_address(cx: &mut Cx<'_>, a: &At<String>) {
    let s = a.value.as_str();
    if s.parse::<IpAddr>().is_ok() {
        return;
    }
    let looks_numeric = s
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    let hostname_ok = !s.is_empty()
        && s.len() <= 253
        && !looks_numeric
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !hostname_ok {
        let hint = if looks_numeric || s.contains(':') {
            "not a valid IPv4 or IPv6 address"
        } else {
            "use an IP address or a DNS host name (letters, digits and `-` in dot-separated labels)"
        };
        cx.error_hint(
            Code::BadAddress,
            a.span.clone(),
            format!("invalid address `{s}`"),
            hint,
        );
    }
}

pub(super) fn check_port(cx: &mut Cx<'_>, p: &At<i64>) -> Option<u16> {
    match u16::try_from(p.value) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            cx.error_hint(
                Code::BadPort,
                p.span.clone(),
                format!("port {} is out of range", p.value),
                "a port is between 1 and 65535; SSH listens on 22 by default",
            );
            None
        }
    }
}

pub(super) fn check_user(cx: &mut Cx<'_>, u: &At<String>) {
    let ok = !u.value.is_empty()
        && u.value.len() <= 32
        && u.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !u.value.starts_with('-');
    if !ok {
        cx.error_hint(
            Code::BadValue,
            u.span.clone(),
            format!("invalid user name `{}`", u.value),
            "a POSIX user name: letters, digits, `-`, `_`, `.`",
        );
    }
}

pub(super) fn check_tag_key(cx: &mut Cx<'_>, k: &At<String>) -> bool {
    let s = &k.value;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        cx.error_hint(
            Code::BadTag,
            k.span.clone(),
            format!("invalid tag key `{s}`"),
            "tag keys are lowercase: a letter, then letters, digits, `-`, `_` or `.`",
        );
    }
    ok
}

pub(super) fn check_tag_value(cx: &mut Cx<'_>, k: &At<String>, v: &At<String>) -> bool {
    let s = &v.value;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if !ok {
        cx.error_hint(
            Code::BadTag,
            v.span.clone(),
            format!("invalid value `{s}` for tag `{}`", k.value),
            "tag values: letters, digits, `-`, `_`, `.`, `:` or `/`, no spaces",
        );
    }
    ok
}

pub(super) fn check_sha256(cx: &mut Cx<'_>, s: &At<String>) {
    if s.value.len() != 64 || !s.value.bytes().all(|b| b.is_ascii_hexdigit()) {
        cx.error_hint(
            Code::BadValue,
            s.span.clone(),
            format!("`{}` is not a sha256 digest", s.value),
            "64 hexadecimal digits, as printed by `sha256sum FILE`",
        );
    }
}

pub(super) fn check_version(cx: &mut Cx<'_>, v: &str, span: Range<usize>) {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        cx.error_hint(
            Code::BadValue,
            span,
            format!("`{v}` is not a version"),
            "use semantic versions such as `1.4.0` or `2.0.0-rc.1`",
        );
    }
}
