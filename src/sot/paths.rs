//! Where a SoT file may lead: a symlink committed to the SoT must not make
//! maestro read (and print, or ship to nodes) a file outside it, such as
//! `nodes/x.toml -> /etc/passwd`.

use std::path::{Path, PathBuf};

use crate::diag::{Code, Diagnostic, Diagnostics, SourceFile};

/// Where `path` leads once every symlink in it is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Inside the anchor directory: safe to read at this (canonical) path.
    Inside(PathBuf),
    /// Outside it: this is where it leads.
    Outside(PathBuf),
    /// Nothing there (or a dangling symlink).
    Missing,
}

/// Resolve `path` and say whether it stays inside `anchor` (also resolved).
pub fn resolve_within(anchor: &Path, path: &Path) -> std::io::Result<Resolved> {
    let target = match path.canonicalize() {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Resolved::Missing),
        Err(e) => return Err(e),
    };
    let anchor = anchor.canonicalize()?;
    Ok(if target.starts_with(&anchor) {
        Resolved::Inside(target)
    } else {
        Resolved::Outside(target)
    })
}

/// A file read for checking.
#[derive(Debug)]
pub enum Source {
    Text(SourceFile),
    /// It exists but must not be parsed (not UTF-8, a symlink out of
    /// `anchor`): the diagnostic says why, the file (text lossily decoded or
    /// empty) is there for its excerpt.
    Unreadable(SourceFile, Diagnostic),
    Missing,
}

/// Read `path`, which must resolve inside `anchor`, as UTF-8 text; problems
/// are diagnostics on `display` (the path as the operator would type it).
pub fn read_source(anchor: &Path, path: &Path, display: PathBuf) -> std::io::Result<Source> {
    let target = match resolve_within(anchor, path)? {
        Resolved::Missing => return Ok(Source::Missing),
        Resolved::Inside(target) => target,
        Resolved::Outside(target) => {
            let dir = anchor.display();
            let d = Diagnostic {
                hint: Some(format!(
                    "replace the symlink with the file itself, or point it inside {dir}"
                )),
                ..Diagnostic::file_level(
                    Code::OutsideSot,
                    &display,
                    format!(
                        "{} is a symlink to {}, outside {dir}: maestro does not read it",
                        display.display(),
                        target.display()
                    ),
                )
            };
            return Ok(Source::Unreadable(
                SourceFile::new(display, String::new()),
                d,
            ));
        }
    };
    let bytes = match std::fs::read(&target) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Source::Missing),
        Err(e) => return Err(e),
    };
    Ok(match String::from_utf8(bytes) {
        Ok(text) => Source::Text(SourceFile::new(display, text)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            // The lossy text is as long up to `valid`, so the span points at
            // the first replacement character.
            let file = SourceFile::new(display, String::from_utf8_lossy(e.as_bytes()).into_owned());
            let mut d = file.diagnostic(
                Code::Syntax,
                valid..valid + 1,
                "file is not valid UTF-8".into(),
            );
            d.hint = Some("save the file as UTF-8".into());
            Source::Unreadable(file, d)
        }
    })
}

/// `*.toml` files directly in `dir`, sorted; none when it does not exist.
pub fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    files_with_extension(dir, "toml")
}

/// The regular files of `dir` whose extension is `ext`, sorted; none when
/// `dir` does not exist.
pub fn files_with_extension(dir: &Path, ext: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd {
                let p = e?.path();
                if p.extension().is_some_and(|x| x == ext) && p.is_file() {
                    out.push(p);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}

/// Check every `*.toml` file of a library directory (playbooks, baselines)
/// with `check`: the files are read as the SoT loader reads them, so a
/// symlink out of `dir` or a file that is not UTF-8 is a diagnostic too.
pub fn check_dir(dir: &Path, check: impl Fn(&SourceFile) -> Diagnostics) -> Diagnostics {
    let mut out = Diagnostics::default();
    let files = match toml_files(dir) {
        Ok(f) => f,
        Err(e) => {
            out.0.push(Diagnostic::file_level(
                Code::MissingFile,
                dir,
                format!("cannot list {}: {e}", dir.display()),
            ));
            return out;
        }
    };
    for path in files {
        match read_source(dir, &path, path.clone()) {
            Ok(Source::Text(file)) => out.extend(check(&file).0),
            Ok(Source::Unreadable(_, d)) => out.0.push(d),
            Ok(Source::Missing) => {}
            Err(e) => out.0.push(Diagnostic::file_level(
                Code::MissingFile,
                &path,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_judged_by_where_they_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let sot = tmp.path().join("sot");
        std::fs::create_dir_all(sot.join("nodes")).unwrap();
        std::fs::write(sot.join("nodes.toml"), "").unwrap();
        std::fs::write(tmp.path().join("secret"), "").unwrap();
        std::os::unix::fs::symlink("../nodes.toml", sot.join("nodes/in.toml")).unwrap();
        std::os::unix::fs::symlink("../../secret", sot.join("nodes/out.toml")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", sot.join("nodes/gone.toml")).unwrap();
        let r = |p: &str| resolve_within(&sot, &sot.join(p)).unwrap();
        assert!(matches!(r("nodes/in.toml"), Resolved::Inside(_)));
        assert_eq!(
            r("nodes/out.toml"),
            Resolved::Outside(tmp.path().canonicalize().unwrap().join("secret"))
        );
        assert_eq!(r("nodes/gone.toml"), Resolved::Missing);
        // A symlinked SoT directory itself is fine: both sides are resolved.
        std::os::unix::fs::symlink(&sot, tmp.path().join("link")).unwrap();
        let link = tmp.path().join("link");
        assert!(matches!(
            resolve_within(&link, &link.join("nodes.toml")).unwrap(),
            Resolved::Inside(_)
        ));
    }
}
