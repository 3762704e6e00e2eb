//! The CLIP text encoder of unCLIP, run once on the empty prompt.
//!
//! Ports transformers 4.34 `CLIPTextModel` (`modeling_clip.py`: `CLIPTextEmbeddings`,
//! `CLIPEncoderLayer` with causal self-attention, `final_layer_norm`) as
//! `StableUnCLIPImg2ImgPipeline._encode_prompt("")` uses it: `last_hidden_state` of the ids
//! `CLIPTokenizer("", padding="max_length")` gives, i.e. `[bos, eos, pad, …]` (77 ids), no
//! attention mask. Tensor prefix `text_model.`; config `text_encoder/config.json`.
//! The pad token is the one `special_tokens_map.json` names (it overrides
//! `tokenizer_config.json`, as transformers does): `!` (id 0) in SD 2.1.
//! Shapes: ids (1 × 77) → (1 × 77 × hidden). Deviation: only the empty prompt is tokenized
//! (the BPE tokenizer is not ported; MIO never prompts unCLIP with text).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, VarBuilder};

use crate::sgemm::Dense;
use serde::Deserialize;

use super::weights::open_var_builder;
use crate::{Error, Result};

/// `text_encoder/config.json` (the fields this port reads).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClipTextConfig {
    /// Token vocabulary.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Sequence length (77).
    pub max_position_embeddings: usize,
    /// `gelu` (erf) or `quick_gelu`.
    pub hidden_act: String,
    /// LayerNorm eps.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.into(),
        message: e.to_string(),
    })
}

/// `CLIPTokenizer("", padding="max_length", max_length=n)` from the `tokenizer/` folder.
pub fn empty_prompt_ids(tokenizer_dir: &Path, n: usize) -> Result<Vec<u32>> {
    let vocab: HashMap<String, u32> = read_json(&tokenizer_dir.join("vocab.json"))?;
    let token_of = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        }
    };
    let special: serde_json::Value = read_json(&tokenizer_dir.join("special_tokens_map.json"))?;
    let config: serde_json::Value = read_json(&tokenizer_dir.join("tokenizer_config.json"))?;
    let pick = |key: &str| {
        special
            .get(key)
            .and_then(token_of)
            .or_else(|| config.get(key).and_then(token_of))
    };
    let id = |key: &str, fallback: &str| -> Result<u32> {
        let tok = pick(key).unwrap_or_else(|| fallback.to_string());
        vocab
            .get(&tok)
            .copied()
            .ok_or_else(|| Error::Tokenizer(format!("{key} {tok} is not in vocab.json")))
    };
    let (bos, eos) = (
        id("bos_token", "<|startoftext|>")?,
        id("eos_token", "<|endoftext|>")?,
    );
    let pad = id("pad_token", "<|endoftext|>")?;
    let mut ids = vec![pad; n.max(2)];
    ids[0] = bos;
    ids[1] = eos;
    ids.truncate(n);
    Ok(ids)
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    q_proj: Dense,
    k_proj: Dense,
    v_proj: Dense,
    out_proj: Dense,
    layer_norm2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    heads: usize,
    quick_gelu: bool,
}

impl EncoderLayer {
    fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let attn = vb.pp("self_attn");
        Ok(Self {
            layer_norm1: layer_norm(h, eps, vb.pp("layer_norm1"))?,
            q_proj: Dense::load(h, h, attn.pp("q_proj"))?,
            k_proj: Dense::load(h, h, attn.pp("k_proj"))?,
            v_proj: Dense::load(h, h, attn.pp("v_proj"))?,
            out_proj: Dense::load(h, h, attn.pp("out_proj"))?,
            layer_norm2: layer_norm(h, eps, vb.pp("layer_norm2"))?,
            fc1: Dense::load(h, cfg.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: Dense::load(cfg.intermediate_size, h, vb.pp("mlp.fc2"))?,
            heads: cfg.num_attention_heads,
            quick_gelu: cfg.hidden_act == "quick_gelu",
        })
    }

    fn attention(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len, h) = xs.dims3()?;
        let d = h / self.heads;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b_sz, seq_len, self.heads, d))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = split((self.q_proj.forward(xs)? * (d as f64).powf(-0.5))?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, h))?;
        Ok(self.out_proj.forward(&out)?)
    }

    fn forward(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let xs = (xs + self.attention(&self.layer_norm1.forward(xs)?, mask)?)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&xs)?)?;
        let hidden = if self.quick_gelu {
            (&hidden * candle_nn::ops::sigmoid(&(&hidden * 1.702)?)?)?
        } else {
            hidden.gelu_erf()?
        };
        Ok((xs + self.fc2.forward(&hidden)?)?)
    }
}

/// `CLIPTextModel`, returning `last_hidden_state`.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
}

impl ClipTextModel {
    /// Builds the model from its config and a `VarBuilder` at the checkpoint's root.
    pub fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("text_model");
        let emb = vb.pp("embeddings");
        let h = cfg.hidden_size;
        Ok(Self {
            token_embedding: embedding(cfg.vocab_size, h, emb.pp("token_embedding"))?,
            position_embedding: embedding(
                cfg.max_position_embeddings,
                h,
                emb.pp("position_embedding"),
            )?,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| EncoderLayer::new(cfg, vb.pp(format!("encoder.layers.{i}"))))
                .collect::<Result<Vec<_>>>()?,
            final_layer_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("final_layer_norm"))?,
        })
    }

    /// ids (b × n) → last hidden state (b × n × hidden).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, n) = ids.dims2()?;
        let dev = ids.device();
        let positions = Tensor::arange(0u32, n as u32, dev)?;
        let mut xs = self
            .token_embedding
            .forward(ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| (0..n).map(move |j| if j > i { f32::MIN } else { 0.0 }))
            .collect();
        let mask = Tensor::from_vec(mask, (n, n), dev)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask)?;
        }
        Ok(self.final_layer_norm.forward(&xs)?)
    }
}

/// `_encode_prompt("")` with the `text_encoder/` and `tokenizer/` folders of `unclip_dir`:
/// (1 × 77 × hidden). The encoder is loaded, run once and dropped.
pub fn encode_empty_prompt(unclip_dir: &Path, dev: &Device) -> Result<Tensor> {
    let dir = unclip_dir.join("text_encoder");
    let cfg: ClipTextConfig = read_json(&dir.join("config.json"))?;
    let weights = text_encoder_weights(unclip_dir)?;
    let model = ClipTextModel::new(&cfg, open_var_builder(&weights, DType::F32, dev)?)?;
    let ids = empty_prompt_ids(&unclip_dir.join("tokenizer"), cfg.max_position_embeddings)?;
    let ids = Tensor::from_vec(ids, (1, cfg.max_position_embeddings), dev)?;
    model.forward(&ids)
}

/// The text encoder's weights file that [`encode_empty_prompt`] reads (full precision
/// first, safetensors before `.bin`).
pub fn text_encoder_weights(unclip_dir: &Path) -> Result<std::path::PathBuf> {
    let dir = unclip_dir.join("text_encoder");
    [
        "model.safetensors",
        "pytorch_model.bin",
        "model.fp16.safetensors",
        "pytorch_model.fp16.bin",
    ]
    .iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
    .ok_or_else(|| Error::MissingFile(dir.join("model.safetensors")))
}
