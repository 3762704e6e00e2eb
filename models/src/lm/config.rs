//! Configuration of the MIO LM, in two layers.
//!
//! * [`LlamaConfigFile`] mirrors the release's `config.json` field for field: transformers
//!   4.34 `LlamaConfig` (+ the `PretrainedConfig` keys the file carries) with upstream's
//!   defaults, plus MIO's own keys (`text_vocab_size`, `image_bos_id`, ...). MIO's keys have
//!   no upstream class (they are extra kwargs of the HF config), so they are `Option`s.
//! * [`GenerationConfigFile`] mirrors `generation_config.json` (transformers
//!   `GenerationConfig` defaults).
//! * [`Config`] is the runtime configuration derived from them and checked for consistency.
//!
//! Deviations: `rope_scaling`, `attention_bias = true` and any `hidden_act` other than
//! `silu` are refused with [`Error::Unsupported`] (MIO uses none of them);
//! `pretraining_tp` only slices the matmuls upstream and is ignored.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `config.json` of a MIO release: transformers 4.34 `LlamaConfig` plus MIO's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfigFile {
    /// `PretrainedConfig._name_or_path`.
    #[serde(rename = "_name_or_path", default)]
    pub name_or_path: String,
    /// Model classes, `["LlamaForCausalLM"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Bias on q/k/v/o projections (upstream default false).
    #[serde(default)]
    pub attention_bias: bool,
    /// Begin-of-sequence id (upstream default 1).
    #[serde(default = "default_bos")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id (upstream default 2).
    #[serde(default = "default_eos")]
    pub eos_token_id: Option<u32>,
    /// MLP activation (upstream default `silu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Model width (upstream default 4096).
    #[serde(default = "default_hidden")]
    pub hidden_size: usize,
    /// Std of the weight init (unused at inference; upstream default 0.02).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// MLP width (upstream default 11008).
    #[serde(default = "default_intermediate")]
    pub intermediate_size: usize,
    /// `PretrainedConfig.is_decoder` (upstream default false).
    #[serde(default)]
    pub is_decoder: bool,
    /// Longest sequence (upstream default 2048).
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// `llama`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Query heads (upstream default 32).
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Decoder layers (upstream default 32).
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Key/value heads (upstream default: `num_attention_heads`).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Padding id (upstream default none).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Tensor-parallel slicing of the training run (upstream default 1).
    #[serde(default = "default_tp")]
    pub pretraining_tp: usize,
    /// RMSNorm epsilon (upstream default 1e-6).
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary scaling (upstream default none).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Rotary base (upstream default 10000).
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Whether `lm_head` shares the embedding matrix (upstream default false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Storage dtype of the checkpoint.
    #[serde(default)]
    pub torch_dtype: Option<String>,
    /// transformers version that wrote the file.
    #[serde(default)]
    pub transformers_version: Option<String>,
    /// KV-cache flag of HF generate (upstream default true).
    #[serde(default = "default_true")]
    pub use_cache: bool,
    /// Full vocabulary (upstream default 32000).
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// MIO: id of `<image>`.
    #[serde(default)]
    pub image_bos_id: Option<u32>,
    /// MIO: id of `</image>`.
    #[serde(default)]
    pub image_eos_id: Option<u32>,
    /// MIO: image newline id (the `[IMG]` placeholder in the release).
    #[serde(default)]
    pub image_newline_id: Option<u32>,
    /// MIO: id of `[IMG]`.
    #[serde(default)]
    pub image_placeholder_id: Option<u32>,
    /// MIO: number of special tokens added after the text vocabulary (6).
    #[serde(default)]
    pub num_new_special_tokens: Option<usize>,
    /// MIO: training-time sequence packing flag (unused at inference).
    #[serde(default)]
    pub packing_mask: Option<bool>,
    /// MIO: id of `<spch>`.
    #[serde(default)]
    pub speech_bos_id: Option<u32>,
    /// MIO: id of `</spch>`.
    #[serde(default)]
    pub speech_eos_id: Option<u32>,
    /// MIO: id of `[SPCH]`.
    #[serde(default)]
    pub speech_placeholder_id: Option<u32>,
    /// MIO: number of `<spchN>` tokens (4096).
    #[serde(default)]
    pub speech_vocab_size: Option<usize>,
    /// MIO: number of sentencepiece tokens (64000 for Yi).
    #[serde(default)]
    pub text_vocab_size: Option<usize>,
    /// MIO: number of `<imgN>` tokens (8192).
    #[serde(default)]
    pub visual_vocab_size: Option<usize>,
}

