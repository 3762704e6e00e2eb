//! The spatial transformer of the unCLIP UNet.
//!
//! Ports diffusers 0.20.2 `Transformer2DModel` (`transformer_2d.py`, continuous input with
//! `use_linear_projection=True`), `BasicTransformerBlock` and `FeedForward`/`GEGLU`
//! (`attention.py`) and `Attention` with `AttnProcessor2_0` (`attention_processor.py`).
//! Tensor prefix `…attentions.{j}`: `norm` (GroupNorm, eps 1e-6), `proj_in`, `proj_out`,
//! `transformer_blocks.0.{norm1,attn1,norm2,attn2,norm3,ff.net.0.proj,ff.net.2}`.
//! Shapes: (b × c × h × w) with context (b × 77 × cross_dim) → (b × c × h × w).
//! GEGLU uses the exact erf GELU (candle's stable-diffusion block uses the tanh one, which
//! breaks 1e-4 parity, hence this port). Attention is computed one head and 256 query rows
//! at a time to bound the memory of the 96×96 latents' 9216-token self-attention.

use candle_core::{Module, Tensor, D};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::norm::{group_norm, GroupNorm};
use crate::sgemm::Dense;
use crate::Result;

/// Query rows per block of [`attention_rows`]: the (b × 256 × 9216) scores of the 96×96
/// latents' self-attention are 19 MB, inside the L3 cache, where the whole (b × 9216 × 9216)
/// score matrix is 680 MB.
const QUERY_CHUNK: usize = 256;

/// `softmax(q kᵀ) v` for one head, `q (b × n × d)` (already scaled), `k`, `v (b × m × d)`,
/// `chunk` query rows at a time. Every row's softmax sees all its scores, so blocks give
/// the same rows as one product; only the size of the largest intermediate changes.
pub fn attention_rows(q: &Tensor, k: &Tensor, v: &Tensor, chunk: usize) -> Result<Tensor> {
    let n = q.dim(1)?;
    let kt = k.t()?;
    let block = |q: &Tensor| -> Result<Tensor> {
        let probs = candle_nn::ops::softmax_last_dim(&q.matmul(&kt)?)?;
        Ok(probs.matmul(v)?)
    };
    if chunk == 0 || n <= chunk {
        return block(q);
    }
    let mut outs = Vec::with_capacity(n.div_ceil(chunk));
    for start in (0..n).step_by(chunk) {
        outs.push(block(&q.narrow(1, start, chunk.min(n - start))?)?);
    }
    Ok(Tensor::cat(&outs, 1)?)
}

/// `Attention` (self or cross): `to_q`, `to_k`, `to_v` without bias, `to_out.0` with.
#[derive(Debug, Clone)]
struct Attention {
    to_q: Dense,
    to_k: Dense,
    to_v: Dense,
    to_out: Dense,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(
        query_dim: usize,
        context_dim: usize,
        heads: usize,
        dim_head: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let inner = heads * dim_head;
        Ok(Self {
            to_q: Dense::load_no_bias(query_dim, inner, vb.pp("to_q"))?,
            to_k: Dense::load_no_bias(context_dim, inner, vb.pp("to_k"))?,
            to_v: Dense::load_no_bias(context_dim, inner, vb.pp("to_v"))?,
            to_out: Dense::load(inner, query_dim, vb.pp("to_out.0"))?,
            heads,
            scale: (dim_head as f64).powf(-0.5),
        })
    }

