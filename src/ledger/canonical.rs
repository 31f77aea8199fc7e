//! Recognising a ledger line that is already in canonical form, so that
//! `verify` can hash its bytes as they are instead of parsing and
//! re-canonicalizing a million entries.
//!
//! maestro writes each line as the RFC 8785 canonical JSON of the entry
//! without its hash (produced by `serde_jcs`), with `,"hash":"…"}` put in
//! place of the closing brace. [`split`] undoes that and checks, in one pass
//! over the bytes, that what is left is canonical: no whitespace, object keys
//! in strictly increasing order, strings escaped exactly as RFC 8785 escapes
//! them, integers in their shortest form and within ±2^53. Anything it is not
//! sure about (a float, a non-ASCII or escaped key, deep nesting, a line
//! somebody reformatted) is answered with `None`, and the caller takes the
//! slow path through `serde_jcs`. A `Some` therefore means: these bytes are
//! exactly what `serde_jcs` would produce from the line, so hashing them is
//! the same as canonicalizing and hashing.

/// `,"hash":"` + 64 hex digits + `"}`.
const SUFFIX_LEN: usize = 9 + 64 + 2;
/// Larger than any entry maestro writes; deeper input takes the slow path.
const MAX_DEPTH: usize = 32;
/// JavaScript's `Number.MAX_SAFE_INTEGER`: RFC 8785 writes numbers as
/// IEEE 754 doubles, so larger integers may not print as they are written.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A line split into the canonical bytes its hash covers and the fields the
/// chain needs.
#[derive(Debug)]
pub(crate) struct Split<'a> {
    pub seq: u64,
    pub prev: &'a str,
    pub hash: &'a str,
}

