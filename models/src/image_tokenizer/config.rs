//! SEED image tokenizer hyper-parameters (encoder side).
//!
//! The real release carries no config for the SEED tokenizer: its sizes are hard-coded
//! upstream (`eva_vit.py::create_eva_vit_g`: ViT-g 1408/39/16 heads, mlp 6144, patch 14;
//! `blip2.py::init_Qformer`: `bert-base-uncased` 768/12/12/3072 with cross-attention every
//! 2nd layer; `qformer_quantizer.py::Blip2QformerQuantizer`: 32 queries, 8192 × 32
//! codebook). A `tiny_hparams.json` next to the weights (the tiny fixture model ships one)
//! overrides them. Two layers, as everywhere: [`SeedHparams`] mirrors that file field for
//! field with the real values as defaults, [`SeedConfig`] is what the modules take.

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// The file next to the weights whose values override the real sizes.
pub const HPARAMS_FILE: &str = "tiny_hparams.json";

/// `tiny_hparams.json` → `vit` (EVA-CLIP ViT-g, `eva_vit.py::VisionTransformer`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VitHparams {
    /// `img_size` (224).
    pub img_size: usize,
    /// `patch_size` (14).
    pub patch_size: usize,
    /// `embed_dim` (1408).
    pub embed_dim: usize,
    /// `depth` (39).
    pub depth: usize,
    /// `num_heads` (1408 // 88 = 16).
    pub num_heads: usize,
    /// `mlp_ratio` (4.3637); the hidden size is `int(embed_dim * mlp_ratio)`.
    pub mlp_ratio: f64,
    /// `mlp_hidden` when given explicitly (6144 for ViT-g).
    pub mlp_hidden: Option<usize>,
    /// `qkv_bias` (true: `q_bias` and `v_bias`, no k bias).
    pub qkv_bias: bool,
    /// `norm_eps` of the blocks' LayerNorms (1e-6).
    pub norm_eps: f64,
}

impl Default for VitHparams {
    fn default() -> Self {
        Self {
            img_size: 224,
            patch_size: 14,
            embed_dim: 1408,
            depth: 39,
            num_heads: 16,
            mlp_ratio: 4.3637,
            mlp_hidden: None,
            qkv_bias: true,
            norm_eps: 1e-6,
        }
    }
}

/// `tiny_hparams.json` → `qformer` (`qformer_causual.py::BertModel`, bert-base sizes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct QformerHparams {
    /// `hidden_size` (768).
    pub hidden_size: usize,
    /// `num_hidden_layers` (12).
    pub num_hidden_layers: usize,
    /// `num_attention_heads` (12).
    pub num_attention_heads: usize,
    /// `intermediate_size` (3072).
    pub intermediate_size: usize,
    /// `layer_norm_eps` (1e-12).
    pub layer_norm_eps: f64,
    /// `hidden_act` ("gelu": the exact erf GELU).
    pub hidden_act: String,
    /// `cross_attention_freq` (2: layers 0, 2, 4, … cross-attend).
    pub cross_attention_freq: usize,
    /// `encoder_width` (the ViT width, 1408).
    pub encoder_width: usize,
    /// `num_query_token` (32).
    pub num_query_token: usize,
}

impl Default for QformerHparams {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".to_owned(),
            cross_attention_freq: 2,
            encoder_width: 1408,
            num_query_token: 32,
        }
    }
}

/// `tiny_hparams.json` → `codebook` (`VectorQuantizer2`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CodebookHparams {
    /// `n_embed` (8192).
    pub n_embed: usize,
    /// `codebook_embed_dim` (32).
    pub codebook_embed_dim: usize,
}

impl Default for CodebookHparams {
    fn default() -> Self {
        Self {
            n_embed: 8192,
            codebook_embed_dim: 32,
        }
    }
}

/// The whole `tiny_hparams.json` (encoder side; other keys are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SeedHparams {
    /// `vit`.
    pub vit: VitHparams,
    /// `ln_vision_eps` (1e-5: a plain `nn.LayerNorm`).
    pub ln_vision_eps: f64,
    /// `qformer`.
    pub qformer: QformerHparams,
    /// `codebook`.
    pub codebook: CodebookHparams,
}

impl Default for SeedHparams {
    fn default() -> Self {
        Self {
            vit: VitHparams::default(),
            ln_vision_eps: 1e-5,
            qformer: QformerHparams::default(),
            codebook: CodebookHparams::default(),
        }
    }
}

impl SeedHparams {
    /// Reads `dir/tiny_hparams.json` when present, else the real sizes.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(HPARAMS_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path,
            message: e.to_string(),
        })
    }
}

/// Runtime sizes of the EVA ViT.
#[derive(Debug, Clone, PartialEq)]
pub struct VitConfig {
    /// Input side in pixels.
    pub img_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Width.
    pub embed_dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP hidden size.
    pub mlp_hidden: usize,
    /// Whether attention has `q_bias`/`v_bias`.
    pub qkv_bias: bool,
    /// LayerNorm eps of the blocks.
    pub norm_eps: f64,
}

impl VitConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }
}

/// Runtime sizes of the causal Q-Former.
#[derive(Debug, Clone, PartialEq)]
pub struct QformerConfig {
    /// Width.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward hidden size.
    pub intermediate_size: usize,
    /// LayerNorm eps.
    pub layer_norm_eps: f64,
    /// Every how many layers a cross-attention sits (layer `i % freq == 0`).
    pub cross_attention_freq: usize,
    /// Width of the image features cross-attended to.
    pub encoder_width: usize,
    /// Number of learned queries.
    pub num_query_token: usize,
}

