//! Diagnostics for problems in the files maestro reads (the SoT, playbooks,
//! hardening baselines): every problem carries a code, the file, the line and
//! column, the offending source line and, where we can guess one, a hint.
//!
//! This is the ground floor: the SoT loader and each library's checks
//! (`crate::playbook`, `crate::harden`) build their diagnostics here, and it
//! depends on none of them.
//!
//! Rendering follows rustc's layout because operators already read it fluently.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::terminal_text::sanitize_str;

/// What kind of problem a diagnostic reports. The kebab-case name is printed
/// (`error[unknown-key]`) and is stable: scripts and tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The file is not valid TOML.
    Syntax,
    /// A key the schema does not know (usually a typo).
    UnknownKey,
    /// A value of the wrong TOML type.
    Type,
    /// A required key is absent.
    MissingKey,
    /// Two definitions share a name (or two nodes share an address and port).
    Duplicate,
    /// A reference to a node, group, model, version, profile or playbook that does not exist.
    DanglingRef,
    /// An address that is neither an IP address nor a valid host name.
    BadAddress,
    /// A port outside 1..=65535.
    BadPort,
    /// A tag with a malformed key or value, or a value outside the taxonomy.
    BadTag,
    /// A tag the settings require is missing.
    MissingTag,
    /// Any other value that breaks a rule (names, autonomy levels, checksums, versions).
    BadValue,
    /// A file the SoT refers to cannot be found or read.
    MissingFile,
    /// A file is a symlink that leads outside the SoT (or its library directory).
    OutsideSot,
    /// A value that looks like a credential (the secret scanner's rules).
    Secret,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownKey => "unknown-key",
            Code::Type => "type",
            Code::MissingKey => "missing-key",
            Code::Duplicate => "duplicate",
            Code::DanglingRef => "dangling-ref",
            Code::BadAddress => "bad-address",
            Code::BadPort => "bad-port",
            Code::BadTag => "bad-tag",
            Code::MissingTag => "missing-tag",
            Code::BadValue => "bad-value",
            Code::MissingFile => "missing-file",
            Code::OutsideSot => "outside-sot",
            Code::Secret => "secret",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, located in a file.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    /// Path as the operator would type it (the SoT directory joined with the file).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    /// The source line the problem is on (without its newline).
    pub source_line: String,
    /// How many characters to underline from `col`.
    pub width: usize,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A TOML parse or deserialisation error in `file`, at its span: an
    /// unknown field is `unknown-key` (with the allowed keys the parser
    /// lists), anything else `syntax`.
    pub fn from_toml_error(file: &SourceFile, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        let mut message = err
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_string();
        let mut hint = None;
        let code = if message.starts_with("unknown field") {
            Code::UnknownKey
        } else {
            Code::Syntax
        };
        if message == "duplicate key" {
            if let Some(key) = file.text.get(span.clone()) {
                message = format!("duplicate key `{key}`");
            }
            hint = Some("a key or table may be defined only once per file".to_string());
        }
        let mut d = file.diagnostic(code, span, message);
        d.hint = hint;
        d
    }

    /// A problem with a whole file (it cannot be read, it extends itself),
    /// pointed at its start.
    pub fn file_level(code: Code, path: &Path, message: String) -> Diagnostic {
        SourceFile::new(path.to_path_buf(), String::new()).diagnostic(code, 0..0, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every part can hold text from the SoT or the command line (a node
        // name with an escape sequence): none of it reaches the terminal raw.
        let gutter = self.line.to_string().len();
        let pad = " ".repeat(gutter);
        writeln!(f, "error[{}]: {}", self.code, one_line(&self.message))?;
        writeln!(
            f,
            "{pad}--> {}:{}:{}",
            one_line(&self.file.display().to_string()),
            self.line,
            self.col
        )?;
        writeln!(f, "{pad} |")?;
        writeln!(f, "{} | {}", self.line, one_line(&self.source_line))?;
        // The caret lines up with the excerpt as printed, where a control
        // character takes two columns (`^[`).
        let before: String = self
            .source_line
            .chars()
            .take(self.col.saturating_sub(1))
            .collect();
        let under: String = self
            .source_line
            .chars()
            .skip(self.col.saturating_sub(1))
            .take(self.width)
            .collect();
        let lead: String = one_line(&before)
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = one_line(&under).chars().count().max(self.width).max(1);
        write!(f, "{pad} | {lead}{}", "^".repeat(width))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = hint: {}", one_line(hint))?;
        }
        Ok(())
    }
}

/// Terminal-safe text on one line: control characters (newlines included)
/// in caret notation, so a value can neither drive the terminal nor forge
/// another diagnostic line.
fn one_line(s: &str) -> String {
    sanitize_str(&s.replace('\n', "^J"))
}

/// A loaded file's text with a line index, so byte offsets turn into line:col.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub display_path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(display_path: PathBuf, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            display_path,
            text,
            line_starts,
        }
    }

    /// 0-based line index and the line's byte range (without the newline).
    fn line_of(&self, offset: usize) -> (usize, Range<usize>) {
        let offset = offset.min(self.text.len());
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[idx];
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |n| start + n);
        let end = if end > start && self.text.as_bytes()[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        (idx, start..end)
    }

    /// Build a diagnostic pointing at `span` (byte offsets into this file).
    pub fn diagnostic(&self, code: Code, span: Range<usize>, message: String) -> Diagnostic {
        // Spans may come from elsewhere (a lossy decode, a parser); never slice mid-character.
        let mut span = span.start.min(self.text.len())..span.end.min(self.text.len());
        while !self.text.is_char_boundary(span.start) {
            span.start -= 1;
        }
        while !self.text.is_char_boundary(span.end) {
            span.end += 1;
        }
        let (idx, line) = self.line_of(span.start);
        let start = span.start.clamp(line.start, line.end);
        let col = self.text[line.start..start].chars().count() + 1;
        let end = span.end.clamp(start, line.end);
        let width = self.text[start..end].chars().count();
        Diagnostic {
            code,
            message,
            file: self.display_path.clone(),
            line: idx + 1,
            col,
            source_line: self.text[line].to_string(),
            width,
            hint: None,
        }
    }
}

/// Every problem found in one load, in file then position order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn one(d: Diagnostic) -> Diagnostics {
        Diagnostics(vec![d])
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
    pub(crate) fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.col).cmp(&(&b.file, b.line, b.col)));
        self.0.dedup_by(|a, b| {
            a.file == b.file && a.line == b.line && a.col == b.col && a.message == b.message
        });
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<I: IntoIterator<Item = Diagnostic>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}\n")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} found; nothing was changed",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The path an operator would type: the SoT directory as given joined with the
/// file, with `.` and `dir/..` folded lexically (`sot/../profiles/x.toml` reads
/// as `profiles/x.toml`).
pub fn display_path(root: &Path, rel: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    let joined = root.join(rel);
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}
