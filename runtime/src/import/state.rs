//! The progress file of an import (`MODELDIR/.mio-import.json`): which source files were
//! hashed and which outputs are finished. Written atomically after every step, so a killed
//! import resumes where it stopped; finished outputs are re-hashed before being trusted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mio_models::imported::{OutputFile, SourceFile};
use serde::{Deserialize, Serialize};

/// File name of the progress file.
pub(crate) const STATE_FILE: &str = ".mio-import.json";

/// A hashed source, with what identifies the version hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HashedSource {
    pub file: SourceFile,
    /// Modification time (ns since the epoch) when hashed.
    pub mtime_ns: u128,
}

/// The progress file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ImportState {
    pub release: PathBuf,
    pub quant: String,
    pub sources: BTreeMap<String, HashedSource>,
    pub done: BTreeMap<String, OutputFile>,
}

impl ImportState {
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(STATE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let state = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; delete the folder and import again",
                path.display()
            )
        })?;
        Ok(Some(state))
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }
}

/// `path` + `.partial`.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Flushes the directory entry of a rename to disk (best effort where unsupported).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` via a temporary name, fsync and rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Modification time of `path` in ns since the epoch (0 when unknown).
pub(crate) fn mtime_ns(path: &Path) -> u128 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}