fn default_bos() -> Option<u32> {
    Some(1)
}
fn default_eos() -> Option<u32> {
    Some(2)
}
fn default_act() -> String {
    "silu".to_string()
}
fn default_hidden() -> usize {
    4096
}
fn default_init_range() -> f64 {
    0.02
}
fn default_intermediate() -> usize {
    11008
}
fn default_max_pos() -> usize {
    2048
}
fn default_model_type() -> String {
    "llama".to_string()
}
fn default_heads() -> usize {
    32
}
fn default_layers() -> usize {
    32
}
fn default_tp() -> usize {
    1
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_true() -> bool {
    true
}
fn default_vocab() -> usize {
    32000
}

/// `eos_token_id` of a generation config: one id or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl TokenIds {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `generation_config.json`: transformers `GenerationConfig` keys with upstream defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfigFile {
    /// Begin-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Sampling instead of greedy/beam (upstream default false).
    #[serde(default)]
    pub do_sample: bool,
    /// Beams (upstream default 1).
    #[serde(default = "default_one")]
    pub num_beams: usize,
    /// Total length limit (upstream default 20).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// New-token limit (upstream default none).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature (upstream default 1.0).
    #[serde(default = "default_one_f")]
    pub temperature: f64,
    /// Top-k sampling (upstream default 50).
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Nucleus sampling (upstream default 1.0).
    #[serde(default = "default_one_f")]
    pub top_p: f64,
    /// Repetition penalty (upstream default 1.0).
    #[serde(default = "default_one_f")]
    pub repetition_penalty: f64,
    /// Beam length penalty (upstream default 1.0).
    #[serde(default = "default_one_f")]
    pub length_penalty: f64,
    /// transformers version that wrote the file.
    #[serde(default)]
    pub transformers_version: Option<String>,
}

fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_max_length() -> usize {
    20
}
fn default_top_k() -> usize {
    50
}

/// Reads and parses one JSON file of a model folder.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    if !path.is_file() {
        return Err(Error::MissingFile(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

impl LlamaConfigFile {
    /// Reads `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        read_json(&dir.join("config.json"))
    }
}

impl GenerationConfigFile {
    /// Reads `dir/generation_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        read_json(&dir.join("generation_config.json"))
    }
}

/// MIO's token layout keys of `config.json`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MioTokenConfig {
    /// Sentencepiece tokens (64000 for Yi).
    pub text_vocab_size: usize,
    /// Special tokens after the text vocabulary (6).
    pub num_new_special_tokens: usize,
    /// `<imgN>` tokens (8192).
    pub visual_vocab_size: usize,
    /// `<spchN>` tokens (4096).
    pub speech_vocab_size: usize,
    /// `<image>`.
    pub image_bos_id: u32,
    /// `</image>`.
    pub image_eos_id: u32,
    /// Image newline (= `[IMG]` in the release).
    pub image_newline_id: u32,
    /// `[IMG]`.
    pub image_placeholder_id: u32,
    /// `<spch>`.
    pub speech_bos_id: u32,
    /// `</spch>`.
    pub speech_eos_id: u32,
    /// `[SPCH]`.
    pub speech_placeholder_id: u32,
}

impl MioTokenConfig {
    /// The layout of a text vocabulary of `text_vocab_size` tokens followed by MIO's six
    /// specials in the release's order (`[SPCH] </spch> [IMG] <spch> </image> <image>`),
    /// 8192 image and 4096 speech tokens.
    pub fn standard(text_vocab_size: usize) -> Self {
        let t = u32::try_from(text_vocab_size).unwrap_or(u32::MAX);
        MioTokenConfig {
            text_vocab_size,
            num_new_special_tokens: 6,
            visual_vocab_size: 8192,
            speech_vocab_size: 4096,
            speech_placeholder_id: t,
            speech_eos_id: t + 1,
            image_placeholder_id: t + 2,
            image_newline_id: t + 2,
            speech_bos_id: t + 3,
            image_eos_id: t + 4,
            image_bos_id: t + 5,
        }
    }

    /// Total vocabulary these keys imply.
    pub fn vocab_size(&self) -> usize {
        self.text_vocab_size
            + self.num_new_special_tokens
            + self.visual_vocab_size
            + self.speech_vocab_size
    }

    fn from_file(f: &LlamaConfigFile) -> Result<Self> {
        let text = f.text_vocab_size.ok_or_else(|| {
            Error::InvalidConfig("config.json lacks MIO's text_vocab_size".to_string())
        })?;
        let d = MioTokenConfig::standard(text);
        Ok(MioTokenConfig {
            text_vocab_size: text,
            num_new_special_tokens: f.num_new_special_tokens.unwrap_or(d.num_new_special_tokens),
            visual_vocab_size: f.visual_vocab_size.unwrap_or(d.visual_vocab_size),
            speech_vocab_size: f.speech_vocab_size.unwrap_or(d.speech_vocab_size),
            image_bos_id: f.image_bos_id.unwrap_or(d.image_bos_id),
            image_eos_id: f.image_eos_id.unwrap_or(d.image_eos_id),
            image_newline_id: f.image_newline_id.unwrap_or(d.image_newline_id),
            image_placeholder_id: f.image_placeholder_id.unwrap_or(d.image_placeholder_id),
            speech_bos_id: f.speech_bos_id.unwrap_or(d.speech_bos_id),
            speech_eos_id: f.speech_eos_id.unwrap_or(d.speech_eos_id),
            speech_placeholder_id: f.speech_placeholder_id.unwrap_or(d.speech_placeholder_id),
        })
    }
}

