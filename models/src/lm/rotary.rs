//! Rotary position embedding: transformers 4.34 `LlamaRotaryEmbedding` + `apply_rotary_pos_emb`.
//!
//! Non-interleaved ("rotate_half") layout: the first and second halves of each head are
//! the two coordinates of every rotated pair. `inv_freq[i] = 1 / theta^(2i/d)` and the
//! angle table `pos * inv_freq` are computed in f32 as upstream does, then `cos`/`sin`
//! cast to the activation dtype. Tables cover `max_position_embeddings` positions,
//! shape `(max_pos, head_dim / 2)`; [`LlamaRotaryEmbedding::cos_sin`] gathers
//! `(b, t, head_dim / 2)` for per-row position ids (left padding gives rows different ids).

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Precomputed cos/sin tables.
#[derive(Debug, Clone)]
pub struct LlamaRotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    max_pos: usize,
}

impl LlamaRotaryEmbedding {
    /// Tables for `head_dim`, base `theta` and `max_pos` positions.
    pub fn new(
        head_dim: usize,
        theta: f64,
        max_pos: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let base = theta as f32;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / base.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for pos in 0..max_pos {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let table = |v: Vec<f32>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (max_pos, half), dev)?.to_dtype(dtype)?)
        };
        Ok(LlamaRotaryEmbedding {
            cos: table(cos)?,
            sin: table(sin)?,
            max_pos,
        })
    }

    /// `(cos, sin)`, each `(b, t, head_dim / 2)`, for `positions` (`b` rows of `t` ids).
    pub fn cos_sin(&self, positions: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let b = positions.len();
        let t = positions.first().map_or(0, Vec::len);
        let flat: Vec<u32> = positions.iter().flatten().copied().collect();
        if let Some(&p) = flat.iter().max() {
            if p as usize >= self.max_pos {
                return Err(Error::PromptTooLong {
                    len: p as usize + 1,
                    max: self.max_pos,
                });
            }
        }
        let ids = Tensor::from_vec(flat, b * t, self.cos.device())?;
        let gather = |table: &Tensor| -> Result<Tensor> {
            let half = table.dim(1)?;
            Ok(table.index_select(&ids, 0)?.reshape((b, t, half))?)
        };
        Ok((gather(&self.cos)?, gather(&self.sin)?))
    }
}

/// Applies the rotation to `xs` `(b, heads, t, head_dim)` with `cos`/`sin` `(b, t, head_dim/2)`.
pub fn apply_rotary_emb(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::rotary_emb::rope(&xs.contiguous()?, cos, sin)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_rotate_half_formula() {
        let dev = Device::Cpu;
        let rot = LlamaRotaryEmbedding::new(4, 10000.0, 8, DType::F32, &dev).unwrap();
        let (cos, sin) = rot.cos_sin(&[vec![3, 5]]).unwrap();
        let xs = Tensor::arange(0f32, 8., &dev)
            .unwrap()
            .reshape((1, 1, 2, 4))
            .unwrap();
        let out = apply_rotary_emb(&xs, &cos, &sin)
            .unwrap()
            .flatten_all()
            .unwrap();
        let out = out.to_vec1::<f32>().unwrap();
        // Position 3, pair (x0, x2) rotated by 3 * 1, pair (x1, x3) by 3 * 0.01.
        let (a, b) = (3f32, 3f32 * 0.01);
        assert!((out[0] - (0. * a.cos() - 2. * a.sin())).abs() < 1e-6);
        assert!((out[2] - (0. * a.sin() + 2. * a.cos())).abs() < 1e-6);
        assert!((out[1] - (1. * b.cos() - 3. * b.sin())).abs() < 1e-6);
        assert!(rot.cos_sin(&[vec![8]]).is_err());
    }
}