/// Split `line` (without its newline) if it is a canonical entry line. The
/// canonical bytes of the unhashed entry are left in `unhashed`.
pub(crate) fn split<'a>(line: &'a [u8], unhashed: &mut Vec<u8>) -> Option<Split<'a>> {
    let body_end = line.len().checked_sub(SUFFIX_LEN)?;
    let (head, suffix) = line.split_at(body_end);
    let hash = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    if !hash.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    // `{` followed directly by the suffix would not even be JSON.
    if head.len() < 2 {
        return None;
    }
    std::str::from_utf8(head).ok()?;
    unhashed.clear();
    unhashed.extend_from_slice(head);
    unhashed.push(b'}');
    let mut scanner = Scanner {
        bytes: unhashed,
        at: 0,
    };
    let (seq, prev) = scanner.top_level()?;
    // `prev` points into `unhashed`; the same bytes sit at the same place in `line`.
    let prev = std::str::from_utf8(&line[prev.0..prev.1]).ok()?;
    let hash = std::str::from_utf8(hash).ok()?;
    Some(Split { seq, prev, hash })
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The top-level object: `seq` (a number) and the byte range of `prev`'s
    /// contents (a string without escapes) must be there, `hash` must not.
    fn top_level(&mut self) -> Option<(u64, (usize, usize))> {
        self.eat(b'{')?;
        let (mut seq, mut prev) = (None, None);
        let mut last_key: Option<(usize, usize)> = None;
        loop {
            let key = self.key(last_key)?;
            last_key = Some(key);
            self.eat(b':')?;
            let start = self.at;
            match &self.bytes[key.0..key.1] {
                b"hash" => return None,
                b"seq" => {
                    self.value(1)?;
                    seq = std::str::from_utf8(&self.bytes[start..self.at])
                        .ok()?
                        .parse::<u64>()
                        .ok();
                }
                b"prev" => {
                    let (from, to, escaped) = self.string()?;
                    if escaped {
                        return None;
                    }
                    prev = Some((from, to));
                }
                _ => self.value(1)?,
            }
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.at += 1;
        (self.at == self.bytes.len()).then_some(())?;
        Some((seq?, prev?))
    }

    /// An object key: plain ASCII without escapes (so byte order is the
    /// UTF-16 order RFC 8785 sorts by), after `last` in that order.
    fn key(&mut self, last: Option<(usize, usize)>) -> Option<(usize, usize)> {
        let (from, to, escaped) = self.string()?;
        let key = &self.bytes[from..to];
        if escaped || !key.is_ascii() {
            return None;
        }
        match last {
            Some((a, b)) if self.bytes[a..b] >= *key => None,
            _ => Some((from, to)),
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.at += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                let mut last = None;
                loop {
                    last = Some(self.key(last)?);
                    self.eat(b':')?;
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => return self.eat(b'}'),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => return self.eat(b']'),
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// `0` or `-?[1-9][0-9]*` within ±2^53; fractions and exponents (which
    /// RFC 8785 may print differently) are left to the slow path.
    fn integer(&mut self) -> Option<()> {
        self.eat(b'-');
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        let canonical = match digits {
            [] => false,
            // `-0` prints as `0`.
            [b'0'] => start == 0 || self.bytes[start - 1] != b'-',
            [b'0', ..] => false,
            _ => {
                digits.len() <= 16
                    && std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<u64>().ok())
                        .is_some_and(|n| n <= MAX_SAFE_INTEGER)
            }
        };
        let fraction = matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (canonical && !fraction).then_some(())
    }

    /// A string as RFC 8785 writes it: `"` and `\` escaped, control
    /// characters as `\b \t \n \f \r` or `\u00xx` (lowercase), nothing else
    /// escaped. Returns the range of its contents and whether it had escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.at;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.at += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            let control = match hex {
                                [b'0', b'0', high @ (b'0' | b'1'), low] => {
                                    let low = match low {
                                        b'0'..=b'9' => low - b'0',
                                        b'a'..=b'f' => low - b'a' + 10,
                                        _ => return None,
                                    };
                                    (high - b'0') * 16 + low
                                }
                                _ => return None,
                            };
                            // These have short escapes, which RFC 8785 uses.
                            if matches!(control, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                0..0x20 => return None,
                _ => self.at += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::split;

    /// `value` (an object) as a ledger line: canonical, with a hash added.
    fn sealed(value: &Value) -> Vec<u8> {
        let mut line = serde_jcs::to_vec(value).unwrap();
        line.pop();
        line.extend_from_slice(format!(",\"hash\":\"{}\"}}", "ab".repeat(32)).as_bytes());
        line
    }

    /// What the slow path would hash for `line`.
    fn slow(line: &[u8]) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(line).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        serde_jcs::to_vec(&value).unwrap()
    }

    fn entry(body: Value) -> Value {
        json!({"seq": 7, "time": "2026-01-01T00:00:00.000Z", "prev": "0".repeat(64), "body": body})
    }

    #[test]
    fn canonical_lines_split_into_what_serde_jcs_hashes() {
        let bodies = [
            json!({}),
            json!({"s": "plain", "n": 0, "neg": -5, "big": 9_007_199_254_740_991_u64, "t": true, "f": false, "z": null}),
            json!({"ctl": "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}", "q": "\"\\/", "u": "ünï 😀 \u{e000}\u{ffff}"}),
            json!({"ascii": (0u8..0x80).map(char::from).collect::<String>(), "high": "\u{80}\u{9f}\u{2028}\u{10ffff}"}),
            json!({"a": [], "b": [[], {}], "c": [1, "x", {"k": [true]}], "AB": 1, "Ab": 2, "a_b": 3}),
        ];
        for body in bodies {
            let line = sealed(&entry(body.clone()));
            let mut unhashed = Vec::new();
            let split = split(&line, &mut unhashed)
                .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(&line)));
            assert_eq!((split.seq, split.prev), (7, "0".repeat(64).as_str()));
            assert_eq!(unhashed, slow(&line), "{body}");
        }
    }

    #[test]
    fn anything_else_takes_the_slow_path() {
        let canonical = String::from_utf8(sealed(&entry(json!({"k": "v"})))).unwrap();
        let variants = [
            canonical.replacen("{\"body\"", "{ \"body\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":\"\\u0076\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":\"\\/\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":\"\\u001F\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":\"\\u000a\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":1.0", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":1e2", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":-0", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":01", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":9007199254740992", 1),
            canonical.replacen("\"k\":\"v\"", "\"ü\":\"v\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"\\u006b\":\"v\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"k\":\"v\",\"k\":\"w\"", 1),
            canonical.replacen("\"k\":\"v\"", "\"l\":\"v\",\"k\":\"w\"", 1),
            canonical.replacen("{\"body\"", "{\"a\":1,\"hash\":\"x\",\"body\"", 1),
            canonical.replacen("\"seq\":7", "\"seq\":\"7\"", 1),
            canonical.replacen(
                "\"k\":\"v\"",
                &format!("\"k\":{}1{}", "[".repeat(40), "]".repeat(40)),
                1,
            ),
            canonical.replacen(&"ab".repeat(32), &"AB".repeat(32), 1),
            canonical.replacen("{\"k\"", "{ \"k\"", 1),
            format!("{canonical} "),
            // Key order of maestro's own struct, not canonical.
            serde_json::to_string(&json!({"body": {}, "seq": 7}))
                .unwrap()
                .replacen("\"seq\"", "\"prev\":\"x\",\"seq\"", 1),
        ];
        for variant in &variants {
            assert_ne!(variant, &canonical);
            assert!(
                split(variant.as_bytes(), &mut Vec::new()).is_none(),
                "{variant}"
            );
        }
        assert!(
            split(
                b"{,\"hash\":\"abababababababababababababababababababababababababababababababab\"}",
                &mut Vec::new()
            )
            .is_none()
        );
    }
}
