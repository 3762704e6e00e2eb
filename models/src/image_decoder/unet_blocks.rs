//! Down, mid and up blocks of the unCLIP UNet.
//!
//! Ports diffusers 0.20.2 `CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`,
//! `UpBlock2D`, `CrossAttnUpBlock2D` (`unet_2d_blocks.py`) and `Downsample2D`/`Upsample2D`
//! (`resnet.py`). One struct serves the plain and the cross-attention variant of a block
//! (`attentions` empty for the plain one). Tensor prefixes: `down_blocks.{i}`,
//! `mid_block`, `up_blocks.{i}` with `resnets.{j}`, `attentions.{j}`,
//! `downsamplers.0.conv` / `upsamplers.0.conv`. `ResnetBlock2D` and `Conv2d` are ours
//! ([`super::resnet`]).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::resnet::{Conv2d, ResnetBlock2D};

use super::transformer::Transformer2DModel;
use crate::Result;

/// What every block needs to know besides its channels.
#[derive(Debug, Clone, Copy)]
pub struct BlockCtx {
    /// Channels of the time embedding.
    pub temb_channels: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// ResnetBlock2D eps (`norm_eps`).
    pub eps: f64,
    /// Width of the text context (`cross_attention_dim`).
    pub cross_dim: usize,
}

fn resnet(in_c: usize, out_c: usize, ctx: BlockCtx, vb: VarBuilder) -> Result<ResnetBlock2D> {
    ResnetBlock2D::new(
        in_c,
        out_c,
        Some(ctx.temb_channels),
        ctx.groups,
        ctx.eps,
        vb,
    )
}

fn conv3(channels: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    Conv2d::new(channels, channels, 3, 1, stride, vb)
}

/// A down block: `resnets` (with `attentions` when `heads` is given), then an optional
/// stride-2 `downsamplers.0.conv`.
#[derive(Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsample: Option<Conv2d>,
}

impl DownBlock {
    /// `layers` resnets from `in_c` to `out_c`; cross-attention with `heads` heads if `Some`.
    pub fn new(
        in_c: usize,
        out_c: usize,
        layers: usize,
        heads: Option<usize>,
        downsample: bool,
        ctx: BlockCtx,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for j in 0..layers {
            let c = if j == 0 { in_c } else { out_c };
            resnets.push(resnet(c, out_c, ctx, vb.pp(format!("resnets.{j}")))?);
            if let Some(heads) = heads {
                let vb = vb.pp(format!("attentions.{j}"));
                attentions.push(Transformer2DModel::new(
                    out_c,
                    heads,
                    ctx.cross_dim,
                    ctx.groups,
                    vb,
                )?);
            }
        }
        let downsample = match downsample {
            true => Some(conv3(out_c, 2, vb.pp("downsamplers.0.conv"))?),
            false => None,
        };
        Ok(Self {
            resnets,
            attentions,
            downsample,
        })
    }

    /// Returns the output and the states the up path consumes (one per resnet, plus the
    /// downsampled output).
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut xs = xs.clone();
        let mut states = Vec::with_capacity(self.resnets.len() + 1);
        for (j, resnet) in self.resnets.iter().enumerate() {
            xs = resnet.forward(&xs, Some(temb))?;
            if let Some(attn) = self.attentions.get(j) {
                xs = attn.forward(&xs, context)?;
            }
            states.push(xs.clone());
        }
        if let Some(down) = &self.downsample {
            xs = down.forward(&xs)?;
            states.push(xs.clone());
        }
        Ok((xs, states))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, (attention, resnet).
#[derive(Debug)]
pub struct MidBlock {
    resnet0: ResnetBlock2D,
    attention: Transformer2DModel,
    resnet1: ResnetBlock2D,
}

impl MidBlock {
    /// The mid block on `channels` with `heads` heads.
    pub fn new(channels: usize, heads: usize, ctx: BlockCtx, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            resnet0: resnet(channels, channels, ctx, vb.pp("resnets.0"))?,
            attention: Transformer2DModel::new(
                channels,
                heads,
                ctx.cross_dim,
                ctx.groups,
                vb.pp("attentions.0"),
            )?,
            resnet1: resnet(channels, channels, ctx, vb.pp("resnets.1"))?,
        })
    }

    /// (b × c × h × w) → same.
    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.resnet0.forward(xs, Some(temb))?;
        let xs = self.attention.forward(&xs, context)?;
        self.resnet1.forward(&xs, Some(temb))
    }
}

/// Channels of one up block, as `UNet2DConditionModel.__init__` derives them.
#[derive(Debug, Clone, Copy)]
pub struct UpChannels {
    /// Channels of the skip state taken by the last resnet.
    pub in_c: usize,
    /// Output channels.
    pub out_c: usize,
    /// Channels coming from the previous up block (or the mid block).
    pub prev_out_c: usize,
}

/// An up block: `resnets` over (x ++ skip) (with `attentions` when `heads` is given), then
/// an optional nearest ×2 upsampling and `upsamplers.0.conv`.
#[derive(Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsample: Option<Conv2d>,
}

impl UpBlock {
    /// `layers` resnets (`layers_per_block + 1`).
    pub fn new(
        ch: UpChannels,
        layers: usize,
        heads: Option<usize>,
        upsample: bool,
        ctx: BlockCtx,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(layers);
        let mut attentions = Vec::new();
        for j in 0..layers {
            let skip = if j + 1 == layers { ch.in_c } else { ch.out_c };
            let input = if j == 0 { ch.prev_out_c } else { ch.out_c };
            resnets.push(resnet(
                input + skip,
                ch.out_c,
                ctx,
                vb.pp(format!("resnets.{j}")),
            )?);
            if let Some(heads) = heads {
                let vb = vb.pp(format!("attentions.{j}"));
                attentions.push(Transformer2DModel::new(
                    ch.out_c,
                    heads,
                    ctx.cross_dim,
                    ctx.groups,
                    vb,
                )?);
            }
        }
        let upsample = match upsample {
            true => Some(conv3(ch.out_c, 1, vb.pp("upsamplers.0.conv"))?),
            false => None,
        };
        Ok(Self {
            resnets,
            attentions,
            upsample,
        })
    }

    /// Consumes skip states from the end of `skips`.
    pub fn forward(
        &self,
        xs: &Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips
                .pop()
                .ok_or_else(|| crate::Error::InvalidConfig("UNet skip states ran out".into()))?;
            xs = resnet.forward(&Tensor::cat(&[&xs, &skip], 1)?, Some(temb))?;
            if let Some(attn) = self.attentions.get(j) {
                xs = attn.forward(&xs, context)?;
            }
        }
        if let Some(up) = &self.upsample {
            let (_, _, h, w) = xs.dims4()?;
            xs = up.forward(&xs.upsample_nearest2d(h * 2, w * 2)?)?;
        }
        Ok(xs)
    }
}
