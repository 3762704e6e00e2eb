//! What a MIO release folder holds, found without loading any weights (`mio info`).
//!
//! Knows both layouts: the tiny/modern one (`model-0000K-of-0000N.safetensors` + index) and
//! the real release as it ships (`pytorch_model-0000K-of-0000N.bin`, no index).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{Error, Result};

/// One component of a release folder.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Short name (`lm`, `tokenizer`, `seed-tokenizer`, `speech-tokenizer`, `unclip`).
    pub name: String,
    /// Folder or first file of the component.
    pub path: PathBuf,
    /// Files that make it up.
    pub files: Vec<PathBuf>,
    /// Bytes on disk.
    pub bytes: u64,
    /// Storage format (`safetensors`, `pytorch-pickle`, `sentencepiece`, `diffusers`).
    pub format: String,
    /// Element types found (from safetensors headers; pickles report `float32`/`float16` as
    /// the release documents them).
    pub dtypes: Vec<String>,
    /// Number of parameters, when the headers tell.
    pub parameters: Option<u64>,
}

/// Everything `mio info` reports about a folder.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInfo {
    /// The folder.
    pub root: PathBuf,
    /// Components found.
    pub components: Vec<Component>,
    /// Components the app needs that are missing (they disable a feature, not the app).
    pub missing: Vec<String>,
}

/// The LM weight shards of `dir`, by name: `(files, format)`.
///
/// Prefers safetensors (with or without index) over `.bin` pickles. Shards named
/// `…-0000K-of-0000N…` must all be present.
pub fn lm_shards(dir: &Path) -> Result<(Vec<PathBuf>, &'static str)> {
    let entries = list_dir(dir)?;
    for (prefix, ext, format) in [
        ("model", "safetensors", "safetensors"),
        ("pytorch_model", "bin", "pytorch-pickle"),
    ] {
        let single = dir.join(format!("{prefix}.{ext}"));
        let mut shards: Vec<PathBuf> = entries
            .iter()
            .filter(|p| shard_of(p, prefix, ext).is_some())
            .cloned()
            .collect();
        shards.sort();
        if !shards.is_empty() {
            check_complete(&shards, prefix, ext)?;
            return Ok((shards, format));
        }
        if single.is_file() {
            return Ok((vec![single], format));
        }
    }
    Err(Error::MissingFile(
        dir.join("model-*.safetensors or pytorch_model-*.bin"),
    ))
}

/// `(k, n)` of a file named `{prefix}-0000K-of-0000N.{ext}`.
fn shard_of(path: &Path, prefix: &str, ext: &str) -> Option<(usize, usize)> {
    let name = path.file_name()?.to_str()?;
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    let rest = rest.strip_suffix('.')?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}

