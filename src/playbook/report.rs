//! Parsing a playbook script's stdout: markers (`\x1eM<nonce> ...` lines) into
//! facts and task results, everything else attributed to the current task.
//!
//! The nonce is random per script, so output from a task (which cannot know
//! it) can never forge a marker.

use std::collections::BTreeMap;

use crate::fleet::event::{TaskResult, TaskStatus};

/// Bytes kept per block (diff or command output) of one task.
const BLOCK_LIMIT: usize = 64 * 1024;

pub struct Parser {
    prefix: Vec<u8>,
    partial: Vec<u8>,
    block: Option<(String, Vec<u8>)>,
    diff: Option<String>,
    output: Option<String>,
    names: Vec<String>,
    pub facts: BTreeMap<String, String>,
    /// `ok` or `failed` once the script said it finished.
    pub done: Option<String>,
}

/// Something the parser recognised in the stream.
pub enum Parsed {
    Facts,
    Task(TaskResult),
}

impl Parser {
    /// `names`: task names by index (tasks, then handlers).
    pub fn new(nonce: &str, names: Vec<String>) -> Parser {
        let mut prefix = b"\x1eM".to_vec();
        prefix.extend_from_slice(nonce.as_bytes());
        prefix.push(b' ');
        Parser {
            prefix,
            partial: Vec::new(),
            block: None,
            diff: None,
            output: None,
            names,
            facts: BTreeMap::new(),
            done: None,
        }
    }

    /// Feed stdout bytes as they arrive; returns what completed.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        self.partial.extend_from_slice(data);
        while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=nl).collect();
            let line = &line[..line.len() - 1];
            if let Some(marker) = line.strip_prefix(self.prefix.as_slice()) {
                if let Some(p) = self.marker(&String::from_utf8_lossy(marker)) {
                    out.push(p);
                }
            } else if let Some((_, buf)) = &mut self.block
                && buf.len() < BLOCK_LIMIT
            {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            }
        }
        // A huge line without a newline must not grow without bound.
        if self.partial.len() > BLOCK_LIMIT && !self.partial.starts_with(&self.prefix) {
            self.partial.clear();
        }
        out
    }

    fn marker(&mut self, m: &str) -> Option<Parsed> {
        let (kind, rest) = m.split_once(' ').unwrap_or((m, ""));
        match kind {
            "facts" => {
                for kv in rest.split(' ') {
                    if let Some((k, v)) = kv.split_once('=') {
                        self.facts.insert(k.to_string(), v.to_string());
                    }
                }
                Some(Parsed::Facts)
            }
            "begin" => {
                self.diff = None;
                self.output = None;
                None
            }
            "end" => {
                let mut parts = rest.splitn(3, ' ');
                let index: usize = parts.next()?.parse().ok()?;
                let status = TaskStatus::parse(parts.next()?)?;
                let message = parts.next().unwrap_or("").to_string();
                Some(Parsed::Task(TaskResult {
                    index,
                    name: self.names.get(index).cloned().unwrap_or_default(),
                    status,
                    message,
                    diff: self.diff.take(),
                    output: self.output.take(),
                }))
            }
            "done" => {
                self.done = Some(rest.to_string());
                None
            }
            k if k.ends_with("-begin") => {
                self.block = Some((k.trim_end_matches("-begin").to_string(), Vec::new()));
                None
            }
            k if k.ends_with("-end") => {
                if let Some((name, buf)) = self.block.take() {
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    match name.as_str() {
                        "diff" => self.diff = Some(text),
                        _ => self.output = Some(text),
                    }
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_need_the_nonce_and_blocks_attach_to_their_task() {
        let mut p = Parser::new("abc", vec!["one".into(), "two".into()]);
        let stream = b"\x1eMabc facts hostname=n01 os=debian\n\x1eMabc begin 0\n\
            \x1eMabc diff-begin\n--- a\n+++ b\n\x1eMabc diff-end\n\
            \x1eMforged end 0 ok fake\n\x1eMabc end 0 changed wrote /etc/x\n\x1eMabc begin 1\n\x1eMabc end 1 ok\n\x1eMabc done ok\n";
        let mut tasks = Vec::new();
        // Feed in awkward chunks, as the network would.
        for chunk in stream.chunks(7) {
            for item in p.feed(chunk) {
                if let Parsed::Task(t) = item {
                    tasks.push(t);
                }
            }
        }
        assert_eq!(p.facts.get("hostname").map(String::as_str), Some("n01"));
        assert_eq!(tasks.len(), 2);
        assert_eq!(
            (
                tasks[0].name.as_str(),
                tasks[0].status,
                tasks[0].message.as_str()
            ),
            ("one", TaskStatus::Changed, "wrote /etc/x")
        );
        assert_eq!(tasks[0].diff.as_deref(), Some("--- a\n+++ b\n"));
        assert_eq!(tasks[1].status, TaskStatus::Ok);
        assert_eq!(p.done.as_deref(), Some("ok"));
    }
}