    /// (b × n × d_q), context (b × m × d_c) → (b × n × d_q).
    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let q = self.to_q.forward(xs)?;
        let k = self.to_k.forward(context)?;
        let v = self.to_v.forward(context)?;
        if let Some(xs) = crate::sgemm::attention_tensors(&q, &k, &v, self.heads, self.scale)? {
            return Ok(self.to_out.forward(&xs)?);
        }
        let inner = q.dim(D::Minus1)?;
        let dim_head = inner / self.heads;
        let mut outs = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            // The scale goes on q (n × d), not on the n × n scores: one pass less over
            // the largest tensor of the UNet (9216² per head and image at 96×96 latents).
            let qh = (q.narrow(2, h * dim_head, dim_head)? * self.scale)?;
            let kh = k.narrow(2, h * dim_head, dim_head)?.contiguous()?;
            let vh = v.narrow(2, h * dim_head, dim_head)?.contiguous()?;
            outs.push(attention_rows(&qh, &kh, &vh, QUERY_CHUNK)?);
        }
        let xs = Tensor::cat(&outs, 2)?;
        Ok(self.to_out.forward(&xs)?)
    }
}

/// `BasicTransformerBlock`: self-attention, cross-attention, GEGLU feed-forward.
#[derive(Debug, Clone)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_proj: Dense,
    ff_out: Dense,
}

impl BasicTransformerBlock {
    fn new(
        dim: usize,
        heads: usize,
        dim_head: usize,
        cross_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let inner_ff = dim * 4;
        Ok(Self {
            norm1: layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, dim_head, vb.pp("attn1"))?,
            norm2: layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, cross_dim, heads, dim_head, vb.pp("attn2"))?,
            norm3: layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff_proj: Dense::load(dim, inner_ff * 2, vb.pp("ff.net.0.proj"))?,
            ff_out: Dense::load(inner_ff, dim, vb.pp("ff.net.2"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let normed = self.norm1.forward(xs)?;
        let xs = (self.attn1.forward(&normed, &normed)? + xs)?;
        let xs = (self.attn2.forward(&self.norm2.forward(&xs)?, context)? + xs)?;
        let proj = self.ff_proj.forward(&self.norm3.forward(&xs)?)?;
        let gated = crate::activation::geglu(&proj)?;
        Ok((self.ff_out.forward(&gated)? + xs)?)
    }
}

/// `Transformer2DModel` with linear projections and one transformer block.
#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Dense,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Dense,
}

impl Transformer2DModel {
    /// `channels` split into `heads` heads; `groups` of the input GroupNorm.
    pub fn new(
        channels: usize,
        heads: usize,
        cross_dim: usize,
        groups: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let dim_head = channels / heads;
        // `transformer_layers_per_block` is 1 in diffusers 0.20 and in every SD 2.1 config.
        let blocks = vec![BasicTransformerBlock::new(
            channels,
            heads,
            dim_head,
            cross_dim,
            vb.pp("transformer_blocks.0"),
        )?];
        Ok(Self {
            norm: group_norm(groups, channels, 1e-6, vb.pp("norm"))?,
            proj_in: Dense::load(channels, channels, vb.pp("proj_in"))?,
            blocks,
            proj_out: Dense::load(channels, channels, vb.pp("proj_out"))?,
        })
    }

    /// (b × c × h × w), context (b × m × cross_dim) → (b × c × h × w).
    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (b_sz, c, h, w) = xs.dims4()?;
        let residual = xs;
        let xs = self
            .norm
            .forward(xs)?
            .permute((0, 2, 3, 1))?
            .reshape((b_sz, h * w, c))?;
        let mut xs = self.proj_in.forward(&xs)?;
        for block in &self.blocks {
            xs = block.forward(&xs, context)?;
        }
        let xs = self
            .proj_out
            .forward(&xs)?
            .reshape((b_sz, h, w, c))?
            .permute((0, 3, 1, 2))?;
        Ok((xs + residual)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn blocks_of_query_rows_give_the_whole_product() {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 0.5, (2, 10, 4), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 7, 4), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (2, 7, 4), &dev).unwrap();
        let whole = attention_rows(&q, &k, &v, 0).unwrap();
        for chunk in [1, 3, 10, 64] {
            let blocks = attention_rows(&q, &k, &v, chunk).unwrap();
            assert_eq!(blocks.dims(), &[2, 10, 4]);
            let diff = (&blocks - &whole)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "chunk {chunk}");
        }
    }
}