fn check_complete(shards: &[PathBuf], prefix: &str, ext: &str) -> Result<()> {
    let Some((_, n)) = shards.first().and_then(|p| shard_of(p, prefix, ext)) else {
        return Ok(());
    };
    for k in 1..=n {
        let found = shards
            .iter()
            .any(|p| shard_of(p, prefix, ext) == Some((k, n)));
        if !found {
            let dir = shards[0].parent().unwrap_or(Path::new("."));
            return Err(Error::MissingFile(
                dir.join(format!("{prefix}-{k:05}-of-{n:05}.{ext}")),
            ));
        }
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = vec![];
    for entry in rd {
        out.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len())
}

/// Element types and parameter count from a safetensors header (reads the header only).
fn safetensors_summary(path: &Path) -> Result<(Vec<String>, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 || len > file_size(path)? {
        return Err(Error::checkpoint(
            path,
            "safetensors header length is out of range",
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::checkpoint(path, format!("bad safetensors header: {e}")))?;
    let mut dtypes = vec![];
    let mut params = 0u64;
    for (name, t) in json.as_object().into_iter().flatten() {
        if name == "__metadata__" {
            continue;
        }
        if let Some(d) = t.get("dtype").and_then(|d| d.as_str()) {
            let d = d.to_ascii_lowercase();
            if !dtypes.contains(&d) {
                dtypes.push(d);
            }
        }
        let shape = t.get("shape").and_then(|s| s.as_array());
        params += shape.map_or(0, |s| s.iter().filter_map(|x| x.as_u64()).product::<u64>());
    }
    dtypes.sort();
    Ok((dtypes, params))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in list_dir(dir)? {
        if p.is_dir() {
            files_under(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn component(name: &str, path: PathBuf, files: Vec<PathBuf>, format: &str) -> Result<Component> {
    let mut bytes = 0;
    let mut dtypes: Vec<String> = vec![];
    let mut params = 0u64;
    let mut counted = false;
    for f in &files {
        bytes += file_size(f)?;
        if f.extension().is_some_and(|e| e == "safetensors") {
            let (d, p) = safetensors_summary(f)?;
            d.into_iter().for_each(|d| {
                if !dtypes.contains(&d) {
                    dtypes.push(d)
                }
            });
            params += p;
            counted = true;
        }
    }
    let parameters = counted.then_some(params);
    Ok(Component {
        name: name.into(),
        path,
        files,
        bytes,
        format: format.into(),
        dtypes,
        parameters,
    })
}

impl ReleaseInfo {
    /// Scans `root` (a MIO release folder) without reading any weights.
    pub fn scan(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::MissingFile(root.to_path_buf()));
        }
        let mut components = vec![];
        let mut missing = vec![];
        match lm_shards(root) {
            Ok((shards, format)) => {
                let mut c = component("lm", root.to_path_buf(), shards, format)?;
                if format == "pytorch-pickle" {
                    c.dtypes = vec!["f32".into()];
                    c.parameters = Some(c.bytes / 4);
                }
                components.push(c);
            }
            Err(Error::MissingFile(p)) => missing.push(format!("lm ({})", p.display())),
            Err(e) => return Err(e),
        }
        let tok = root.join("tokenizer.model");
        if tok.is_file() {
            let mut files = vec![tok.clone()];
            for extra in [
                "tokenizer_config.json",
                "special_tokens_map.json",
                "added_tokens.json",
            ] {
                let p = root.join(extra);
                if p.is_file() {
                    files.push(p);
                }
            }
            components.push(component("tokenizer", tok, files, "sentencepiece")?);
        } else {
            missing.push("tokenizer (tokenizer.model)".into());
        }
        for (name, sub, format) in [
            ("seed-tokenizer", "seed-tokenizer-2", "pytorch-pickle"),
            ("speech-tokenizer", "SpeechTokenizer", "pytorch-pickle"),
            ("unclip", "stable-diffusion-2-1-unclip", "diffusers"),
        ] {
            let dir = root.join(sub);
            if dir.is_dir() {
                let mut files = vec![];
                files_under(&dir, &mut files)?;
                components.push(component(name, dir, files, format)?);
            } else {
                missing.push(format!("{name} ({sub}/)"));
            }
        }
        Ok(ReleaseInfo {
            root: root.to_path_buf(),
            components,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_shard_names() {
        let p = Path::new("/x/pytorch_model-00002-of-00006.bin");
        assert_eq!(shard_of(p, "pytorch_model", "bin"), Some((2, 6)));
        assert_eq!(shard_of(p, "model", "safetensors"), None);
        let p = Path::new("/x/model-00001-of-00002.safetensors");
        assert_eq!(shard_of(p, "model", "safetensors"), Some((1, 2)));
    }

    #[test]
    fn a_missing_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model-00001-of-00003.bin"), b"x").unwrap();
        std::fs::write(dir.path().join("pytorch_model-00003-of-00003.bin"), b"x").unwrap();
        let err = lm_shards(dir.path()).unwrap_err().to_string();
        assert!(err.contains("pytorch_model-00002-of-00003.bin"), "{err}");
    }
}
