//! The two SEED checkpoints of `seed-tokenizer-2/` and which of their tensors the encoder
//! reads.
//!
//! `eva_vit_g.pth` (float16, un-prefixed ViT names: all read) and `seed_quantizer.pt`
//! (`Blip2QformerQuantizer.state_dict()` without `visual_encoder.*`). The latter also holds
//! tensors the encoder never reads, listed here explicitly so a test can prove every other
//! tensor is read (CONVENTIONS rule 6):
//! * [`DECODER_SIDE_PREFIXES`]: the decoder half (`get_codebook_entry`, the unCLIP
//!   conditioning) and the training-only `recon_s` blocks;
//! * [`is_dropped_upstream`]: tensors `Blip2QformerQuantizer.__init__` sets to `None` or
//!   never builds (`Qformer.cls`, word/position embeddings, the text feed-forward
//!   `intermediate`/`output`, `vision_proj`, `text_proj`, `itm_head`, `temp`) and the
//!   `position_ids` buffer (text path only).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::weights_file::{preferred_weights, WeightFile};
use crate::{Error, Result};

/// Sub-folder of a release holding the SEED tokenizer.
pub const SEED_DIR: &str = "seed-tokenizer-2";
/// The EVA ViT checkpoint.
pub const VIT_FILE: &str = "eva_vit_g.pth";
/// The quantizer checkpoint.
pub const QUANTIZER_FILE: &str = "seed_quantizer.pt";

/// `seed_quantizer.pt` name prefixes of the decoder side (`pos_embed` and
/// `pos_embed_image` are whole names).
pub const DECODER_SIDE_PREFIXES: &[&str] = &[
    "decode_task_layer.",
    "pos_embed_image",
    "blocks_image.",
    "image_down.",
    "distill_image_proj.",
    // recon_s: only used in training (reconstruction of the Q-Former features).
    "pos_embed",
    "blocks.",
];

/// Whole `seed_quantizer.pt` names that upstream drops or never builds.
const DROPPED_NAMES: &[&str] = &[
    "Qformer.bert.embeddings.word_embeddings.weight",
    "Qformer.bert.embeddings.position_embeddings.weight",
    "Qformer.bert.embeddings.position_ids",
    "vision_proj.weight",
    "vision_proj.bias",
    "text_proj.weight",
    "text_proj.bias",
    "itm_head.weight",
    "itm_head.bias",
    "temp",
];

/// Whether `name` is a decoder-side tensor of `seed_quantizer.pt`.
pub fn is_decoder_side(name: &str) -> bool {
    DECODER_SIDE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Whether `name` is a `seed_quantizer.pt` tensor that the upstream model drops.
pub fn is_dropped_upstream(name: &str) -> bool {
    if DROPPED_NAMES.contains(&name) || name.starts_with("Qformer.cls.") {
        return true;
    }
    // Qformer.bert.encoder.layer.{i}.intermediate.* / .output.* (text feed-forward).
    let Some(rest) = name.strip_prefix("Qformer.bert.encoder.layer.") else {
        return false;
    };
    let Some((index, tail)) = rest.split_once('.') else {
        return false;
    };
    index.parse::<usize>().is_ok()
        && (tail.starts_with("intermediate.") || tail.starts_with("output."))
}

/// The folder holding the two checkpoints: `dir` itself or `dir/seed-tokenizer-2`.
/// Either checkpoint may be the pickle or its `.safetensors` copy.
pub fn seed_dir(dir: &Path) -> Result<PathBuf> {
    if preferred_weights(&dir.join(QUANTIZER_FILE)).is_file() {
        return Ok(dir.to_path_buf());
    }
    let sub = dir.join(SEED_DIR);
    if preferred_weights(&sub.join(QUANTIZER_FILE)).is_file() {
        return Ok(sub);
    }
    Err(Error::MissingFile(sub.join(QUANTIZER_FILE)))
}

/// A checkpoint that records the names read through it.
#[derive(Debug, Clone)]
pub struct TrackedPth {
    file: Arc<WeightFile>,
    read: Arc<Mutex<BTreeSet<String>>>,
}

impl TrackedPth {
    /// Opens `path`, or its safetensors copy when present (an imported folder).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            file: Arc::new(WeightFile::open_preferred(path)?),
            read: Arc::new(Mutex::new(BTreeSet::new())),
        })
    }

    /// A `VarBuilder` (f32 on `dev`) reading through this tracker.
    pub fn var_builder(&self, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, dev.clone())
    }

    /// Names never read so far, sorted.
    pub fn unread(&self) -> Vec<String> {
        let read = match self.read.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut names: Vec<String> = self
            .file
            .names()
            .filter(|n| !read.contains(*n))
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        names
    }

    fn mark(&self, name: &str) {
        if let Ok(mut read) = self.read.lock() {
            read.insert(name.to_owned());
        }
    }
}

impl SimpleBackend for TrackedPth {
    fn get(
        &self,
        s: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = SimpleBackend::get(self.file.as_ref(), s, name, init, dtype, dev)?;
        self.mark(name);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = SimpleBackend::get_unchecked(self.file.as_ref(), name, dtype, dev)?;
        self.mark(name);
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.file.contains(name)
    }
}

/// Tensors of the two checkpoints the encoder did not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Unread `eva_vit_g.pth` tensors (expected: none).
    pub vit_unread: Vec<String>,
    /// Unread `seed_quantizer.pt` tensors (expected: decoder side and dropped upstream).
    pub quantizer_unread: Vec<String>,
}

impl LoadReport {
    /// Unread tensors that are neither decoder side nor dropped upstream (expected: none).
    pub fn unexpected_unread(&self) -> Vec<&str> {
        let quantizer = self
            .quantizer_unread
            .iter()
            .filter(|n| !is_decoder_side(n) && !is_dropped_upstream(n));
        self.vit_unread
            .iter()
            .chain(quantizer)
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_unused_names() {
        assert!(is_decoder_side("blocks_image.3.mlp.fc2.bias"));
        assert!(is_decoder_side("pos_embed"));
        assert!(is_decoder_side("blocks.0.attn.qkv.weight"));
        assert!(!is_decoder_side(
            "Qformer.bert.encoder.layer.0.attention.self.query.weight"
        ));
        assert!(!is_decoder_side("encode_task_layer.0.weight"));
        assert!(is_dropped_upstream(
            "Qformer.bert.encoder.layer.11.output.dense.weight"
        ));
        assert!(is_dropped_upstream(
            "Qformer.bert.encoder.layer.0.intermediate.dense.bias"
        ));
        assert!(!is_dropped_upstream(
            "Qformer.bert.encoder.layer.0.output_query.dense.bias"
        ));
        assert!(!is_dropped_upstream(
            "Qformer.bert.encoder.layer.0.attention.output.dense.bias"
        ));
        assert!(is_dropped_upstream("Qformer.cls.predictions.bias"));
        assert!(is_dropped_upstream("temp"));
        assert!(!is_dropped_upstream("query_tokens"));
    }
}
