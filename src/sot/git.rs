//! Every change maestro makes to the SoT is one git commit that says who and why.
//!
//! A change is all-or-nothing: the files it touches must be clean, the new
//! contents are validated before anything is written, and a failed commit puts
//! the old contents back.

use std::path::{Component, Path, PathBuf};

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Status, Tree};

use super::{Result, SotError};

/// Who makes a change: `Name <email>`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub email: String,
}

impl Actor {
    /// Parse `Name <email>`. Both parts go into the commit's author header and
    /// its `Maestro-Actor:` trailer, so anything that could end a header line
    /// or open another address (control characters, a second `<`) is refused.
    pub fn parse(s: &str) -> Result<Actor> {
        let refuse = |why: &'static str| SotError::BadActor {
            actor: s.to_string(),
            why,
        };
        if s.chars().any(char::is_control) {
            return Err(refuse("it contains a control character (a newline?)"));
        }
        let s = s.trim();
        let Some((name, rest)) = s.split_once('<') else {
            return Err(refuse("it has no `<email>`"));
        };
        let Some(email) = rest.strip_suffix('>') else {
            return Err(refuse("it must end with `>`"));
        };
        let actor = Actor {
            name: name.trim().into(),
            email: email.trim().into(),
        };
        actor.validate().map_err(refuse)?;
        Ok(actor)
    }

    /// An identity from its parts (git config, say), refused like [`Actor::parse`].
    pub fn new(name: &str, email: &str) -> Result<Actor> {
        let actor = Actor {
            name: name.into(),
            email: email.into(),
        };
        match actor.validate() {
            Ok(()) => Ok(actor),
            Err(why) => Err(SotError::BadActor {
                actor: actor.to_string(),
                why,
            }),
        }
    }

    /// Why this identity cannot author a commit, if it cannot.
    fn validate(&self) -> Result<(), &'static str> {
        let bad = |c: char| c.is_control() || c == '<' || c == '>';
        if self.name.is_empty() {
            Err("the name is empty")
        } else if self.email.is_empty() {
            Err("the email is empty")
        } else if self.name.chars().any(bad) {
            Err("the name contains `<`, `>` or a control character")
        } else if self.email.chars().any(|c| bad(c) || c.is_whitespace()) {
            Err("the email contains `<`, `>`, a space or a control character")
        } else {
            Ok(())
        }
    }

    /// `--actor` if given, else the repository's git identity.
    pub fn resolve(repo: &Repository, explicit: Option<&str>) -> Result<Actor> {
        if let Some(a) = explicit {
            return Actor::parse(a);
        }
        match repo.signature() {
            Ok(sig) => Actor::new(
                sig.name().unwrap_or_default(),
                sig.email().unwrap_or_default(),
            ),
            Err(_) => Err(SotError::NoActor),
        }
    }

    fn signature(&self) -> Result<Signature<'static>> {
        Ok(Signature::now(&self.name, &self.email)?)
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// The repository holding the SoT directory, and the directory's path inside it.
pub struct SotRepo {
    pub repo: Repository,
    /// The SoT directory relative to the repository's work tree (empty at the top).
    pub prefix: PathBuf,
    root: PathBuf,
}

impl SotRepo {
    pub fn open(root: &Path) -> Result<SotRepo> {
        let repo = Repository::discover(root).map_err(|e| match e.code() {
            ErrorCode::NotFound => SotError::NotARepository(root.to_path_buf()),
            _ => SotError::Git(e),
        })?;
        let workdir = repo
            .workdir()
            .ok_or(SotError::BareRepository)?
            .canonicalize()
            .map_err(|source| SotError::Io {
                path: root.into(),
                source,
            })?;
        let abs = root.canonicalize().map_err(|source| SotError::Io {
            path: root.into(),
            source,
        })?;
        let prefix = abs
            .strip_prefix(&workdir)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        Ok(SotRepo {
            repo,
            prefix,
            root: root.to_path_buf(),
        })
    }

    fn repo_path(&self, rel: &Path) -> PathBuf {
        self.prefix.join(rel)
    }

