//! Appending to the ledger file, and reading it back for `ledger show`.
//!
//! The file is only ever appended to. An append takes an exclusive `flock`
//! on the ledger file itself, learns the current head from the last line
//! (only when another writer appended since this handle last looked), and
//! writes the new line with one `write` on an `O_APPEND` descriptor. The
//! lock is the kernel's, so a crashed maestro never leaves a stale lock
//! behind, and two processes (or two handles in one process) appending at
//! once still build one chain. Appends are not fsynced: [`super::Ledger::sync`]
//! is called once at the end of a job.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::Deserialize;

use super::entry::{Entry, GENESIS, Record};
use super::{NotAnEntry, Result, io_error, syntax_error};

/// An open ledger file.
#[derive(Debug)]
pub(super) struct FileLedger {
    path: PathBuf,
    file: File,
    tip: Tip,
}

/// The end of the chain as this handle last saw it.
#[derive(Debug)]
struct Tip {
    /// The file's length then: while it is unchanged, `seq` and `head`
    /// are still the last entry.
    len: u64,
    seq: u64,
    head: String,
}

/// What appending needs from the last line; the rest of it is not read.
#[derive(Deserialize)]
struct Tail {
    seq: u64,
    hash: String,
}

/// Releases the `flock` however the append ends.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn exclusive(file: &'a File, path: &Path) -> Result<Locked<'a>> {
        file.lock().map_err(|e| io_error(path, e))?;
        Ok(Locked(file))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Closing the descriptor releases it too; nothing to do on failure.
        let _ = self.0.unlock();
    }
}

impl FileLedger {
    /// Open (or create, with its parent directories) the ledger at `path`
    /// and learn its head from the last line. A last line that is not an
    /// entry is an error naming `file:line:col`: appending after it would
    /// chain onto something nobody can verify.
    pub(super) fn open(path: impl AsRef<Path>) -> Result<FileLedger> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            // Masked, but still who did what where: not for every local user.
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        if !existed {
            // A new file is only durable once its directory entry is.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(dir, e))?;
        }
        let mut tip = Tip {
            len: 0,
            seq: 0,
            head: GENESIS.to_string(),
        };
        let lock = Locked::exclusive(&file, &path)?;
        refresh(&file, &path, &mut tip)?;
        drop(lock);
        Ok(FileLedger { path, file, tip })
    }

    /// Append one entry after the current head (whoever wrote it) and
    /// return it. The line reaches the file whole or not at all: a failed
    /// write is cut back off.
    pub(super) fn append(&mut self, body: Record) -> Result<Entry> {
        let lock = Locked::exclusive(&self.file, &self.path)?;
        refresh(&self.file, &self.path, &mut self.tip)?;
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let (entry, line) = Entry::seal(self.tip.seq + 1, time, self.tip.head.clone(), body)?;
        if let Err(e) = (&self.file).write_all(&line) {
            // A partial line would make the ledger unreadable from here on.
            let _ = self.file.set_len(self.tip.len);
            return Err(io_error(&self.path, e));
        }
        self.tip.len += line.len() as u64;
        self.tip.seq = entry.seq;
        self.tip.head.clone_from(&entry.hash);
        drop(lock);
        Ok(entry)
    }

    /// Make every appended entry durable (fsync); once per job.
    pub(super) fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| io_error(&self.path, e))
    }

    /// `(size, head hash)` as of this handle's last append or open: a prefix
    /// of the chain, so always safe to sign as a checkpoint.
    pub(super) fn head(&self) -> (u64, String) {
        (self.tip.seq, self.tip.head.clone())
    }
}

/// Re-read the tail if the file changed since `tip` was seen. Call with the
/// lock held.
fn refresh(file: &File, path: &Path, tip: &mut Tip) -> Result<()> {
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    if len == tip.len {
        return Ok(());
    }
    (tip.seq, tip.head) = read_tail(file, path, len)?;
    tip.len = len;
    Ok(())
}

/// `(seq, hash)` of the last line of a file of `len` bytes, reading
/// backwards from the end so a million-entry ledger costs one small read.
fn read_tail(file: &File, path: &Path, len: u64) -> Result<(u64, String)> {
    if len == 0 {
        return Ok((0, GENESIS.to_string()));
    }
    let mut window: u64 = 4096;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = vec![0; (len - start) as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| io_error(path, e))?;
        if buf.last() != Some(&b'\n') {
            let line = count_lines(path)? + 1;
            return Err(syntax_error(
                path,
                line,
                1,
                "the last line is incomplete (no newline at its end): a write was interrupted \
                 or the file was cut; appending after it would chain onto an unverifiable entry"
                    .into(),
            ));
        }
        let body = &buf[..buf.len() - 1];
        let line_start = body.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
        if line_start.is_none() && start > 0 {
            window = window.saturating_mul(4);
            continue;
        }
        let last = &body[line_start.unwrap_or(0)..];
        return match tail_of(last) {
            Ok(tail) => Ok(tail),
            Err(e) => Err(e.at_line(path, count_lines(path)?)),
        };
    }
}

/// `(seq, hash)` of the last entry, from its line (without the newline):
/// what appending after it needs.
pub(super) fn tail_of(line: &[u8]) -> std::result::Result<(u64, String), NotAnEntry> {
    match serde_json::from_slice::<Tail>(line) {
        Ok(tail) if is_hash(&tail.hash) => Ok((tail.seq, tail.hash)),
        Ok(_) => Err(NotAnEntry::because(
            "its `hash` is not 64 lowercase hex digits",
        )),
        Err(e) => Err(NotAnEntry::json(&e)),
    }
}

/// One line (without the newline) as a typed entry, for `ledger show`.
pub(super) fn entry_of(line: &[u8]) -> std::result::Result<Entry, NotAnEntry> {
    serde_json::from_slice(line).map_err(|e| NotAnEntry::json(&e))
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Newlines in the file; only for naming the line of an error.
fn count_lines(path: &Path) -> Result<u64> {
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut buf = vec![0; 1 << 16];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
}

/// Every entry of the ledger file (of one run, with `run`); a missing file
/// is an empty ledger.
pub(super) fn read_file(path: &Path, run: Option<&str>) -> Result<Vec<Entry>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(path, e)),
    };
    let mut entries = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| io_error(path, e))?;
        let entry = entry_of(line.as_bytes()).map_err(|e| e.at_line(path, index as u64 + 1))?;
        if run.is_none_or(|r| entry.body.run.as_deref() == Some(r)) {
            entries.push(entry);
        }
    }
    Ok(entries)
}
