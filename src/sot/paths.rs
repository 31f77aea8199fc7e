//! Where a SoT file may lead: a symlink committed to the SoT must not make
//! maestro read (and print, or ship to nodes) a file outside it, such as
//! `nodes/x.toml -> /etc/passwd`.

use std::path::{Path, PathBuf};

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
