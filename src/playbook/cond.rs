//! `changed_when` and `failed_when` of the `command` module: expressions over
//! the command's `rc`, `stdout` and `stderr`, in the syntax of `when`.
//!
//! The result is only known on the node, after the command ran, so the
//! expression is compiled into a shell test the node evaluates with builtins.
//! Every part that does not read `rc`, `stdout` or `stderr` (variables, node
//! tags, literals) is evaluated on the controller with the same engine `when`
//! uses ([`Renderer::value`]) and reaches the script as a quoted literal.
//!
//! Supported: `and`, `or`, `not`, parentheses, `==`, `!=`, `<`, `<=`, `>`,
//! `>=` (numbers, with `rc`), `in` / `not in` (a substring of `stdout` or
//! `stderr`, or `rc in [0, 2]`), and `rc`, `stdout`, `stderr` on their own
//! (true when non-zero / non-empty). Anything else that mentions them is
//! refused with a message saying so.

use std::ops::Range;

use minijinja::Value;

use super::vars::Renderer;
use crate::fleet::quote::sh_quote;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CondError {
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("`{expr}`: {message}")]
    Eval { expr: String, message: String },
}

pub type Result<T> = std::result::Result<T, CondError>;

/// The node-side values a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Rc,
    Stdout,
    Stderr,
}

impl Output {
    fn var(self) -> &'static str {
        match self {
            Output::Rc => "$rc",
            Output::Stdout => "$_m_stdout",
            Output::Stderr => "$_m_stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Int(i64),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn tokenize(src: &str) -> Result<Vec<(Tok, Range<usize>)>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_.".contains(&b[i])) {
                i += 1;
            }
            Tok::Name(src[start..i].to_string())
        } else if c.is_ascii_digit()
            || (c == b'-'
                && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                && matches!(
                    out.last(),
                    None | Some((Tok::Op(_) | Tok::LParen | Tok::LBracket | Tok::Comma, _))
                ))
        {
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            Tok::Int(
                src[start..i].parse().map_err(|_| {
                    CondError::Syntax(format!("`{}` is not a number", &src[start..i]))
                })?,
            )
        } else if c == b'\'' || c == b'"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = b.get(i) else {
                    return Err(CondError::Syntax("a string is not closed".into()));
                };
                if ch == c {
                    i += 1;
                    break;
                }
                if ch == b'\\' {
                    let esc = *b
                        .get(i + 1)
                        .ok_or_else(|| CondError::Syntax("a string is not closed".into()))?;
                    s.push(match esc {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                    i += 2;
                    continue;
                }
                let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
                s.push_str(&src[i..i + ch_len]);
                i += ch_len;
            }
            Tok::Str(s)
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let op = ["==", "!=", "<=", ">="].into_iter().find(|o| *o == two);
            match (op, c) {
                (Some(o), _) => {
                    i += 2;
                    Tok::Op(o)
                }
                (None, b'<') => {
                    i += 1;
                    Tok::Op("<")
                }
                (None, b'>') => {
                    i += 1;
                    Tok::Op(">")
                }
                (None, b'(') => {
                    i += 1;
                    Tok::LParen
                }
                (None, b')') => {
                    i += 1;
                    Tok::RParen
                }
                (None, b'[') => {
                    i += 1;
                    Tok::LBracket
                }
                (None, b']') => {
                    i += 1;
                    Tok::RBracket
                }
                (None, b',') => {
                    i += 1;
                    Tok::Comma
                }
                _ => {
                    return Err(CondError::Unsupported(format!(
                        "`{}` is not supported in changed_when/failed_when (use and, or, not, ==, !=, <, >, in)",
                        &src[start..].chars().next().unwrap_or(' ')
                    )));
                }
            }
        };
        out.push((tok, start..i));
    }
    Ok(out)
}

/// The parsed expression.
#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    In(bool, Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Out(Output),
    /// Evaluated on the controller: the source text of a name, a number or a string.
    Const(Range<usize>),
}

impl Expr {
    fn reads_output(&self) -> bool {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) | Expr::Cmp(_, a, b) | Expr::In(_, a, b) => {
                a.reads_output() || b.reads_output()
            }
            Expr::Not(a) => a.reads_output(),
            Expr::List(v) => v.iter().any(Expr::reads_output),
            Expr::Out(_) => true,
            Expr::Const(_) => false,
        }
    }
    fn reads_text(&self) -> bool {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) | Expr::Cmp(_, a, b) | Expr::In(_, a, b) => {
                a.reads_text() || b.reads_text()
            }
            Expr::Not(a) => a.reads_text(),
            Expr::List(v) => v.iter().any(Expr::reads_text),
            Expr::Out(o) => *o != Output::Rc,
            Expr::Const(_) => false,
        }
    }
}

