//! Where unCLIP's empty-prompt CLIP embedding comes from, cheapest first.
//!
//! The decoder always conditions on `_encode_prompt("")` (diffusers
//! `StableUnCLIPImg2ImgPipeline`), a constant of the text encoder's weights. Loading the
//! text encoder (about 1.4 GB at real size) on every start only to recompute it is waste, so:
//! 1. `empty_prompt_embeds.safetensors` in the unCLIP folder (written by `mio import`);
//! 2. else the cache folder the caller names (the app's data folder, `~/.cache/mio` for the
//!    CLI): `unclip-empty-prompt/<sha256 of the text encoder weights>.safetensors`. The sha256
//!    itself is memoised per (path, size, modification time) so a warm start reads no weights;
//! 3. else (or on a cache miss) the text encoder is loaded, run once and dropped, and the
//!    result is written to the cache atomically (temporary name, fsync, rename). A cache that
//!    cannot be written only costs the next start the same work: it never fails the load.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use super::clip_text::{encode_empty_prompt, text_encoder_weights};
use crate::imported::{empty_prompt_safetensors, TEXT_ENCODER_KEY};
use crate::{Error, Result};

/// The precomputed empty-prompt CLIP text embedding (1 × 77 × d).
pub const EMPTY_PROMPT_EMBEDS: &str = "empty_prompt_embeds.safetensors";

/// Sub-folder of the cache folder holding the embeddings.
pub const PROMPT_CACHE_DIR: &str = "unclip-empty-prompt";

/// Where [`load_prompt_embeds`] found the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptSource {
    /// `empty_prompt_embeds.safetensors` beside the pipeline (an imported folder).
    Folder,
    /// The cache folder, keyed by the text encoder's sha256.
    Cache,
    /// Computed by the text encoder now (and written to the cache when one was given).
    Computed,
}

/// The empty-prompt embedding of `unclip_dir` (float32 on `dev`) and where it came from.
pub fn load_prompt_embeds(
    unclip_dir: &Path,
    dev: &Device,
    cache_dir: Option<&Path>,
) -> Result<(Tensor, PromptSource)> {
    let beside = unclip_dir.join(EMPTY_PROMPT_EMBEDS);
    if beside.is_file() {
        return Ok((read_embeds(&beside, dev, None)?, PromptSource::Folder));
    }
    let Some(cache_dir) = cache_dir else {
        return Ok((
            encode_empty_prompt(unclip_dir, dev)?,
            PromptSource::Computed,
        ));
    };
    let weights = text_encoder_weights(unclip_dir)?;
    let sha = weights_sha256(&weights, cache_dir)?;
    let cached = cache_dir
        .join(PROMPT_CACHE_DIR)
        .join(format!("{sha}.safetensors"));
    if cached.is_file() {
        // A damaged or foreign cache entry is recomputed, never trusted.
        if let Ok(t) = read_embeds(&cached, dev, Some(&sha)) {
            return Ok((t, PromptSource::Cache));
        }
    }
    let bytes = empty_prompt_safetensors(unclip_dir, &sha, &Device::Cpu)?;
    // Best effort: an unwritable cache only means the next start recomputes.
    let _ = write_atomically(&cached, &bytes);
    let t = tensor_from_bytes(&bytes, &cached, None)?.to_device(dev)?;
    Ok((t, PromptSource::Computed))
}

/// Reads `empty_prompt_embeds` from a safetensors file; with `key`, the file's
/// `text_encoder_sha256` metadata must equal it.
fn read_embeds(path: &Path, dev: &Device, key: Option<&str>) -> Result<Tensor> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    tensor_from_bytes(&bytes, path, key)?
        .to_device(dev)
        .map_err(Into::into)
}

fn tensor_from_bytes(bytes: &[u8], path: &Path, key: Option<&str>) -> Result<Tensor> {
    let bad = |m: String| Error::checkpoint(path, m);
    if let Some(key) = key {
        let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let found = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(TEXT_ENCODER_KEY).cloned());
        if found.as_deref() != Some(key) {
            return Err(bad(format!(
                "computed from another text encoder (expected {TEXT_ENCODER_KEY} {key})"
            )));
        }
    }
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let t = tensors
        .get("empty_prompt_embeds")
        .ok_or_else(|| Error::MissingTensor("empty_prompt_embeds".into()))?;
    Ok(t.to_dtype(DType::F32)?)
}

/// sha256 (lower-case hex) of `file`, memoised in `cache_dir` under the file's canonical
/// path, size and modification time: a file that changed in any of them is hashed again.
pub fn weights_sha256(file: &Path, cache_dir: &Path) -> Result<String> {
    let memo = memo_path(file, cache_dir)?;
    if let Ok(s) = fs::read_to_string(&memo) {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s.to_string());
        }
    }
    let sha = sha256_file(file)?;
    let _ = write_atomically(&memo, sha.as_bytes());
    Ok(sha)
}

fn memo_path(file: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let canon = fs::canonicalize(file).map_err(|e| Error::io(file, e))?;
    let meta = fs::metadata(&canon).map_err(|e| Error::io(&canon, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut h = Sha256::new();
    h.update(canon.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(mtime.to_le_bytes());
    let id = hex(&h.finalize());
    Ok(cache_dir
        .join(PROMPT_CACHE_DIR)
        .join(format!("{id}.sha256")))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` through a temporary name in the same folder, fsynced, then
/// renamed: a reader sees the old file, or none, or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn memo_follows_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        let cache = dir.path().join("cache");
        fs::write(&file, b"abc").unwrap();
        let a = weights_sha256(&file, &cache).unwrap();
        assert_eq!(
            a,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Same size and mtime: the memo answers without reading the file.
        let t = fs::metadata(&file).unwrap().modified().unwrap();
        fs::write(&file, b"xyz").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(t)
            .unwrap();
        assert_eq!(weights_sha256(&file, &cache).unwrap(), a);
        // Another size: hashed again.
        fs::write(&file, b"abcd").unwrap();
        assert_ne!(weights_sha256(&file, &cache).unwrap(), a);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.bin");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two!").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two!");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
