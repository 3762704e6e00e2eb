//! transformers 4.34 `LlamaAttention` (grouped-query) and `LlamaMLP`.
//!
//! Tensor prefixes `model.layers.N.self_attn.{q,k,v,o}_proj` and
//! `model.layers.N.mlp.{gate,up,down}_proj`. Attention: `(b, t, hidden)` in and out;
//! q `(b, heads, t, d)`, k/v `(b, kv_heads, past + t, d)` shared by `heads / kv_heads` query heads;
//! scores `q kᵀ / √d` plus the additive mask, softmax in f32 (as upstream), then `@ v`.
//! MLP: `down(silu(gate(x)) * up(x))`.

use candle_core::{DType, Module, Tensor};

use super::cache::KvCache;
use super::config::Config;
use super::linear::Linear;
use super::loader::LoadWeights;
use super::rotary::apply_rotary_emb;
use crate::Result;

/// Self-attention of one decoder layer.
#[derive(Debug, Clone)]
pub struct LlamaAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl LlamaAttention {
    /// Reads `{prefix}.{q,k,v,o}_proj.weight`.
    pub fn new(cfg: &Config, w: &mut dyn LoadWeights, prefix: &str) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        Ok(LlamaAttention {
            q_proj: w.linear(&format!("{prefix}.q_proj.weight"), q, h)?,
            k_proj: w.linear(&format!("{prefix}.k_proj.weight"), kv, h)?,
            v_proj: w.linear(&format!("{prefix}.v_proj.weight"), kv, h)?,
            o_proj: w.linear(&format!("{prefix}.o_proj.weight"), h, q)?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    fn heads(&self, xs: &Tensor, proj: &Linear, n: usize) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        Ok(proj
            .forward(xs)?
            .reshape((b, t, n, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Attends the new positions `xs` over the cache of `layer` (which it extends).
    pub fn forward(
        &self,
        xs: &Tensor,
        cos_sin: (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let (cos, sin) = cos_sin;
        let q = apply_rotary_emb(&self.heads(xs, &self.q_proj, self.num_heads)?, cos, sin)?;
        let k = apply_rotary_emb(&self.heads(xs, &self.k_proj, self.num_kv_heads)?, cos, sin)?;
        let v = self.heads(xs, &self.v_proj, self.num_kv_heads)?;
        let (k, v) = cache.append(layer, &k, &v)?;
        // Grouped-query attention without copying k/v per query head: query head
        // `g * n_rep + r` uses kv head `g` (HF `repeat_kv`), so the `n_rep` query heads of
        // a group are stacked on the row dim of one matmul per kv head.
        let (kvh, n_rep, hd) = (
            self.num_kv_heads,
            self.num_heads / self.num_kv_heads,
            self.head_dim,
        );
        let total = k.dim(2)?;
        let q = q.reshape((b, kvh, n_rep * t, hd))?;
        let scores =
            (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.reshape((b, self.num_heads, t, total))?;
        let dtype = scores.dtype();
        let scores = scores.to_dtype(DType::F32)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let out = probs.reshape((b, kvh, n_rep * t, total))?.matmul(&v)?;
        let out = out
            .reshape((b, self.num_heads, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * hd))?;
        Ok(self.o_proj.forward(&out)?)
    }
}

/// The SiLU-gated MLP of one decoder layer.
#[derive(Debug, Clone)]
pub struct LlamaMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl LlamaMlp {
    /// Reads `{prefix}.{gate,up,down}_proj.weight`.
    pub fn new(cfg: &Config, w: &mut dyn LoadWeights, prefix: &str) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(LlamaMlp {
            gate_proj: w.linear(&format!("{prefix}.gate_proj.weight"), i, h)?,
            up_proj: w.linear(&format!("{prefix}.up_proj.weight"), i, h)?,
            down_proj: w.linear(&format!("{prefix}.down_proj.weight"), h, i)?,
        })
    }
}

impl Module for LlamaMlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let gate = self.gate_proj.forward(xs)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}