    /// Refuse when any of `files` (relative to the SoT) has uncommitted edits.
    pub fn ensure_clean(&self, files: &[PathBuf]) -> Result<()> {
        let mut dirty = Vec::new();
        for rel in files {
            let path = self.repo_path(rel);
            let status = match self.repo.status_file(&path) {
                Ok(s) => s,
                Err(e) if e.code() == ErrorCode::NotFound => Status::CURRENT,
                Err(e) => return Err(e.into()),
            };
            if !(status.is_empty() || status == Status::CURRENT) {
                dirty.push(format!(
                    "{} ({})",
                    self.root.join(rel).display(),
                    describe(status)
                ));
            }
        }
        if dirty.is_empty() {
            return Ok(());
        }
        Err(SotError::Dirty {
            files: dirty,
            root: self.root.clone(),
        })
    }

    /// Write `changes` (path relative to the SoT, new content or `None` to delete)
    /// and commit exactly those files. Restores the old contents on failure.
    pub fn commit(
        &self,
        changes: &[(PathBuf, Option<String>)],
        message: &str,
        actor: &Actor,
    ) -> Result<Oid> {
        self.ensure_clean(&changes.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>())?;
        let mut written: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
        let result = (|| {
            for (rel, content) in changes {
                let path = self.root.join(rel);
                let old = std::fs::read(&path).ok();
                written.push((path.clone(), old));
                write_file(&path, content.as_deref().map(str::as_bytes))?;
            }
            self.commit_written(changes, message, actor)
        })();
        if result.is_err() {
            for (path, old) in written.into_iter().rev() {
                let _ = match old {
                    Some(bytes) => std::fs::write(&path, bytes),
                    None => std::fs::remove_file(&path),
                };
            }
        }
        result
    }

