//! The SEED quantizer: ViT features → causal Q-Former → `encode_task_layer` → VQ codes.
//!
//! Ports `image_tokenizer/models/seed_qformer/qformer_quantizer.py`: `VectorQuantizer2`
//! (`quantize.embedding.weight` `(8192, 32)`, nearest code by
//! `argmin(|z|² + |e|² − 2 z·e)`, `z_q = z + (e − z)` as the straight-through line computes
//! it) and the encoder half of `Blip2QformerQuantizer` (`get_codebook_indices`):
//! `ln_vision(visual_encoder(image))` → `Qformer.bert(query_tokens, image_embeds)` →
//! `encode_task_layer` (Linear-Tanh-Linear, `encode_task_layer.{0,2}.*`) → `quantize`.
//! `visual_encoder.*` comes from `eva_vit_g.pth`, everything else from `seed_quantizer.pt`.
//! Input `pixel_values` `(B, 3, 224, 224)` → codes `(B, 32)`.
//! Not ported here: the decoder half (`get_codebook_entry`, see
//! [`super::checkpoint::DECODER_SIDE_PREFIXES`]).

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use crate::norm::LayerNorm;

use crate::sgemm::Dense;

use super::config::SeedConfig;
use super::eva_vit::{layer_norm_eps, VisionTransformer};
use super::qformer::BertModel;
use crate::Result;

/// `VectorQuantizer2` (inference: nearest codebook entry, no remap, legacy loss unused).
#[derive(Debug, Clone)]
pub struct VectorQuantizer2 {
    embedding: Tensor,
    /// `|e|²` per entry, `(n_embed,)`.
    embedding_sq: Tensor,
}

impl VectorQuantizer2 {
    /// Reads `embedding.weight` `(n_embed, e_dim)`.
    pub fn new(n_embed: usize, e_dim: usize, vb: VarBuilder) -> Result<Self> {
        let embedding = vb.get((n_embed, e_dim), "embedding.weight")?;
        let embedding_sq = crate::norm::sum_keepdim(&embedding.sqr()?, 1)?.squeeze(1)?;
        Ok(Self {
            embedding,
            embedding_sq,
        })
    }

    /// Nearest code per row of `z` `(B, L, e_dim)`: `(z_q (B, L, e_dim), codes (B, L) u32)`.
    pub fn forward(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b_sz, seq_len, e_dim) = z.dims3()?;
        let flat = z.reshape((b_sz * seq_len, e_dim))?;
        let z_sq = crate::norm::sum_keepdim(&flat.sqr()?, 1)?;
        let ze = flat.matmul(&self.embedding.t()?)?;
        let d = z_sq
            .broadcast_add(&self.embedding_sq)?
            .broadcast_sub(&(ze * 2.0)?)?;
        let codes = d.argmin(1)?;
        let e = self.embedding.index_select(&codes, 0)?;
        let z_q = (&flat + (e - &flat)?)?.reshape((b_sz, seq_len, e_dim))?;
        Ok((z_q, codes.reshape((b_sz, seq_len))?))
    }

    /// `get_codebook_entry`: the codebook rows of `codes` `(B, L)` as `(B, L, e_dim)`.
    pub fn get_codebook_entry(&self, codes: &Tensor) -> Result<Tensor> {
        let (b_sz, seq_len) = codes.dims2()?;
        let rows = self
            .embedding
            .index_select(&codes.flatten_all()?.to_dtype(DType::U32)?, 0)?;
        Ok(rows.reshape((b_sz, seq_len, ()))?)
    }
}

/// `encode_task_layer`: `Linear(h, h)` → tanh → `Linear(h, e_dim)`.
#[derive(Debug, Clone)]
pub struct EncodeTaskLayer {
    fc0: Dense,
    fc2: Dense,
}

impl EncodeTaskLayer {
    /// Reads `0.*` and `2.*` (the `nn.Sequential` indices).
    pub fn new(hidden: usize, e_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc0: Dense::load(hidden, hidden, vb.pp("0"))?,
            fc2: Dense::load(hidden, e_dim, vb.pp("2"))?,
        })
    }
}

