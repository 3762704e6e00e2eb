//! Image-embedding noising of unCLIP and the sinusoidal timestep embedding.
//!
//! Ports diffusers 0.20.2 `StableUnCLIPImageNormalizer` (`stable_unclip_image_normalizer.py`,
//! tensors `mean`, `std`: 1 × D), `get_timestep_embedding` (`embeddings.py`) and
//! `StableUnCLIPImg2ImgPipeline.noise_image_embeddings` as MIO's copy of the pipeline runs it
//! (`image_tokenizer/models/pipeline_stable_unclip_img2img.py`): scale → DDPM `add_noise` at
//! the noise level → unscale → append the level's sinusoidal embedding. Noise level 0 still
//! mixes `√(1−ᾱ₀)·noise` in. Shapes: embeds (b × D) and noise (b × D) → (b × 2D).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::scheduler::DdpmNoising;
use super::weights::component_var_builder;
use crate::Result;

/// `get_timestep_embedding(timesteps, dim, flip_sin_to_cos, downscale_freq_shift)` with
/// `scale = 1`, `max_period = 10000`: (b) → (b × dim), computed in f32 as torch does.
pub fn timestep_embedding(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f32,
    dev: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let ln = -(10000f32.ln());
    let freqs: Vec<f32> = (0..half)
        .map(|i| (ln * i as f32 / (half as f32 - downscale_freq_shift)).exp())
        .collect();
    let mut rows = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|f| t * f).collect();
        let sin = args.iter().map(|a| a.sin());
        let cos = args.iter().map(|a| a.cos());
        if flip_sin_to_cos {
            rows.extend(cos.chain(sin));
        } else {
            rows.extend(sin.chain(cos));
        }
        if dim % 2 == 1 {
            rows.push(0.0);
        }
    }
    Ok(Tensor::from_vec(rows, (timesteps.len(), dim), dev)?)
}

/// `StableUnCLIPImageNormalizer`: per-dimension mean and std of the CLIP image embeddings.
#[derive(Debug, Clone)]
pub struct StableUnclipImageNormalizer {
    mean: Tensor,
    std: Tensor,
}

impl StableUnclipImageNormalizer {
    /// Loads `image_normalizer/diffusion_pytorch_model.{safetensors,bin}` of `dim` values.
    pub fn load(dir: &Path, dim: usize, dev: &Device) -> Result<Self> {
        let vb = component_var_builder(dir, DType::F32, dev)?;
        Ok(Self {
            mean: vb.get((1, dim), "mean")?,
            std: vb.get((1, dim), "std")?,
        })
    }

    /// `(x − mean) · 1 / std`.
    pub fn scale(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }

    /// `x · std + mean`.
    pub fn unscale(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.broadcast_mul(&self.std)?.broadcast_add(&self.mean)?)
    }

    /// `noise_image_embeddings(embeds, noise_level, noise)`: (b × D) → (b × 2D).
    pub fn noise_image_embeddings(
        &self,
        noising: &DdpmNoising,
        embeds: &Tensor,
        noise: &Tensor,
        noise_level: usize,
    ) -> Result<Tensor> {
        let (b_sz, dim) = embeds.dims2()?;
        let xs = noising.add_noise(&self.scale(embeds)?, noise, noise_level)?;
        let xs = self.unscale(&xs)?;
        let level = timestep_embedding(
            &vec![noise_level as f32; b_sz],
            dim,
            true,
            0.0,
            embeds.device(),
        )?;
        Ok(Tensor::cat(&[&xs, &level], 1)?)
    }
}