/// Runtime configuration of the SEED encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedConfig {
    /// The ViT.
    pub vit: VitConfig,
    /// `ln_vision` eps.
    pub ln_vision_eps: f64,
    /// The Q-Former.
    pub qformer: QformerConfig,
    /// Codebook entries.
    pub n_embed: usize,
    /// Codebook entry width.
    pub codebook_embed_dim: usize,
}

impl SeedConfig {
    /// The real release's sizes (EVA ViT-g, bert-base Q-Former, 8192 × 32 codebook).
    pub fn seed_tokenizer_2() -> Self {
        Self::derive(&SeedHparams::default())
    }

    /// Validates `h` and derives the runtime config.
    pub fn from_hparams(h: &SeedHparams) -> Result<Self> {
        validate(h)?;
        Ok(Self::derive(h))
    }

    fn derive(h: &SeedHparams) -> Self {
        let (v, q) = (&h.vit, &h.qformer);
        // Python's int(embed_dim * mlp_ratio) truncates.
        let mlp_hidden = v
            .mlp_hidden
            .unwrap_or((v.embed_dim as f64 * v.mlp_ratio) as usize);
        Self {
            vit: VitConfig {
                img_size: v.img_size,
                patch_size: v.patch_size,
                embed_dim: v.embed_dim,
                depth: v.depth,
                num_heads: v.num_heads,
                mlp_hidden,
                qkv_bias: v.qkv_bias,
                norm_eps: v.norm_eps,
            },
            ln_vision_eps: h.ln_vision_eps,
            qformer: QformerConfig {
                hidden_size: q.hidden_size,
                num_hidden_layers: q.num_hidden_layers,
                num_attention_heads: q.num_attention_heads,
                intermediate_size: q.intermediate_size,
                layer_norm_eps: q.layer_norm_eps,
                cross_attention_freq: q.cross_attention_freq,
                encoder_width: q.encoder_width,
                num_query_token: q.num_query_token,
            },
            n_embed: h.codebook.n_embed,
            codebook_embed_dim: h.codebook.codebook_embed_dim,
        }
    }

    /// `from_hparams` of `dir/tiny_hparams.json`, or of the real sizes when absent.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_hparams(&SeedHparams::from_dir(dir)?)
    }
}

/// Rejects sizes the modules cannot be built with.
fn validate(h: &SeedHparams) -> Result<()> {
    let v = &h.vit;
    let q = &h.qformer;
    let bad = |m: String| Err(Error::InvalidConfig(format!("SEED tokenizer: {m}")));
    if v.patch_size == 0 || !v.img_size.is_multiple_of(v.patch_size) {
        return bad(format!(
            "img_size {} is not a multiple of patch_size {}",
            v.img_size, v.patch_size
        ));
    }
    if v.num_heads == 0 || !v.embed_dim.is_multiple_of(v.num_heads) {
        return bad(format!(
            "ViT width {} is not divisible by {} heads",
            v.embed_dim, v.num_heads
        ));
    }
    if q.num_attention_heads == 0 || !q.hidden_size.is_multiple_of(q.num_attention_heads) {
        return bad(format!(
            "Q-Former width {} is not divisible by {} heads",
            q.hidden_size, q.num_attention_heads
        ));
    }
    if q.cross_attention_freq == 0 {
        return bad("cross_attention_freq is 0".to_owned());
    }
    if q.hidden_act != "gelu" {
        return bad(format!(
            "hidden_act {:?} is not supported (only \"gelu\")",
            q.hidden_act
        ));
    }
    if q.encoder_width != v.embed_dim {
        return bad(format!(
            "Q-Former encoder_width {} differs from the ViT width {}",
            q.encoder_width, v.embed_dim
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn real_sizes_are_upstreams() {
        let cfg = SeedConfig::seed_tokenizer_2();
        assert_eq!(cfg.vit.embed_dim, 1408);
        assert_eq!(cfg.vit.depth, 39);
        assert_eq!(cfg.vit.num_heads, 16);
        assert_eq!(cfg.vit.mlp_hidden, 6144); // int(1408 * 4.3637)
        assert_eq!(cfg.vit.grid(), 16);
        assert_eq!(cfg.qformer.hidden_size, 768);
        assert_eq!(cfg.qformer.encoder_width, 1408);
        assert_eq!((cfg.n_embed, cfg.codebook_embed_dim), (8192, 32));
        assert_eq!(
            SeedConfig::from_hparams(&SeedHparams::default()).unwrap(),
            cfg
        );
    }

    #[test]
    fn tiny_overrides_and_validation() {
        let json = r#"{"vit": {"embed_dim": 64, "depth": 2, "num_heads": 4, "mlp_hidden": 279},
            "qformer": {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 192, "encoder_width": 64}, "decoder": {"ignored": 1}}"#;
        let h: SeedHparams = serde_json::from_str(json).unwrap();
        let cfg = SeedConfig::from_hparams(&h).unwrap();
        assert_eq!(
            (cfg.vit.embed_dim, cfg.vit.mlp_hidden, cfg.vit.patch_size),
            (64, 279, 14)
        );
        assert_eq!(cfg.ln_vision_eps, 1e-5);
        let mut bad = h.clone();
        bad.qformer.encoder_width = 65;
        assert!(SeedConfig::from_hparams(&bad).is_err());
        let mut bad = h;
        bad.vit.num_heads = 5;
        assert!(SeedConfig::from_hparams(&bad).is_err());
    }
}
