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

use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::sgemm::PackedRhs;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// `EuclideanCodebook` (inference): the codebook and its squared norms.
#[derive(Debug, Clone)]
pub struct EuclideanCodebook {
    /// `(K, D)`.
    embed: Tensor,
    /// `(1, K)`: `|e|²`.
    embed_sq: Tensor,
    /// f32 on the CPU with our kernel: the codebook packed as the weight of `x · Eᵀ`, with
    /// `|e|²` and the codebook's values, for [`ResidualVectorQuantizer::encode`]'s fused loop.
    cpu: Option<Arc<CpuCodebook>>,
}

/// The codebook as [`ResidualVectorQuantizer::encode`]'s CPU loop reads it (its values
/// are read from `embed` itself).
#[derive(Debug)]
struct CpuCodebook {
    packed: PackedRhs,
    embed_sq: Vec<f32>,
}

impl EuclideanCodebook {
    /// Loads `vb.embed`.
    pub fn new(dim: usize, codebook_size: usize, vb: VarBuilder) -> Result<Self> {
        let embed = vb.get((codebook_size, dim), "embed")?;
        let embed_sq = crate::norm::sum_keepdim(&embed.sqr()?, 1)?.t()?;
        let cpu = if crate::sgemm::KERNELS
            && matches!(embed.device(), candle_core::Device::Cpu)
            && embed.dtype() == DType::F32
        {
            let values = embed.flatten_all()?.to_vec1::<f32>()?;
            Some(Arc::new(CpuCodebook {
                packed: PackedRhs::from_rows(&values, codebook_size, dim)?,
                embed_sq: embed_sq.flatten_all()?.to_vec1::<f32>()?,
            }))
        } else {
            None
        };
        Ok(Self {
            embed,
            embed_sq,
            cpu,
        })
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

/// `Σ x²` in 8 partial sums (vectorized, and closer to a blocked sum than one running sum).
fn sum_of_squares(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f32>() + tail
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
        if let Some(codes) = self.encode_cpu(xs, &self.layers[st..n_q])? {
            return Ok(codes);
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

    /// [`Self::encode`] of f32 input on the CPU as one loop over the layers: per layer the
    /// products `x · Eᵀ` by our kernel (the codebook packed once at load), then per row the
    /// same distance as upstream, `-((|x|² − 2·x·e) + |e|²)`, its first maximum, and the
    /// residual update in place; no `(N, K)` distance tensor, transposes or gathers. `None`
    /// where the layers were not packed (other devices, dtypes, builds).
    fn encode_cpu(&self, xs: &Tensor, layers: &[VectorQuantization]) -> Result<Option<Tensor>> {
        let books: Option<Vec<(&CpuCodebook, &Tensor)>> = layers
            .iter()
            .map(|l| l.codebook.cpu.as_deref().map(|c| (c, &l.codebook.embed)))
            .collect();
        let Some(books) = books else { return Ok(None) };
        if !matches!(xs.device(), candle_core::Device::Cpu) {
            return Ok(None);
        }
        let (b_sz, dim, seq_len) = xs.dims3()?;
        if books.iter().any(|(b, _)| b.packed.k() != dim) {
            return Err(Error::InvalidArgument(format!(
                "RVQ input of {dim} channels for codebooks of {}",
                books.first().map_or(0, |(b, _)| b.packed.k())
            )));
        }
        let rows = b_sz * seq_len;
        let mut residual = xs
            .to_dtype(DType::F32)?
            .transpose(1, 2)?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mut products = Vec::new();
        let mut all = Vec::with_capacity(books.len());
        for (book, embed) in books {
            let (store, layout) = embed.storage_and_layout();
            let embed = match (&*store, layout.contiguous_offsets()) {
                (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, b))) => {
                    &v[a..b]
                }
                _ => return Ok(None),
            };
            let size = book.packed.n();
            products.resize(rows * size, 0f32);
            book.packed.matmul(&residual, rows, None, &mut products)?;
            let mut codes = vec![0u32; rows];
            for ((x, xe), code) in residual
                .chunks_exact_mut(dim)
                .zip(products.chunks_exact(size))
                .zip(codes.iter_mut())
            {
                let x_sq = sum_of_squares(x);
                let mut best = (f32::NEG_INFINITY, 0usize);
                for (j, (&v, &e)) in xe.iter().zip(&book.embed_sq).enumerate() {
                    let dist = -((x_sq - v * 2.0) + e);
                    if dist > best.0 {
                        best = (dist, j);
                    }
                }
                *code = best.1 as u32;
                let e = &embed[best.1 * dim..(best.1 + 1) * dim];
                for (x, e) in x.iter_mut().zip(e) {
                    *x -= e;
                }
            }
            all.push(Tensor::from_vec(codes, (b_sz, seq_len), xs.device())?);
        }
        Ok(Some(Tensor::stack(&all, 0)?))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;
    use std::collections::HashMap;

    #[test]
    fn the_fused_cpu_encode_equals_the_tensor_ops() {
        let dev = Device::Cpu;
        let (n_q, size, dim) = (4, 64, 12);
        let mut ts = HashMap::new();
        for i in 0..n_q {
            let scale = 1.0 / (i + 1) as f32;
            ts.insert(
                format!("vq.layers.{i}._codebook.embed"),
                Tensor::randn(0f32, scale, (size, dim), &dev).unwrap(),
            );
        }
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let rvq = ResidualVectorQuantizer::new(dim, n_q, size, vb).unwrap();
        assert_eq!(rvq.layers[0].codebook.cpu.is_some(), crate::sgemm::KERNELS);
        let xs = Tensor::randn(0f32, 1.0, (2, dim, 37), &dev).unwrap();
        // The tensor ops, layer by layer (upstream's loop).
        let mut residual = xs.clone();
        let mut expected = vec![];
        for layer in &rvq.layers[1..] {
            let codes = layer.encode(&residual).unwrap();
            residual = (residual - layer.decode(&codes).unwrap()).unwrap();
            expected.push(codes.to_vec2::<u32>().unwrap());
        }
        let first = rvq.layers[0].encode(&xs).unwrap();
        let ours = rvq.encode(&xs, n_q, 1).unwrap();
        assert_eq!(ours.dims(), &[n_q - 1, 2, 37]);
        // Layers 1.. of `encode(x, n_q, 1)` start from `x` itself, as upstream's `st`.
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&ours.get(i).unwrap().to_vec2::<u32>().unwrap(), want);
        }
        let all = rvq.encode(&xs, n_q, 0).unwrap();
        assert_eq!(
            all.get(0).unwrap().to_vec2::<u32>().unwrap(),
            first.to_vec2::<u32>().unwrap()
        );
        let wrong = Tensor::zeros((1, dim + 1, 5), DType::F32, &dev).unwrap();
        assert!(rvq.encode(&wrong, n_q, 0).is_err());
    }
}
