//! The SoT as a commit holds it: the commit's tree written into a private
//! temporary directory and loaded like any SoT. A commit never changes, so
//! a loaded snapshot is kept and shared by the requests that name it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use git2::{ObjectType, Repository, TreeWalkMode, TreeWalkResult};

use super::ApiError;
use crate::sot::Sot;

/// How many loaded commits are kept (HEAD moves; old ones are asked rarely).
const KEEP: usize = 16;

/// One commit's SoT.
pub struct Snapshot {
    pub commit: String,
    pub sot: Sot,
    /// The files `sot` was loaded from (kept: checkpoints are read from it).
    _files: tempfile::TempDir,
}

/// Loaded snapshots by commit id.
#[derive(Default)]
pub struct Snapshots {
    loaded: Mutex<HashMap<String, Arc<Snapshot>>>,
}

impl Snapshots {
    /// The SoT in `root` at `rev` (HEAD when none): any revision git
    /// understands, resolved to its commit.
    pub fn at(&self, root: &Path, rev: Option<&str>) -> Result<Arc<Snapshot>, ApiError> {
        let sot_repo = crate::sot::git::SotRepo::open(root)
            .map_err(|e| ApiError::Internal(format!("the SoT {}: {e}", root.display())))?;
        let repo = &sot_repo.repo;
        let rev = rev.unwrap_or("HEAD");
        let commit = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map_err(|_| ApiError::NotFound(format!("no commit `{rev}` in the SoT")))?;
        let id = commit.id().to_string();
        if let Some(s) = self.loaded.lock().expect("snapshot cache").get(&id) {
            return Ok(s.clone());
        }
        let tree = commit
            .tree()
            .map_err(|e| ApiError::Internal(format!("commit {id}: {e}")))?;
        let prefix = &sot_repo.prefix;
        // The SoT may be a directory inside its repository.
        let tree = if prefix.as_os_str().is_empty() {
            tree
        } else {
            tree.get_path(prefix)
                .and_then(|e| e.to_object(repo))
                .and_then(|o| o.peel_to_tree())
                .map_err(|_| {
                    ApiError::NotFound(format!("commit {id} has no SoT at {}", prefix.display()))
                })?
        };
        let dir = tempfile::tempdir()
            .map_err(|e| ApiError::Internal(format!("temporary directory: {e}")))?;
        write_tree(repo, &tree, dir.path())?;
        let sot = crate::sot::load(dir.path()).map_err(|e| {
            ApiError::Internal(format!("the SoT at commit {id} does not load: {e}"))
        })?;
        let snapshot = Arc::new(Snapshot {
            commit: id.clone(),
            sot,
            _files: dir,
        });
        let mut loaded = self.loaded.lock().expect("snapshot cache");
        if loaded.len() >= KEEP {
            loaded.clear();
        }
        loaded.insert(id, snapshot.clone());
        Ok(snapshot)
    }
}

/// Write every file of `tree` under `dir` (symlinks are left out: the
/// loader refuses them anyway, and a link must not point the load elsewhere).
fn write_tree(repo: &Repository, tree: &git2::Tree<'_>, dir: &Path) -> Result<(), ApiError> {
    let mut failed = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        if entry.kind() != Some(ObjectType::Blob) || entry.filemode() == 0o120000 {
            return TreeWalkResult::Ok;
        }
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Ok;
        };
        let path = dir.join(parent).join(name);
        let written = entry
            .to_object(repo)
            .map_err(|e| e.to_string())
            .and_then(|o| o.peel_to_blob().map_err(|e| e.to_string()))
            .and_then(|blob| {
                if let Some(up) = path.parent() {
                    std::fs::create_dir_all(up).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, blob.content()).map_err(|e| e.to_string())
            });
        match written {
            Ok(()) => TreeWalkResult::Ok,
            Err(e) => {
                failed = Some(format!("{}: {e}", path.display()));
                TreeWalkResult::Abort
            }
        }
    });
    if let Some(e) = failed {
        return Err(ApiError::Internal(e));
    }
    walked.map_err(|e| ApiError::Internal(e.to_string()))
}
