//! Residual vector quantizer of `speech_tokenizer/quantization/{vq,core_vq}.py`
//! (`ResidualVectorQuantizer` → `ResidualVectorQuantization` → `VectorQuantization` →
//! `EuclideanCodebook`), inference path only (`encode` / `decode`).
//!
//! Tensor names: `quantizer.vq.layers.{i}._codebook.embed` `(codebook_size, dimension)`.
//! The training buffers `inited`, `cluster_size` and `embed_avg` are not read. No projection
//! (`codebook_dim == dim`, so `project_in/out` are identities).
//!
//! Shapes: encode `(B, D, T)` → codes `(n_q, B, T)` (u32); decode codes `(n, B, T)` →
//! `(B, D, T)`. Nearest code = argmax of `-(|x|² - 2·x·e + |e|²)`, as upstream.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// `EuclideanCodebook` (inference): the codebook and its squared norms.
#[derive(Debug, Clone)]
pub struct EuclideanCodebook {
    /// `(K, D)`.
    embed: Tensor,
    /// `(1, K)`: `|e|²`.
    embed_sq: Tensor,
}

impl EuclideanCodebook {
    /// Loads `vb.embed`.
    pub fn new(dim: usize, codebook_size: usize, vb: VarBuilder) -> Result<Self> {
        let embed = vb.get((codebook_size, dim), "embed")?;
        let embed_sq = crate::norm::sum_keepdim(&embed.sqr()?, 1)?.t()?;
        Ok(Self { embed, embed_sq })
    }

    /// `(N, D)` → nearest codes `(N,)`.
    pub fn encode(&self, xs: &Tensor) -> Result<Tensor> {
        let x_sq = crate::norm::sum_keepdim(&xs.sqr()?, 1)?;
        let xe = xs.matmul(&self.embed.t()?)?;
        let dist = x_sq
            .broadcast_sub(&(xe * 2.0)?)?
            .broadcast_add(&self.embed_sq)?
            .neg()?;
        Ok(dist.argmax(1)?)
    }

    /// Codes (any shape, u32) → vectors (shape + `D`).
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let dims = codes.dims().to_vec();
        let flat = self.embed.index_select(&codes.flatten_all()?, 0)?;
        let mut shape = dims;
        shape.push(self.embed.dim(1)?);
        Ok(flat.reshape(shape)?)
    }
}

/// `VectorQuantization` (identity projections): one RVQ layer.
#[derive(Debug, Clone)]
pub struct VectorQuantization {
    codebook: EuclideanCodebook,
}

impl VectorQuantization {
    /// Loads `vb._codebook.*`.
    pub fn new(dim: usize, codebook_size: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            codebook: EuclideanCodebook::new(dim, codebook_size, vb.pp("_codebook"))?,
        })
    }

    /// `(B, D, T)` → codes `(B, T)`.
    pub fn encode(&self, xs: &Tensor) -> Result<Tensor> {
        let (b_sz, dim, seq_len) = xs.dims3()?;
        let flat = xs.transpose(1, 2)?.reshape((b_sz * seq_len, dim))?;
        Ok(self.codebook.encode(&flat)?.reshape((b_sz, seq_len))?)
    }

    /// Codes `(B, T)` → `(B, D, T)`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        Ok(self.codebook.decode(codes)?.transpose(1, 2)?.contiguous()?)
    }
}

/// `ResidualVectorQuantizer` with its `ResidualVectorQuantization` folded in.
#[derive(Debug, Clone)]
pub struct ResidualVectorQuantizer {
    layers: Vec<VectorQuantization>,
    codebook_size: usize,
}

impl ResidualVectorQuantizer {
    /// Loads `vb.vq.layers.{0..n_q}` (`vb` = `quantizer`).
    pub fn new(dim: usize, n_q: usize, codebook_size: usize, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("vq").pp("layers");
        let layers = (0..n_q)
            .map(|i| VectorQuantization::new(dim, codebook_size, vb.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            codebook_size,
        })
    }

    /// Number of layers.
    pub fn n_q(&self) -> usize {
        self.layers.len()
    }

    /// `encode(x, n_q, st)`: codes `(n_q - st, B, T)` of layers `st..n_q`.
    pub fn encode(&self, xs: &Tensor, n_q: usize, st: usize) -> Result<Tensor> {
        if st >= n_q || n_q > self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "RVQ layers {st}..{n_q} are not within 0..{}",
                self.layers.len()
            )));
        }
        let mut residual = xs.clone();
        let mut all = Vec::with_capacity(n_q - st);
        for layer in &self.layers[st..n_q] {
            let codes = layer.encode(&residual)?;
            residual = (residual - layer.decode(&codes)?)?;
            all.push(codes);
        }
        Ok(Tensor::stack(&all, 0)?)
    }

    /// `decode(codes, st)`: the sum of the decodes of layers `st..st + n`, `(B, D, T)`.
    /// Codes must be `(n, B, T)`, integer, below the codebook size.
    pub fn decode(&self, codes: &Tensor, st: usize) -> Result<Tensor> {
        let codes = self.check_codes(codes, st)?;
        let mut out: Option<Tensor> = None;
        for (i, layer) in self.layers[st..st + codes.dim(0)?].iter().enumerate() {
            let q = layer.decode(&codes.get(i)?)?;
            out = Some(match out {
                Some(acc) => (acc + q)?,
                None => q,
            });
        }
        out.ok_or_else(|| Error::InvalidArgument("no speech codes to decode".into()))
    }

    /// Validates `(n, B, T)` integer codes and returns them as u32.
    fn check_codes(&self, codes: &Tensor, st: usize) -> Result<Tensor> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        let Ok((n, b_sz, seq_len)) = codes.dims3() else {
            return bad(format!(
                "speech codes must be (layers, batch, frames), got shape {:?}",
                codes.dims()
            ));
        };
        if n == 0 || b_sz == 0 || seq_len == 0 {
            return bad(format!("speech codes are empty (shape {:?})", codes.dims()));
        }
        if st + n > self.layers.len() {
            return bad(format!(
                "{n} code layers from layer {st} exceed the {} RVQ layers",
                self.layers.len()
            ));
        }
        let (lo, hi) = match codes.dtype() {
            DType::U8 | DType::U32 | DType::I64 => {
                let f = codes.to_dtype(DType::I64)?.flatten_all()?;
                (f.min(0)?.to_scalar::<i64>()?, f.max(0)?.to_scalar::<i64>()?)
            }
            other => return bad(format!("speech codes must be integers, got {other:?}")),
        };
        if lo < 0 || hi >= self.codebook_size as i64 {
            let c = if lo < 0 { lo } else { hi };
            return bad(format!(
                "speech code {c} is outside the codebook 0..{}",
                self.codebook_size
            ));
        }
        Ok(codes.to_dtype(DType::U32)?)
    }
}
