//! An agent version's artifact on the controller: a file of the SoT, or an
//! http(s) URL fetched once into a cache keyed by its digest. Either way its
//! sha256 is checked here before any node is sent a byte of it (the node
//! checks again before unpacking).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::sot::model::AgentVersion;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact {source_name} does not exist")]
    Missing { source_name: String },
    #[error("cannot read the artifact {source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error(
        "the artifact {source_name} has sha256 {actual}, but agents.toml says {expected}: it was not sent to any node"
    )]
    Digest {
        source_name: String,
        expected: String,
        actual: String,
    },
    #[error("cannot fetch {url}: {error}")]
    Fetch { url: String, error: String },
    #[error("cannot write the artifact cache {path}: {error}")]
    Cache {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A verified artifact on the controller's disk.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// As agents.toml names it.
    pub source: String,
}

/// The artifact cache: `$XDG_CACHE_HOME/maestro/artifacts`, else
/// `~/.cache/maestro/artifacts`.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("maestro").join("artifacts")
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The sha256 (hex) and size of a file, streamed.
pub fn digest_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex(&h.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Find, fetch if needed, and verify `version`'s artifact.
pub fn resolve(
    sot_root: &Path,
    version: &AgentVersion,
    cache: &Path,
) -> Result<Artifact, ArtifactError> {
    let source = version.artifact.clone();
    let expected = version.sha256.to_ascii_lowercase();
    let path = if is_url(&source) {
        let cached = cache.join(format!("sha256-{expected}"));
        if !cached.exists() {
            fetch(&source, cache, &cached)?;
        }
        cached
    } else {
        let p = sot_root.join(&source);
        if !p.is_file() {
            return Err(ArtifactError::Missing {
                source_name: p.display().to_string(),
            });
        }
        p
    };
    let (actual, size) = digest_file(&path).map_err(|error| ArtifactError::Read {
        source_name: path.display().to_string(),
        error,
    })?;
    if actual != expected {
        if is_url(&source) {
            // A bad download must not stick: the next attempt fetches again.
            let _ = std::fs::remove_file(&path);
        }
        return Err(ArtifactError::Digest {
            source_name: if is_url(&source) {
                format!("{source} (cached at {})", path.display())
            } else {
                path.display().to_string()
            },
            expected,
            actual,
        });
    }
    Ok(Artifact {
        path,
        sha256: actual,
        size,
        source,
    })
}

/// GET `url` into `dest` (through a temporary file in the cache, renamed
/// into place only when complete).
fn fetch(url: &str, cache: &Path, dest: &Path) -> Result<(), ArtifactError> {
    let cache_err = |error| ArtifactError::Cache {
        path: cache.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(cache).map_err(cache_err)?;
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .build()
        .new_agent();
    let response = agent.get(url).call().map_err(|e| ArtifactError::Fetch {
        url: url.to_string(),
        error: e.to_string(),
    })?;
    let mut tmp = tempfile::NamedTempFile::new_in(cache).map_err(cache_err)?;
    let mut body = response.into_body();
    let mut reader = body.with_config().limit(u64::MAX).reader();
    std::io::copy(&mut reader, tmp.as_file_mut()).map_err(|e| ArtifactError::Fetch {
        url: url.to_string(),
        error: e.to_string(),
    })?;
    tmp.persist(dest).map_err(|e| cache_err(e.error))?;
    Ok(())
}
