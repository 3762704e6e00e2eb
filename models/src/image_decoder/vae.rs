//! The unCLIP VAE decoder (latents → RGB in [-1, 1]).
//!
//! Ports the decode path of diffusers 0.20.2 `AutoencoderKL` (`autoencoder_kl.py`, `vae.py`
//! `Decoder`, `UNetMidBlock2D`, `UpDecoderBlock2D`, `Upsample2D`) as configured by
//! `stable-diffusion-2-1-unclip/vae/config.json`. Tensor names: `post_quant_conv`,
//! `decoder.{conv_in, mid_block.{resnets.{0,1}, attentions.0}, up_blocks.{i}.{resnets.{j},
//! upsamplers.0.conv}, conv_norm_out, conv_out}`; the encoder is not loaded. Convolutions and
//! resnets are ours ([`super::resnet`]: no im2col copies, which at 768 × 768 were gigabytes);
//! so is the mid-block attention ([`MidAttention`], diffusers' `Attention` with one head and
//! a residual; on the CPU the fused kernel of [`crate::sgemm::attention`], which never holds
//! the 9216 × 9216 score matrix of a 96 × 96 latent). `decode` divides by
//! `scaling_factor` first, as the pipeline does.
//! Shapes: latents (b × 4 × h × w) → image (b × 3 × 8h × 8w) for four resolution levels.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::norm::{group_norm, GroupNorm};
use serde::Deserialize;

use crate::sgemm::Dense;

use super::resnet::{Conv2d, ResnetBlock2D};
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

/// `UpDecoderBlock2D`: resnets, then nearest ×2 and `upsamplers.0.conv` (all but the last).
struct UpDecoderBlock {
    resnets: Vec<ResnetBlock2D>,
    upsample: Option<Conv2d>,
}

/// The VAE mid-block's self-attention over all pixels (one head of `channels` values):
/// `x + proj(softmax(q kᵀ / √c) v)` after a group norm. Reads `group_norm.*` and `to_q`,
/// `to_k`, `to_v`, `to_out.0` (diffusers ≥ 0.15) or the older `query`, `key`, `value`,
/// `proj_attn`, each a linear weight or a 1 × 1 convolution's.
struct MidAttention {
    group_norm: GroupNorm,
    q: Dense,
    k: Dense,
    v: Dense,
    out: Dense,
    channels: usize,
}

impl MidAttention {
    fn new(channels: usize, groups: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let names = match vb.contains_tensor("to_q.weight") {
            true => ["to_q", "to_k", "to_v", "to_out.0"],
            false => ["query", "key", "value", "proj_attn"],
        };
        let layer = |name: &str| -> Result<Dense> {
            let vb = vb.pp(name);
            let w = match vb.get((channels, channels), "weight") {
                Ok(w) => w,
                Err(_) => vb
                    .get((channels, channels, 1, 1), "weight")?
                    .reshape((channels, channels))?,
            };
            Ok(Dense::new(w, Some(vb.get(channels, "bias")?))?)
        };
        Ok(Self {
            group_norm: group_norm(groups, channels, eps, vb.pp("group_norm"))?,
            q: layer(names[0])?,
            k: layer(names[1])?,
            v: layer(names[2])?,
            out: layer(names[3])?,
            channels,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = xs.dims4()?;
        let tokens = self
            .group_norm
            .forward(xs)?
            .reshape((b, c, h * w))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = self.q.forward(&tokens)?;
        let k = self.k.forward(&tokens)?;
        let v = self.v.forward(&tokens)?;
        let scale = (self.channels as f64).powf(-0.5);
        let attended = match crate::sgemm::attention_tensors(&q, &k, &v, 1, scale)? {
            Some(out) => out,
            None => {
                let probs = candle_nn::ops::softmax_last_dim(&(q * scale)?.matmul(&k.t()?)?)?;
                probs.matmul(&v)?
            }
        };
        let out = self
            .out
            .forward(&attended)?
            .transpose(1, 2)?
            .reshape((b, c, h, w))?;
        Ok((out + xs)?)
    }
}

/// `AutoencoderKL`, decode side.
pub struct AutoencoderKl {
    cfg: AutoencoderKlConfig,
    post_quant_conv: Conv2d,
    conv_in: Conv2d,
    mid_resnet0: ResnetBlock2D,
    mid_attention: MidAttention,
    mid_resnet1: ResnetBlock2D,
    up_blocks: Vec<UpDecoderBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
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
        Self::new(cfg, vb)
    }

    fn new(cfg: AutoencoderKlConfig, vb: VarBuilder) -> Result<Self> {
        let ch = &cfg.block_out_channels;
        let (Some(&first), Some(&last)) = (ch.first(), ch.last()) else {
            return Err(Error::InvalidConfig(
                "vae/config.json: block_out_channels is empty".into(),
            ));
        };
        let (groups, eps) = (cfg.norm_num_groups, 1e-6);
        let lat = cfg.latent_channels;
        let post_quant_conv = Conv2d::new(lat, lat, 1, 0, 1, vb.pp("post_quant_conv"))?;
        let vb = vb.pp("decoder");
        let conv_in = Conv2d::new(lat, last, 3, 1, 1, vb.pp("conv_in"))?;
        let mid = vb.pp("mid_block");
        let resnet =
            |i: usize, o: usize, vb: VarBuilder| ResnetBlock2D::new(i, o, None, groups, eps, vb);
        let mid_resnet0 = resnet(last, last, mid.pp("resnets.0"))?;
        let mid_attention = MidAttention::new(last, groups, eps, mid.pp("attentions.0"))?;
        let mid_resnet1 = resnet(last, last, mid.pp("resnets.1"))?;
        let rev: Vec<usize> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(rev.len());
        for (i, &out_c) in rev.iter().enumerate() {
            let in_c = if i > 0 { rev[i - 1] } else { rev[0] };
            let vb = vb.pp(format!("up_blocks.{i}"));
            let resnets = (0..cfg.layers_per_block + 1)
                .map(|j| {
                    let c = if j == 0 { in_c } else { out_c };
                    resnet(c, out_c, vb.pp(format!("resnets.{j}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let upsample = (i + 1 < rev.len())
                .then(|| Conv2d::new(out_c, out_c, 3, 1, 1, vb.pp("upsamplers.0.conv")))
                .transpose()?;
            up_blocks.push(UpDecoderBlock { resnets, upsample });
        }
        Ok(Self {
            conv_norm_out: group_norm(groups, first, eps, vb.pp("conv_norm_out"))?,
            conv_out: Conv2d::new(first, cfg.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
            cfg,
            post_quant_conv,
            conv_in,
            mid_resnet0,
            mid_attention,
            mid_resnet1,
            up_blocks,
        })
    }

    /// The config it was built from.
    pub fn config(&self) -> &AutoencoderKlConfig {
        &self.cfg
    }

    /// `vae.decode(latents / scaling_factor).sample`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let xs = self
            .post_quant_conv
            .forward(&(latents / self.cfg.scaling_factor)?)?;
        let xs = self.conv_in.forward(&xs)?;
        let xs = self.mid_resnet0.forward(&xs, None)?;
        let xs = self.mid_attention.forward(&xs)?;
        let mut xs = self.mid_resnet1.forward(&xs, None)?;
        for block in &self.up_blocks {
            for r in &block.resnets {
                xs = r.forward(&xs, None)?;
            }
            if let Some(conv) = &block.upsample {
                let (_, _, h, w) = xs.dims4()?;
                xs = conv.forward(&xs.upsample_nearest2d(2 * h, 2 * w)?)?;
            }
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        Ok(self.conv_out.forward(&xs)?)
    }
}