struct Parser<'a> {
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == w)
    }
    fn bump(&mut self) -> Option<(Tok, Range<usize>)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Expr> {
        let mut e = self.and()?;
        while self.is_word("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr> {
        let mut e = self.not()?;
        while self.is_word("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }
    fn not(&mut self) -> Result<Expr> {
        if self.is_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr> {
        let left = self.primary()?;
        if let Some(Tok::Op(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            let right = self.primary()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.is_word("not")
            && matches!(self.toks.get(self.pos + 1), Some((Tok::Name(n), _)) if n == "in")
        {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.is_word("in") {
            self.pos += 1;
            let right = self.primary()?;
            return Ok(Expr::In(negated, Box::new(left), Box::new(right)));
        }
        Ok(left)
    }
    fn primary(&mut self) -> Result<Expr> {
        let Some((tok, span)) = self.bump() else {
            return Err(CondError::Syntax("the expression ends too early".into()));
        };
        match tok {
            Tok::LParen => {
                let e = self.or()?;
                match self.bump() {
                    Some((Tok::RParen, _)) => Ok(e),
                    _ => Err(CondError::Syntax("a `(` is not closed".into())),
                }
            }
            Tok::LBracket => {
                let mut items = Vec::new();
                if matches!(self.peek(), Some(Tok::RBracket)) {
                    self.pos += 1;
                    return Ok(Expr::List(items));
                }
                loop {
                    items.push(self.primary()?);
                    match self.bump() {
                        Some((Tok::Comma, _)) => {}
                        Some((Tok::RBracket, _)) => return Ok(Expr::List(items)),
                        _ => return Err(CondError::Syntax("a `[` list is not closed".into())),
                    }
                }
            }
            Tok::Name(n) => match n.as_str() {
                "rc" => Ok(Expr::Out(Output::Rc)),
                "stdout" => Ok(Expr::Out(Output::Stdout)),
                "stderr" => Ok(Expr::Out(Output::Stderr)),
                "and" | "or" | "not" | "in" => Err(CondError::Syntax(format!(
                    "`{n}` where a value was expected"
                ))),
                _ if n.starts_with("rc.")
                    || n.starts_with("stdout.")
                    || n.starts_with("stderr.") =>
                {
                    Err(CondError::Unsupported(format!(
                        "`{n}`: methods of rc, stdout and stderr are not supported; use `in` or `==`"
                    )))
                }
                _ => Ok(Expr::Const(span)),
            },
            Tok::Int(_) | Tok::Str(_) => Ok(Expr::Const(span)),
            other => Err(CondError::Syntax(format!(
                "unexpected `{}`",
                self.src.get(span).unwrap_or(match other {
                    Tok::RParen => ")",
                    _ => "?",
                })
            ))),
        }
    }
}

fn parse(src: &str) -> Result<Expr> {
    let toks = tokenize(src)?;
    let mut p = Parser { toks, pos: 0, src };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        let span = p.toks[p.pos].1.clone();
        return Err(CondError::Syntax(format!(
            "unexpected `{}`",
            &src[span.start..]
        )));
    }
    Ok(e)
}

/// Check a condition's syntax (at load time, without variables).
pub fn check(src: &str) -> Result<()> {
    parse(src).map(|_| ())
}

/// A condition compiled for the node: `Const` when it does not depend on the
/// command's result, else a shell test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiled {
    Const(bool),
    Shell {
        test: String,
        /// The test reads stdout or stderr (captured separately then).
        reads_text: bool,
    },
}

impl Compiled {
    /// The shell test (`true`/`false` for constants).
    pub fn test(&self) -> &str {
        match self {
            Compiled::Const(true) => "true",
            Compiled::Const(false) => "false",
            Compiled::Shell { test, .. } => test,
        }
    }
    pub fn reads_text(&self) -> bool {
        matches!(
            self,
            Compiled::Shell {
                reads_text: true,
                ..
            }
        )
    }
}

pub fn compile(src: &str, ctx: &Value, r: &Renderer) -> Result<Compiled> {
    let e = parse(src)?;
    let eval = |range: &Range<usize>| -> Result<Value> {
        let text = &src[range.clone()];
        r.value(text, ctx).map_err(|message| CondError::Eval {
            expr: text.to_string(),
            message: message.to_string(),
        })
    };
    if !e.reads_output() {
        return r
            .condition(src, ctx)
            .map(Compiled::Const)
            .map_err(|message| CondError::Eval {
                expr: src.to_string(),
                message: message.to_string(),
            });
    }
    let reads_text = e.reads_text();
    let test = shell(&e, &eval)?;
    Ok(Compiled::Shell { test, reads_text })
}

fn shell(e: &Expr, eval: &dyn Fn(&Range<usize>) -> Result<Value>) -> Result<String> {
    let constant = |e: &Expr| -> Result<Option<Value>> {
        match e {
            Expr::Const(r) => eval(r).map(Some),
            _ => Ok(None),
        }
    };
    Ok(match e {
        Expr::Or(a, b) => format!("{{ {}; }} || {{ {}; }}", shell(a, eval)?, shell(b, eval)?),
        Expr::And(a, b) => format!("{{ {}; }} && {{ {}; }}", shell(a, eval)?, shell(b, eval)?),
        Expr::Not(a) => format!("! {{ {}; }}", shell(a, eval)?),
        Expr::Out(Output::Rc) => "[ \"$rc\" -ne 0 ]".into(),
        Expr::Out(o) => format!("[ -n \"{}\" ]", o.var()),
        Expr::Const(r) => {
            if eval(r)?.is_true() {
                "true".into()
            } else {
                "false".into()
            }
        }
        Expr::List(_) => {
            return Err(CondError::Unsupported(
                "a list is only supported after `in`".into(),
            ));
        }
        Expr::Cmp(op, a, b) => {
            let (out, other, flipped) = match (a.as_ref(), b.as_ref()) {
                (Expr::Out(o), x) => (*o, x, false),
                (x, Expr::Out(o)) => (*o, x, true),
                _ => {
                    return Err(CondError::Unsupported(
                        "a comparison needs rc, stdout or stderr on one side and a value on the other".into(),
                    ));
                }
            };
            let Some(value) = constant(other)? else {
                return Err(CondError::Unsupported(
                    "compare rc, stdout or stderr with a value, not with each other".into(),
                ));
            };
            let op = if flipped { flip(op) } else { op };
            match out {
                Output::Rc => {
                    let Some(n) = value.as_i64() else {
                        return Err(CondError::Unsupported(format!(
                            "rc is a number; it cannot be compared with {value:?}"
                        )));
                    };
                    let t = match op {
                        "==" => "-eq",
                        "!=" => "-ne",
                        "<" => "-lt",
                        "<=" => "-le",
                        ">" => "-gt",
                        _ => "-ge",
                    };
                    format!("[ \"$rc\" {t} {n} ]")
                }
                _ => {
                    let s = value_text(&value);
                    match op {
                        "==" => format!("[ \"{}\" = {} ]", out.var(), sh_quote(&s)),
                        "!=" => format!("[ \"{}\" != {} ]", out.var(), sh_quote(&s)),
                        _ => {
                            return Err(CondError::Unsupported(format!(
                                "`{op}` on text is not supported; use ==, != or in"
                            )));
                        }
                    }
                }
            }
        }
        Expr::In(negated, needle, hay) => {
            // A variable that holds a list: `rc in expected_codes`.
            let listed = match (needle.as_ref(), hay.as_ref()) {
                (Expr::Out(o), Expr::Const(r)) => {
                    let v = eval(r)?;
                    (v.kind() == minijinja::value::ValueKind::Seq).then(|| {
                        let pats: Vec<String> = v
                            .try_iter()
                            .into_iter()
                            .flatten()
                            .map(|x| sh_quote(&value_text(&x)))
                            .collect();
                        (*o, pats)
                    })
                }
                _ => None,
            };
            let test = match (needle.as_ref(), hay.as_ref()) {
                _ if listed.is_some() => {
                    let (o, pats) = listed.unwrap_or((Output::Rc, Vec::new()));
                    if pats.is_empty() {
                        "false".to_string()
                    } else {
                        format!(
                            "case \"{}\" in {}) true ;; *) false ;; esac",
                            o.var(),
                            pats.join("|")
                        )
                    }
                }
                (Expr::Out(o), Expr::List(items)) => {
                    let mut pats = Vec::new();
                    for item in items {
                        let Some(v) = constant(item)? else {
                            return Err(CondError::Unsupported(
                                "a list after `in` holds values only".into(),
                            ));
                        };
                        pats.push(sh_quote(&value_text(&v)));
                    }
                    if pats.is_empty() {
                        "false".to_string()
                    } else {
                        format!(
                            "case \"{}\" in {}) true ;; *) false ;; esac",
                            o.var(),
                            pats.join("|")
                        )
                    }
                }
                (Expr::Out(Output::Rc), _) | (_, Expr::Out(Output::Rc)) => {
                    return Err(CondError::Unsupported(
                        "`in` with rc needs a list: rc in [0, 2]".into(),
                    ));
                }
                (x, Expr::Out(o)) => {
                    let Some(v) = constant(x)? else {
                        return Err(CondError::Unsupported(
                            "`in` needs a value on its left".into(),
                        ));
                    };
                    format!(
                        "case \"{}\" in *{}*) true ;; *) false ;; esac",
                        o.var(),
                        sh_quote(&value_text(&v))
                    )
                }
                (Expr::Out(o), x) => {
                    let Some(v) = constant(x)? else {
                        return Err(CondError::Unsupported(
                            "`in` needs a value on its right".into(),
                        ));
                    };
                    format!(
                        "case {} in *\"{}\"*) true ;; *) false ;; esac",
                        sh_quote(&value_text(&v)),
                        o.var()
                    )
                }
                _ => {
                    return Err(CondError::Unsupported(
                        "`in` here needs rc, stdout or stderr on one side".into(),
                    ));
                }
            };
            if *negated {
                format!("! {{ {test}; }}")
            } else {
                test
            }
        }
    })
}

fn flip(op: &'static str) -> &'static str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        o => o,
    }
}

fn value_text(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(test: &str, rc: i32, stdout: &str, stderr: &str) -> bool {
        let script = format!(
            "rc={rc} _m_stdout={} _m_stderr={}\nif {test}; then echo yes; else echo no; fi",
            sh_quote(stdout),
            sh_quote(stderr)
        );
        let o = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim() == "yes"
    }

    fn ctx() -> Value {
        Value::from(minijinja::value::Serde(
            serde_json::json!({"expected": "ready", "codes": [0, 3], "strict": false}),
        ))
    }

    #[test]
    fn conditions_over_the_result_run_on_the_node_as_shell_tests() {
        let r = Renderer::new();
        let cases: &[(&str, i32, &str, &str, bool)] = &[
            ("rc == 2", 2, "", "", true),
            (
                "rc != 0 and 'already' not in stderr",
                1,
                "",
                "user already exists",
                false,
            ),
            ("rc != 0 and 'already' not in stderr", 1, "", "boom", true),
            ("'changed' in stdout", 0, "1 changed\n", "", true),
            ("stdout == expected", 0, "ready", "", true),
            ("stdout == expected", 0, "readyx", "", false),
            ("rc in [0, 3]", 3, "", "", true),
            ("rc in codes or stdout", 1, "", "", false),
            ("not (rc > 1)", 1, "", "", true),
            ("2 <= rc", 2, "", "", true),
            ("stdout in 'abc'", 0, "b", "", true),
            ("strict or rc == 4", 4, "", "", true),
            (
                "'$(touch /tmp/never)' in stdout",
                0,
                "$(touch /tmp/never)",
                "",
                true,
            ),
        ];
        for (src, rc, out, err, want) in cases {
            let c = compile(src, &ctx(), &r).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(run(c.test(), *rc, out, err), *want, "{src}: {}", c.test());
        }
        assert!(!Path::new("/tmp/never").exists());
    }

    use std::path::Path;

    #[test]
    fn conditions_without_the_result_are_decided_on_the_controller() {
        let r = Renderer::new();
        assert_eq!(compile("false", &ctx(), &r), Ok(Compiled::Const(false)));
        assert_eq!(
            compile("expected == 'ready'", &ctx(), &r),
            Ok(Compiled::Const(true))
        );
        assert!(matches!(
            compile("rc == 1", &ctx(), &r),
            Ok(Compiled::Shell {
                reads_text: false,
                ..
            })
        ));
        assert!(compile("'x' in stdout", &ctx(), &r).unwrap().reads_text());
    }

    #[test]
    fn unsupported_or_broken_conditions_are_refused_with_a_reason() {
        let r = Renderer::new();
        for (src, why) in [
            ("rc ==", "ends too early"),
            ("(rc == 1", "not closed"),
            ("stdout | length > 2", "not supported"),
            ("stdout.startswith('a')", "methods"),
            ("rc == stdout", "not with each other"),
            ("rc == 'x'", "cannot be compared"),
            ("stdout > 'a'", "on text"),
            ("rc in 'abc'", "needs a list"),
        ] {
            let e = compile(src, &ctx(), &r).unwrap_err().to_string();
            assert!(e.contains(why), "{src}: {e}");
        }
    }
}
