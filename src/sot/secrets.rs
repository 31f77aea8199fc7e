//! Secret scanning of the SoT: `sot check` scans every text file of the
//! SoT and its libraries, and every write through [`super::change`] scans
//! what it is about to commit; a hit is a diagnostic (file:line:col, the
//! rule id, the line masked) and nothing is written. The allowlist is the
//! SoT's `secrets.toml` ([`crate::secrets::Allowlist`]).

use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics, display_path};
use crate::secrets::{self, Allowlist, Finding, Scanner};

/// Files larger than this are not SoT text (artifacts, models).
const MAX_FILE: u64 = 4 << 20;

/// A finding as a SoT diagnostic.
pub fn diagnostic(root: &Path, f: &Finding) -> Diagnostic {
    Diagnostic {
        code: Code::Secret,
        message: format!("a secret ({}): {}", f.rule, f.description),
        file: display_path(root, Path::new(&f.path)),
        line: f.line,
        col: f.column,
        source_line: f.excerpt.clone(),
        width: secrets::MASK.len(),
        hint: Some(format!(
            "keep secrets out of the SoT (a vault, the node, `--extra-vars` at run time); if this is not a secret, allow it in {}: fingerprints = [\"{}\"]",
            secrets::FILE,
            f.fingerprint
        )),
    }
}

/// The SoT's allowlist (`secrets.toml`), or `text` as its new contents.
pub fn allowlist(root: &Path, text: Option<&str>) -> Result<Allowlist, Diagnostics> {
    let owned;
    let text = match text {
        Some(t) => t,
        None => match std::fs::read_to_string(root.join(secrets::FILE)) {
            Ok(t) => {
                owned = t;
                &owned
            }
            Err(_) => return Ok(Allowlist::default()),
        },
    };
    Allowlist::parse(secrets::FILE, text).map_err(|e| {
        let secrets::SecretsError::Allowlist(problems) = e;
        Diagnostics(
            problems
                .into_iter()
                .map(|p| Diagnostic {
                    code: Code::BadValue,
                    message: p.message,
                    file: display_path(root, Path::new(&p.path)),
                    line: p.line,
                    col: p.column,
                    source_line: text
                        .lines()
                        .nth(p.line.saturating_sub(1))
                        .unwrap_or("")
                        .into(),
                    width: 1,
                    hint: None,
                })
                .collect(),
        )
    })
}

/// Scan files about to be written (`(path relative to root, text)`).
pub fn scan_files(root: &Path, files: &[(PathBuf, String)]) -> Diagnostics {
    let allow_text = files
        .iter()
        .find(|(p, _)| p == Path::new(secrets::FILE))
        .map(|(_, t)| t.as_str());
    let allow = match allowlist(root, allow_text) {
        Ok(a) => a,
        Err(d) => return d,
    };
    let scanner = Scanner::new(allow);
    Diagnostics(
        files
            .iter()
            .flat_map(|(p, text)| scanner.scan(&p.to_string_lossy(), text))
            .map(|f| diagnostic(root, &f))
            .collect(),
    )
}

/// Every text file under `dir` (relative paths), skipping `.git`.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name == ".git" {
            continue;
        }
        let path = rel.join(&name);
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(dir, &path, out);
        } else if kind.is_file() && e.metadata().is_ok_and(|m| m.len() <= MAX_FILE) {
            out.push(path);
        }
    }
}

/// Scan the whole SoT and the library directories it names.
pub fn scan_tree(root: &Path, libraries: &[PathBuf]) -> Diagnostics {
    let allow = match allowlist(root, None) {
        Ok(a) => a,
        Err(d) => return d,
    };
    let scanner = Scanner::new(allow);
    let mut dirs = vec![root.to_path_buf()];
    for lib in libraries {
        if !lib.starts_with(root) && lib.is_dir() {
            dirs.push(lib.clone());
        }
    }
    let mut out = Vec::new();
    for dir in &dirs {
        let mut files = Vec::new();
        walk(dir, Path::new(""), &mut files);
        for rel in files {
            let Ok(text) = std::fs::read_to_string(dir.join(&rel)) else {
                continue; // not text: an artifact
            };
            let shown = if dir == root {
                rel.clone()
            } else {
                dir.join(&rel)
            };
            out.extend(
                scanner
                    .scan(&shown.to_string_lossy(), &text)
                    .iter()
                    .map(|f| diagnostic(root, f)),
            );
        }
    }
    Diagnostics(out)
}

/// Scan every blob the SoT's git history ever added or changed (of the
/// SoT's directory, when the SoT is a directory of a larger repository).
pub fn scan_history(root: &Path) -> Result<Diagnostics, git2::Error> {
    let repo = git2::Repository::discover(root)?;
    let prefix = match (repo.workdir(), root.canonicalize()) {
        (Some(w), Ok(r)) => w
            .canonicalize()
            .ok()
            .and_then(|w| r.strip_prefix(w).ok().map(Path::to_path_buf))
            .unwrap_or_default(),
        _ => PathBuf::new(),
    };
    let allow = allowlist(root, None).unwrap_or_default();
    let scanner = Scanner::new(allow);
    let mut walk = repo.revwalk()?;
    walk.push_head()?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        let short = commit.id().to_string()[..10].to_string();
        let tree = commit.tree()?;
        let parent = commit.parent(0).ok().map(|p| p.tree()).transpose()?;
        let diff = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None)?;
        for delta in diff.deltas() {
            let file = delta.new_file();
            if file.id().is_zero() || !seen.insert(file.id()) {
                continue;
            }
            let Some(path) = file.path() else { continue };
            if !path.starts_with(&prefix) {
                continue;
            }
            let blob = repo.find_blob(file.id())?;
            if blob.size() as u64 > MAX_FILE {
                continue;
            }
            let Ok(text) = std::str::from_utf8(blob.content()) else {
                continue;
            };
            let label = format!("{short}:{}", path.display());
            out.extend(scanner.scan(&label, text).iter().map(|f| {
                let mut d = diagnostic(root, f);
                d.file = PathBuf::from(&label);
                d
            }));
        }
    }
    Ok(Diagnostics(out))
}
