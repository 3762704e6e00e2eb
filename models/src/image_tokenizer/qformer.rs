//! The causal Q-Former of SEED: 32 learned queries, causal self-attention among them,
//! cross-attention to the ViT features every `cross_attention_freq` layers.
//!
//! Ports `image_tokenizer/models/seed_qformer/qformer_causual.py` on the path
//! `Blip2QformerQuantizer.get_codebook_indices` takes: `BertModel.forward(query_embeds=…,
//! encoder_hidden_states=…)` with no text (`BertEmbeddings` = LayerNorm of the queries
//! alone), `BertLayer` → `BertAttention` (self, causal) → cross `BertAttention` (layers
//! `i % freq == 0`) → `intermediate_query` / `output_query`. Tensor prefix
//! `Qformer.bert.` (`embeddings.LayerNorm.*`, `encoder.layer.{i}.*`).
//! The self-attention mask is the upstream additive one: `(1 - causal) * -10000` for 32
//! queries (`is_casual` when `query_embeds.shape[1] == 32`); the cross-attention mask is all
//! zeros (every image token visible) and is not added.
//! Input: queries `(B, Q, hidden)`, image features `(B, N, encoder_width)` → last hidden
//! state `(B, Q, hidden)`.
//! Not ported (unused on this path): word/position embeddings, the text feed-forward
//! (`intermediate`, `output`), past key values, relative position embeddings.

use candle_core::{Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::norm::LayerNorm;

use crate::sgemm::Dense;

use super::config::QformerConfig;
use super::eva_vit::layer_norm_eps;
use crate::Result;

/// Additive value of masked positions (`get_extended_attention_mask`).
const MASKED: f32 = -10000.0;
/// Query count for which upstream makes the self-attention causal.
const CAUSAL_QUERY_COUNT: usize = 32;

/// `BertSelfAttention`: scores `q·kᵀ / √d` (+ mask), softmax, `·v`.
#[derive(Debug, Clone)]
pub struct BertSelfAttention {
    query: Dense,
    key: Dense,
    value: Dense,
    num_heads: usize,
    head_size: usize,
}

impl BertSelfAttention {
    /// Reads `query.*`, `key.*`, `value.*`; keys and values read `kv_width` features.
    pub fn new(cfg: &QformerConfig, kv_width: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            query: Dense::load(h, h, vb.pp("query"))?,
            key: Dense::load(kv_width, h, vb.pp("key"))?,
            value: Dense::load(kv_width, h, vb.pp("value"))?,
            num_heads: cfg.num_attention_heads,
            head_size: h / cfg.num_attention_heads,
        })
    }

    /// `(B, L, H·D)` → `(B, H, L, D)`.
    fn transpose_for_scores(&self, xs: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len, _) = xs.dims3()?;
        Ok(xs
            .reshape((b_sz, seq_len, self.num_heads, self.head_size))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Attends from `xs` to `kv` (itself for self-attention) with an optional additive mask.
    pub fn forward(&self, xs: &Tensor, kv: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let k = self.transpose_for_scores(&self.key.forward(kv)?)?;
        let v = self.transpose_for_scores(&self.value.forward(kv)?)?;
        let q = self.transpose_for_scores(&self.query.forward(xs)?)?;
        let mut scores = (q.matmul(&k.t()?)? / (self.head_size as f64).sqrt())?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let (b_sz, _, seq_len, _) = q.dims4()?;
        Ok(probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, ()))?)
    }
}

/// `BertSelfOutput` / `BertOutput`: dense, then LayerNorm of it plus the residual.
#[derive(Debug, Clone)]
pub struct BertOutput {
    dense: Dense,
    layer_norm: LayerNorm,
}

impl BertOutput {
    /// Reads `dense.*` (`in_dim` → hidden) and `LayerNorm.*`.
    pub fn new(cfg: &QformerConfig, in_dim: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            dense: Dense::load(in_dim, h, vb.pp("dense"))?,
            layer_norm: layer_norm_eps(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `LayerNorm(dense(xs) + residual)`.
    pub fn forward(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        Ok(self
            .layer_norm
            .forward(&(self.dense.forward(xs)? + residual)?)?)
    }
}

/// `BertAttention`: attention (`self`) and its output block (`output`).
#[derive(Debug, Clone)]
pub struct BertAttention {
    attention: BertSelfAttention,
    output: BertOutput,
}

impl BertAttention {
    /// Reads `self.*` and `output.*`.
    pub fn new(cfg: &QformerConfig, kv_width: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attention: BertSelfAttention::new(cfg, kv_width, vb.pp("self"))?,
            output: BertOutput::new(cfg, cfg.hidden_size, vb.pp("output"))?,
        })
    }