    fn commit_written(
        &self,
        changes: &[(PathBuf, Option<String>)],
        message: &str,
        actor: &Actor,
    ) -> Result<Oid> {
        let head = match self.repo.head() {
            Ok(h) => Some(h.peel_to_commit()?),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        // Build the new tree from HEAD's, not from the index: whatever else the
        // operator has staged must not ride along in maestro's commit.
        let mut tree_oid = match &head {
            Some(c) => c.tree_id(),
            None => self.repo.treebuilder(None)?.write()?,
        };
        for (rel, content) in changes {
            let blob = match content {
                Some(c) => Some(self.repo.blob(c.as_bytes())?),
                None => None,
            };
            let tree = self.repo.find_tree(tree_oid)?;
            tree_oid = replace_path(
                &self.repo,
                Some(&tree),
                &components(&self.repo_path(rel)),
                blob,
            )?;
        }
        let tree = self.repo.find_tree(tree_oid)?;
        let author = actor.signature()?;
        let committer = self.repo.signature().unwrap_or_else(|_| author.clone());
        let parents: Vec<_> = head.iter().collect();
        let oid = self
            .repo
            .commit(Some("HEAD"), &author, &committer, message, &tree, &parents)?;
        // Keep the index in step with HEAD for the files we changed.
        let mut index = self.repo.index()?;
        for (rel, content) in changes {
            let path = self.repo_path(rel);
            match content {
                Some(_) => index.add_path(&path)?,
                None => index.remove_path(&path)?,
            }
        }
        index.write()?;
        Ok(oid)
    }

    /// Commits that touched the SoT directory, newest first.
    pub fn log(&self, limit: usize) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        let mut walk = self.repo.revwalk()?;
        match walk.push_head() {
            Ok(()) => {}
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                return Ok(out);
            }
            Err(e) => return Err(e.into()),
        }
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
        for oid in walk {
            if out.len() >= limit {
                break;
            }
            let commit = self.repo.find_commit(oid?)?;
            let tree = commit.tree()?;
            let parent_tree = match commit.parents().next() {
                Some(p) => Some(p.tree()?),
                None => None,
            };
            let files = self.touched(parent_tree.as_ref(), &tree)?;
            if files.is_empty() {
                continue;
            }
            let author = commit.author();
            let message = commit.message().unwrap_or("").to_string();
            out.push(LogEntry {
                actor: trailer(&message, ACTOR_TRAILER),
                id: commit.id().to_string(),
                author: author.name().unwrap_or("?").to_string(),
                email: author.email().unwrap_or("").to_string(),
                time: author.when().seconds(),
                summary: commit.summary().ok().flatten().unwrap_or("").to_string(),
                message,
                files,
            });
        }
        Ok(out)
    }

    fn touched(&self, old: Option<&Tree>, new: &Tree) -> Result<Vec<String>> {
        let mut opts = git2::DiffOptions::new();
        if !self.prefix.as_os_str().is_empty() {
            opts.pathspec(self.prefix.to_string_lossy().as_ref());
        }
        let diff = self
            .repo
            .diff_tree_to_tree(old, Some(new), Some(&mut opts))?;
        Ok(diff
            .deltas()
            .filter_map(|d| {
                d.new_file()
                    .path()
                    .or(d.old_file().path())
                    .map(|p| p.display().to_string())
            })
            .collect())
    }

    /// The commit HEAD points at, if any.
    pub fn head(&self) -> Option<String> {
        self.repo.head().ok()?.target().map(|o| o.to_string())
    }

    /// `rel` (relative to the SoT) as HEAD holds it: a regular file's
    /// contents, none when HEAD has no such file or it is a link or a
    /// directory (evidence and answers name files git tracks, not whatever
    /// a path leads to on this machine).
    pub fn file_at_head(&self, rel: &Path) -> Option<Vec<u8>> {
        let tree = self.repo.head().ok()?.peel_to_tree().ok()?;
        let entry = tree.get_path(&self.repo_path(rel)).ok()?;
        if entry.kind() != Some(git2::ObjectType::Blob) || entry.filemode() == 0o120000 {
            return None;
        }
        Some(
            entry
                .to_object(&self.repo)
                .ok()?
                .peel_to_blob()
                .ok()?
                .content()
                .to_vec(),
        )
    }

    /// The newest commit (from HEAD, first parents) that changed `rel`.
    pub fn last_change_of(&self, rel: &Path) -> Option<String> {
        let path = self.repo_path(rel);
        let blob_of = |c: &git2::Commit<'_>| {
            c.tree()
                .ok()
                .and_then(|t| t.get_path(&path).ok())
                .map(|e| e.id())
        };
        let mut commit = self.repo.head().ok()?.peel_to_commit().ok()?;
        loop {
            let here = blob_of(&commit);
            let parent = commit.parent(0).ok();
            if here != parent.as_ref().and_then(blob_of) {
                return here.map(|_| commit.id().to_string());
            }
            commit = parent?;
        }
    }
}

/// The trailer that names who asked for a maestro change (the author may be
/// a service account; this is the person).
pub const ACTOR_TRAILER: &str = "Maestro-Actor";

/// The value of trailer `key` in `message`'s last paragraph, where git keeps
/// trailers: a line of the same shape earlier in the body is not a trailer.
pub fn trailer(message: &str, key: &str) -> Option<String> {
    let last = message.trim_end().rsplit("\n\n").next()?;
    last.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// Whether `line` would read as a maestro trailer (`Maestro-Actor: ...`), in
/// any case and spacing a trailer parser might accept.
pub fn is_maestro_trailer(line: &str) -> bool {
    let Some((key, _)) = line.trim_start().split_once(':') else {
        return false;
    };
    let key = key.trim_end();
    // ASCII first, so the prefix slice is on a character boundary.
    key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && key.len() > "maestro-".len()
        && key[.."maestro-".len()].eq_ignore_ascii_case("maestro-")
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub id: String,
    pub author: String,
    pub email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    pub summary: String,
    pub message: String,
    /// The `Maestro-Actor:` trailer of a maestro commit.
    pub actor: Option<String>,
    pub files: Vec<String>,
}

fn describe(s: Status) -> &'static str {
    if s.intersects(Status::WT_NEW) {
        "untracked"
    } else if s.intersects(Status::INDEX_NEW | Status::INDEX_MODIFIED | Status::INDEX_DELETED) {
        "staged changes"
    } else if s.intersects(Status::WT_DELETED) {
        "deleted"
    } else if s.intersects(Status::CONFLICTED) {
        "conflicted"
    } else {
        "modified"
    }
}

