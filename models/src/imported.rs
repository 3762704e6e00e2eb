//! The `manifest.json` of a folder written by `mio import`, and how loaders find the
//! imported LM from it (so an imported folder needs no `--lm` flag).
//!
//! Ports nothing upstream. An imported folder holds the release's tokenizer and config
//! files, `model-<quant>.gguf` (the LM), safetensors copies of the pickled SEED and
//! SpeechTokenizer weights, the unCLIP components the decoder reads and its cached
//! empty-prompt embedding, and this manifest (written last: its presence means complete).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File name of the manifest inside an imported folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Format version of the manifest.
pub const MANIFEST_VERSION: u32 = 1;

/// One file read from the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path relative to the release folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Its sha256 (hex).
    pub sha256: String,
    /// Where the expected sha256 came from (`huggingface-cache-blob`, `checksums-file`), or
    /// `None` when nothing published one and the hash is only recorded (unverified).
    pub verified_by: Option<String>,
}

/// One file written into the imported folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the imported folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Its sha256 (hex).
    pub sha256: String,
    /// The release files it was made from (relative paths).
    pub from: Vec<String>,
    /// What was done (`copy`, `gguf-<quant>`, `pickle-to-safetensors`, `clip-empty-prompt`).
    pub how: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportManifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// `mio <version>` that wrote it.
    pub tool: String,
    /// The release folder imported (absolute).
    pub release: PathBuf,
    /// GGUF type of the LM (`q4_k_m`, `q8_0`, `f16`).
    pub quant: String,
    /// The LM file, relative to the folder.
    pub lm_file: String,
    /// Seconds since the Unix epoch when the import finished.
    pub created_unix: u64,
    /// Release files read.
    pub sources: Vec<SourceFile>,
    /// Files written.
    pub outputs: Vec<OutputFile>,
}

impl ImportManifest {
    /// Reads `dir/manifest.json`, `None` when the folder was not imported.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Self = serde_json::from_str(&text)
            .map_err(|e| Error::InvalidConfig(format!("{}: {e}", path.display())))?;
        if m.version != MANIFEST_VERSION {
            return Err(Error::InvalidConfig(format!(
                "{} has version {} but this mio reads version {MANIFEST_VERSION}",
                path.display(),
                m.version
            )));
        }
        Ok(Some(m))
    }
}

/// The GGUF LM of an imported folder (from its manifest), `None` for a release folder.
pub fn imported_lm(dir: &Path) -> Result<Option<PathBuf>> {
    let Some(m) = ImportManifest::read(dir)? else {
        return Ok(None);
    };
    let path = dir.join(&m.lm_file);
    if !path.is_file() {
        return Err(Error::MissingFile(path));
    }
    Ok(Some(path))
}

/// Metadata key of the cached empty-prompt embedding: the sha256 of the text encoder
/// weights it was computed from.
pub const TEXT_ENCODER_KEY: &str = "text_encoder_sha256";

/// unCLIP's empty-prompt CLIP text embedding (the text encoder of `unclip_dir` loaded, run
/// once and dropped) as the bytes of `empty_prompt_embeds.safetensors`, keyed by
/// `text_encoder_sha256` in its metadata. The decoder reads this file instead of loading
/// the text encoder.
pub fn empty_prompt_safetensors(
    unclip_dir: &Path,
    text_encoder_sha256: &str,
    dev: &candle_core::Device,
) -> Result<Vec<u8>> {
    let t = crate::image_decoder::encode_empty_prompt(unclip_dir, dev)?
        .to_dtype(candle_core::DType::F32)?
        .to_device(&candle_core::Device::Cpu)?;
    let meta = std::collections::HashMap::from([(
        TEXT_ENCODER_KEY.to_string(),
        text_encoder_sha256.to_string(),
    )]);
    let shape = t.dims().to_vec();
    let bytes: Vec<u8> = t
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .flat_map(f32::to_le_bytes)
        .collect();
    let err = |e: safetensors::SafeTensorError| {
        Error::InvalidArgument(format!("cannot serialize the embedding: {e}"))
    };
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, &bytes)
        .map_err(err)?;
    safetensors::serialize([("empty_prompt_embeds", view)], Some(meta)).map_err(err)
}