    /// Attention from `xs` to `kv`, then the output block with `xs` as residual.
    pub fn forward(&self, xs: &Tensor, kv: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let context = self.attention.forward(xs, kv, mask)?;
        self.output.forward(&context, xs)
    }
}

/// `BertIntermediate` (query variant): dense → exact GELU.
#[derive(Debug, Clone)]
pub struct BertIntermediate {
    dense: Dense,
}

impl BertIntermediate {
    /// Reads `dense.*`.
    pub fn new(cfg: &QformerConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dense: Dense::load(cfg.hidden_size, cfg.intermediate_size, vb.pp("dense"))?,
        })
    }
}

impl Module for BertIntermediate {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        crate::activation::gelu_erf(&self.dense.forward(xs)?)
    }
}

/// `BertLayer` on queries only.
#[derive(Debug, Clone)]
pub struct BertLayer {
    attention: BertAttention,
    crossattention: Option<BertAttention>,
    intermediate_query: BertIntermediate,
    output_query: BertOutput,
}

impl BertLayer {
    /// Reads `attention.*`, `crossattention.*` (layers `i % freq == 0`),
    /// `intermediate_query.*`, `output_query.*`.
    pub fn new(cfg: &QformerConfig, layer_num: usize, vb: VarBuilder) -> Result<Self> {
        let crossattention = if layer_num.is_multiple_of(cfg.cross_attention_freq) {
            Some(BertAttention::new(
                cfg,
                cfg.encoder_width,
                vb.pp("crossattention"),
            )?)
        } else {
            None
        };
        Ok(Self {
            attention: BertAttention::new(cfg, cfg.hidden_size, vb.pp("attention"))?,
            crossattention,
            intermediate_query: BertIntermediate::new(cfg, vb.pp("intermediate_query"))?,
            output_query: BertOutput::new(cfg, cfg.intermediate_size, vb.pp("output_query"))?,
        })
    }

    /// Self-attention (masked), cross-attention to `image_embeds`, feed-forward.
    pub fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        image_embeds: &Tensor,
    ) -> Result<Tensor> {
        let mut xs = self.attention.forward(xs, xs, mask)?;
        if let Some(cross) = &self.crossattention {
            xs = cross.forward(&xs, image_embeds, None)?;
        }
        let hidden = self.intermediate_query.forward(&xs)?;
        self.output_query.forward(&hidden, &xs)
    }
}

/// `Qformer.bert` (`BertModel`) driven by query embeddings alone.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings_layer_norm: LayerNorm,
    layers: Vec<BertLayer>,
}

impl BertModel {
    /// Reads `embeddings.LayerNorm.*` and `encoder.layer.{i}.*` under `vb` (= `Qformer.bert`).
    pub fn new(cfg: &QformerConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(cfg, i, vb.pp(format!("encoder.layer.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings_layer_norm: layer_norm_eps(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("embeddings.LayerNorm"),
            )?,
            layers,
        })
    }

    /// `last_hidden_state` `(B, Q, hidden)` for queries `(B, Q, hidden)` attending to
    /// `image_embeds` `(B, N, encoder_width)`.
    pub fn forward(&self, query_embeds: &Tensor, image_embeds: &Tensor) -> Result<Tensor> {
        let n_query = query_embeds.dim(1)?;
        let mask = (n_query == CAUSAL_QUERY_COUNT)
            .then(|| causal_mask(n_query, query_embeds.device()))
            .transpose()?;
        let mut xs = self.embeddings_layer_norm.forward(query_embeds)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, mask.as_ref(), image_embeds)?;
        }
        Ok(xs)
    }
}

/// `(1 - [j <= i]) * -10000` as `(1, 1, n, n)`.
pub fn causal_mask(n: usize, dev: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j <= i { 0.0 } else { MASKED }))
        .collect();
    Ok(Tensor::from_vec(values, (1, 1, n, n), dev)?)
}