/// Runtime configuration of the LM.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Full vocabulary (text + specials + image + speech).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Begin-of-sequence id of `config.json`.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id of `config.json`.
    pub eos_token_id: Option<u32>,
    /// Padding id of `config.json`.
    pub pad_token_id: Option<u32>,
    /// MIO's token layout.
    pub mio: MioTokenConfig,
}

impl Config {
    /// MIO-7B (Base and Instruct): Yi-6B's sizes (`01-ai/Yi-6B` `config.json`: 32 layers,
    /// hidden 4096, 32 heads, 4 KV heads, intermediate 11008, rope theta 5e6, RMS eps 1e-5,
    /// 4096 positions) with the vocabulary extended as in DESIGN.md and the reference
    /// README: 64000 text + 6 specials + 8192 image + 4096 speech = 76294 tokens, MIO's
    /// ids at 64000.. in the release's order. bos/eos/pad 1/2/0 as in the fixture config.
    pub fn mio_7b() -> Self {
        let mio = MioTokenConfig::standard(64000);
        Config {
            vocab_size: mio.vocab_size(),
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 4,
            max_position_embeddings: 4096,
            rms_norm_eps: 1e-5,
            rope_theta: 5_000_000.0,
            tie_word_embeddings: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            pad_token_id: Some(0),
            mio,
        }
    }

    /// Derives the runtime config from `config.json`, refusing what the port does not do.
    pub fn from_file(f: &LlamaConfigFile) -> Result<Self> {
        if f.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(Error::Unsupported(
                "rope_scaling in config.json".to_string(),
            ));
        }
        if f.attention_bias {
            return Err(Error::Unsupported(
                "attention_bias = true in config.json".to_string(),
            ));
        }
        if f.hidden_act != "silu" {
            return Err(Error::Unsupported(format!("hidden_act {:?}", f.hidden_act)));
        }
        let cfg = Config {
            vocab_size: f.vocab_size,
            hidden_size: f.hidden_size,
            intermediate_size: f.intermediate_size,
            num_hidden_layers: f.num_hidden_layers,
            num_attention_heads: f.num_attention_heads,
            num_key_value_heads: f.num_key_value_heads.unwrap_or(f.num_attention_heads),
            max_position_embeddings: f.max_position_embeddings,
            rms_norm_eps: f.rms_norm_eps,
            rope_theta: f.rope_theta,
            tie_word_embeddings: f.tie_word_embeddings,
            bos_token_id: f.bos_token_id,
            eos_token_id: f.eos_token_id,
            pad_token_id: f.pad_token_id,
            mio: MioTokenConfig::from_file(f)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and derives `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::MissingFile(dir.to_path_buf()));
        }
        Config::from_file(&LlamaConfigFile::from_dir(dir)?)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks that the sizes fit together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.num_attention_heads == 0 || self.num_key_value_heads == 0 {
            return bad("zero attention heads".to_string());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !self.head_dim().is_multiple_of(2)
        {
            return bad(format!(
                "hidden_size {} is not an even multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.vocab_size == 0 || self.num_hidden_layers == 0 || self.intermediate_size == 0 {
            return bad("zero vocab_size, num_hidden_layers or intermediate_size".to_string());
        }
        if self.mio.vocab_size() != self.vocab_size {
            return bad(format!(
                "vocab_size {} differs from MIO's text + specials + image + speech = {}",
                self.vocab_size,
                self.mio.vocab_size()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mio_7b_is_consistent() {
        let cfg = Config::mio_7b();
        cfg.validate().unwrap();
        assert_eq!(cfg.vocab_size, 76294);
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.mio.image_bos_id, 64005);
        assert_eq!(cfg.mio.speech_bos_id, 64003);
    }

    #[test]
    fn upstream_defaults_apply() {
        let f: LlamaConfigFile = serde_json::from_str(r#"{"text_vocab_size": 19706}"#).unwrap();
        assert_eq!(f.vocab_size, 32000);
        assert_eq!(f.rms_norm_eps, 1e-6);
        assert_eq!(f.rope_theta, 10000.0);
        assert_eq!(f.bos_token_id, Some(1));
        let cfg = Config::from_file(&f).unwrap();
        assert_eq!(cfg.num_key_value_heads, 32);
        let g: GenerationConfigFile = serde_json::from_str(r#"{"eos_token_id": [7, 2]}"#).unwrap();
        assert_eq!(g.eos_token_id.unwrap().to_vec(), vec![7, 2]);
        assert_eq!(g.top_k, 50);
    }

    #[test]
    fn refuses_rope_scaling() {
        let f: LlamaConfigFile = serde_json::from_str(
            r#"{"text_vocab_size": 19706, "rope_scaling": {"type": "linear", "factor": 2.0}}"#,
        )
        .unwrap();
        assert!(matches!(Config::from_file(&f), Err(Error::Unsupported(_))));
    }
}