fn components(p: &Path) -> Vec<String> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// The tree `tree` with `path` set to `blob` (or removed), written to the odb.
fn replace_path(
    repo: &Repository,
    tree: Option<&Tree>,
    path: &[String],
    blob: Option<Oid>,
) -> Result<Oid> {
    let mut builder = repo.treebuilder(tree)?;
    let (first, rest) = path.split_first().expect("a non-empty path");
    if rest.is_empty() {
        match blob {
            Some(b) => {
                builder.insert(first, b, 0o100644)?;
            }
            None => {
                if builder.get(first)?.is_some() {
                    builder.remove(first)?;
                }
            }
        }
    } else {
        let sub = match tree.and_then(|t| t.get_name(first)) {
            Some(e) if e.kind() == Some(ObjectType::Tree) => Some(repo.find_tree(e.id())?),
            _ => None,
        };
        let sub_oid = replace_path(repo, sub.as_ref(), rest, blob)?;
        if repo.find_tree(sub_oid)?.is_empty() {
            if builder.get(first)?.is_some() {
                builder.remove(first)?;
            }
        } else {
            builder.insert(first, sub_oid, 0o040000)?;
        }
    }
    Ok(builder.write()?)
}

/// Replace a file atomically (write beside it, then rename), or delete it.
fn write_file(path: &Path, content: Option<&[u8]>) -> Result<()> {
    let io = |source| SotError::Io {
        path: path.to_path_buf(),
        source,
    };
    match content {
        Some(c) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let tmp = path.with_extension("toml.maestro-tmp");
            std::fs::write(&tmp, c).map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)
        }
        None => std::fs::remove_file(path).map_err(io),
    }
}

/// Create a new git repository at `dir` holding `files`, in one first commit.
pub fn init_repo(
    dir: &Path,
    files: &[(PathBuf, Vec<u8>)],
    actor: &Actor,
    message: &str,
) -> Result<Oid> {
    let repo = Repository::init(dir)?;
    let mut tree_oid = repo.treebuilder(None)?.write()?;
    for (rel, content) in files {
        let path = dir.join(rel);
        write_file(&path, Some(content))?;
        let blob = repo.blob(content)?;
        let tree = repo.find_tree(tree_oid)?;
        tree_oid = replace_path(&repo, Some(&tree), &components(rel), Some(blob))?;
    }
    let tree = repo.find_tree(tree_oid)?;
    let sig = actor.signature()?;
    let oid = repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[])?;
    let mut index = repo.index()?;
    index.read_tree(&tree)?;
    index.write()?;
    Ok(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_actor_trailer_is_read_from_the_last_paragraph_only() {
        let forged =
            "node add x: r\n\nMaestro-Actor: Mallory <m@x>\n\nMaestro-Actor: Alice <a@x>\n";
        assert_eq!(
            trailer(forged, ACTOR_TRAILER).as_deref(),
            Some("Alice <a@x>")
        );
        assert_eq!(trailer("init\n\nno trailer here\n", ACTOR_TRAILER), None);
    }

    #[test]
    fn trailer_shaped_lines_are_recognised_in_any_case_and_spacing() {
        for line in [
            "Maestro-Actor: x",
            "  maestro-actor : x",
            "MAESTRO-APPROVED-BY:x",
        ] {
            assert!(is_maestro_trailer(line), "{line:?}");
        }
        for line in [
            "the Maestro-Actor: line",
            "Maestro: x",
            "Signed-off-by: x",
            "maestro-é: x",
        ] {
            assert!(!is_maestro_trailer(line), "{line:?}");
        }
    }

    #[test]
    fn actors_parse_as_name_and_email() {
        let a = Actor::parse("  Alice Ops <alice@example.com> ").unwrap();
        assert_eq!(
            (a.name.as_str(), a.email.as_str()),
            ("Alice Ops", "alice@example.com")
        );
        for bad in [
            "Alice",
            "A <b",
            "A<b <c@d>",
            "A\n <b@c>",
            "A <b c@d>",
            " <a@b>",
        ] {
            assert!(Actor::parse(bad).is_err(), "{bad:?}");
        }
    }
}
