//! The unCLIP VAE decoder (latents → RGB in [-1, 1]).
//!
//! Ports the decode path of diffusers 0.20.2 `AutoencoderKL` (`autoencoder_kl.py`) as
//! configured by `stable-diffusion-2-1-unclip/vae/config.json`, reusing candle-transformers'
//! `AutoEncoderKL` (diffusers tensor names: `post_quant_conv`, `decoder.*`; the encoder is
//! built but unused). `decode` divides by `scaling_factor` first, as the pipeline does.
//! Shapes: latents (b × 4 × h × w) → image (b × 3 × 8h × 8w) for four resolution levels.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::stable_diffusion::vae::{AutoEncoderKL, AutoEncoderKLConfig};
use serde::Deserialize;

use super::weights::component_var_builder;
use crate::{Error, Result};

/// `vae/config.json` (the fields this port reads).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AutoencoderKlConfig {
    /// Image channels in.
    pub in_channels: usize,
    /// Image channels out.
    pub out_channels: usize,
    /// Channels per resolution.
    pub block_out_channels: Vec<usize>,
    /// Resnets per block.
    pub layers_per_block: usize,
    /// Latent channels.
    pub latent_channels: usize,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// Latents are stored multiplied by this.
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
}

fn default_scaling() -> f64 {
    0.18215
}

impl AutoencoderKlConfig {
    /// Reads `vae/config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Spatial upscaling from latents to pixels (`2^(levels−1)`).
    pub fn scale_factor(&self) -> usize {
        1 << self.block_out_channels.len().saturating_sub(1)
    }
}

/// `AutoencoderKL`, decode side.
pub struct AutoencoderKl {
    cfg: AutoencoderKlConfig,
    inner: AutoEncoderKL,
}

impl std::fmt::Debug for AutoencoderKl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoencoderKl")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl AutoencoderKl {
    /// Loads the `vae/` folder `dir`.
    pub fn load(dir: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        let cfg = AutoencoderKlConfig::load(&dir.join("config.json"))?;
        let vb = component_var_builder(dir, dtype, dev)?;
        let inner_cfg = AutoEncoderKLConfig {
            block_out_channels: cfg.block_out_channels.clone(),
            layers_per_block: cfg.layers_per_block,
            latent_channels: cfg.latent_channels,
            norm_num_groups: cfg.norm_num_groups,
            use_quant_conv: true,
            use_post_quant_conv: true,
        };
        let inner = AutoEncoderKL::new(vb, cfg.in_channels, cfg.out_channels, inner_cfg)?;
        Ok(Self { cfg, inner })
    }

    /// The config it was built from.
    pub fn config(&self) -> &AutoencoderKlConfig {
        &self.cfg
    }

    /// `vae.decode(latents / scaling_factor).sample`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(self.inner.decode(&(latents / self.cfg.scaling_factor)?)?)
    }
}