impl Module for EncodeTaskLayer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc0.forward(xs)?.tanh()?)
    }
}

/// Every intermediate of one encode (the `imgK.*` tensors of the goldens).
#[derive(Debug, Clone)]
pub struct EncodeTrace {
    /// `visual_encoder(pixel_values)` `(B, 257, width)`.
    pub vit_out: Tensor,
    /// `ln_vision(vit_out)`.
    pub ln_vision_out: Tensor,
    /// `Qformer.bert(...).last_hidden_state` `(B, 32, hidden)`.
    pub qformer_last_hidden_state: Tensor,
    /// `encode_task_layer(...)` `(B, 32, e_dim)`.
    pub encode_task_out: Tensor,
    /// Quantised `z_q` `(B, 32, e_dim)`.
    pub quant: Tensor,
    /// Codes `(B, 32)` u32.
    pub codes: Tensor,
}

/// The encoder half of `Blip2QformerQuantizer`.
#[derive(Debug, Clone)]
pub struct Blip2QformerQuantizer {
    visual_encoder: VisionTransformer,
    ln_vision: LayerNorm,
    query_tokens: Tensor,
    qformer: BertModel,
    encode_task_layer: EncodeTaskLayer,
    quantize: VectorQuantizer2,
}

impl Blip2QformerQuantizer {
    /// Builds it from the ViT checkpoint (`vit_vb`, un-prefixed) and the quantizer
    /// checkpoint (`vb`, `seed_quantizer.pt` names).
    pub fn new(cfg: &SeedConfig, vit_vb: VarBuilder, vb: VarBuilder) -> Result<Self> {
        let q = &cfg.qformer;
        let width = cfg.vit.embed_dim;
        Ok(Self {
            visual_encoder: VisionTransformer::new(&cfg.vit, vit_vb)?,
            ln_vision: layer_norm_eps(width, cfg.ln_vision_eps, vb.pp("ln_vision"))?,
            query_tokens: vb.get((1, q.num_query_token, q.hidden_size), "query_tokens")?,
            qformer: BertModel::new(q, vb.pp("Qformer.bert"))?,
            encode_task_layer: EncodeTaskLayer::new(
                q.hidden_size,
                cfg.codebook_embed_dim,
                vb.pp("encode_task_layer"),
            )?,
            quantize: VectorQuantizer2::new(
                cfg.n_embed,
                cfg.codebook_embed_dim,
                vb.pp("quantize"),
            )?,
        })
    }

    /// `get_codebook_indices` with every intermediate kept.
    pub fn encode_trace(&self, pixel_values: &Tensor) -> Result<EncodeTrace> {
        let vit_out = self.visual_encoder.forward(pixel_values)?;
        let ln_vision_out = self.ln_vision.forward(&vit_out)?;
        let b_sz = ln_vision_out.dim(0)?;
        let (_, n_query, hidden) = self.query_tokens.dims3()?;
        let queries = self.query_tokens.expand((b_sz, n_query, hidden))?;
        let qformer_last_hidden_state = self.qformer.forward(&queries, &ln_vision_out)?;
        let encode_task_out = self.encode_task_layer.forward(&qformer_last_hidden_state)?;
        let (quant, codes) = self.quantize.forward(&encode_task_out)?;
        Ok(EncodeTrace {
            vit_out,
            ln_vision_out,
            qformer_last_hidden_state,
            encode_task_out,
            quant,
            codes,
        })
    }

    /// `get_codebook_indices`: codes `(B, 32)` u32.
    pub fn get_codebook_indices(&self, pixel_values: &Tensor) -> Result<Tensor> {
        Ok(self.encode_trace(pixel_values)?.codes)
    }

    /// The vector quantizer.
    pub fn quantize(&self) -> &VectorQuantizer2 {
        &self.quantize
    }
}
