//! The unCLIP UNet: `UNet2DConditionModel` with a projection class embedding.
//!
//! Ports diffusers 0.20.2 `UNet2DConditionModel` (`unet_2d_condition.py`) as configured by
//! `stable-diffusion-2-1-unclip/unet/config.json`: positional time embedding
//! (`time_proj` → `time_embedding.linear_{1,2}`), `class_embed_type="projection"`
//! (`class_embedding.linear_{1,2}` over the 2·D noised image embedding, added to the time
//! embedding), `conv_in`, `down_blocks`, `mid_block`, `up_blocks`, `conv_norm_out`,
//! `conv_out`. `attention_head_dim` is used as the head *count* per block, as diffusers does
//! (`num_attention_heads = num_attention_heads or attention_head_dim`).
//! Shapes: sample (b × 4 × h × w), timestep, context (b × 77 × cross_dim), class labels
//! (b × projection_class_embeddings_input_dim) → (b × 4 × h × w).
//! Deviation: only the block types and options SD 2.1 unCLIP uses are accepted; anything
//! else is refused at load with [`Error::Unsupported`].

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use crate::norm::{group_norm, GroupNorm};

use super::resnet::Conv2d;
use serde::Deserialize;

use super::noising::timestep_embedding;
use super::unet_blocks::{BlockCtx, DownBlock, MidBlock, UpBlock, UpChannels};
use crate::{Error, Result};

/// `attention_head_dim` as written in the config: one number or one per block.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same value for every block.
    One(usize),
    /// One value per down block.
    Each(Vec<usize>),
}

/// `unet/config.json` (the fields this port reads; defaults as diffusers').
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UNet2DConditionConfig {
    /// Latent channels in.
    pub in_channels: usize,
    /// Latent channels out.
    pub out_channels: usize,
    /// Channels per resolution.
    pub block_out_channels: Vec<usize>,
    /// Resnets per down block.
    pub layers_per_block: usize,
    /// Head counts (see the module doc).
    pub attention_head_dim: PerBlock,
    /// GroupNorm groups.
    pub norm_num_groups: usize,
    /// GroupNorm / resnet eps.
    pub norm_eps: f64,
    /// Width of the text context.
    pub cross_attention_dim: usize,
    /// `CrossAttnDownBlock2D` / `DownBlock2D` per level.
    pub down_block_types: Vec<String>,
    /// `UpBlock2D` / `CrossAttnUpBlock2D` per level.
    pub up_block_types: Vec<String>,
    /// Must be `projection`.
    pub class_embed_type: Option<String>,
    /// Width of the class labels (2·D of the image embedding).
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Sinusoid layout of the time embedding.
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    /// Sinusoid frequency shift.
    #[serde(default)]
    pub freq_shift: f64,
    /// Spatial size of the latents (output is 8× this).
    pub sample_size: usize,
}

fn yes() -> bool {
    true
}

impl UNet2DConditionConfig {
    /// Reads `unet/config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })
    }

    fn heads(&self) -> Vec<usize> {
        match &self.attention_head_dim {
            PerBlock::One(h) => vec![*h; self.block_out_channels.len()],
            PerBlock::Each(v) => v.clone(),
        }
    }

    fn check(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0
            || self.down_block_types.len() != n
            || self.up_block_types.len() != n
            || self.heads().len() != n
        {
            return Err(Error::InvalidConfig(
                "UNet block lists differ in length".into(),
            ));
        }
        if self.class_embed_type.as_deref() != Some("projection") {
            return Err(Error::Unsupported(format!(
                "UNet class_embed_type {:?}",
                self.class_embed_type
            )));
        }
        let known = [
            "CrossAttnDownBlock2D",
            "DownBlock2D",
            "CrossAttnUpBlock2D",
            "UpBlock2D",
        ];
        for t in self.down_block_types.iter().chain(&self.up_block_types) {
            if !known.contains(&t.as_str()) {
                return Err(Error::Unsupported(format!("UNet block type {t}")));
            }
        }
        Ok(())
    }
}

/// `TimestepEmbedding`: `linear_1`, SiLU, `linear_2`.
#[derive(Debug, Clone)]
struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: linear(in_dim, out_dim, vb.pp("linear_1"))?,
            linear_2: linear(out_dim, out_dim, vb.pp("linear_2"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(self
            .linear_2
            .forward(&candle_nn::ops::silu(&self.linear_1.forward(xs)?)?)?)
    }
}

/// `UNet2DConditionModel` with the projection class embedding.
#[derive(Debug)]
pub struct UNet2DConditionModel {
    cfg: UNet2DConditionConfig,
    time_embedding: TimestepEmbedding,
    class_embedding: TimestepEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Loads `dir/config.json` and the weights of the `unet/` folder `dir`.
    pub fn load(dir: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        let cfg = UNet2DConditionConfig::load(&dir.join("config.json"))?;
        let vb = super::weights::component_var_builder(dir, dtype, dev)?;
        Self::new(cfg, vb)
    }

    /// Builds the UNet from its config and a `VarBuilder` at the checkpoint's root.
    pub fn new(cfg: UNet2DConditionConfig, vb: VarBuilder) -> Result<Self> {
        cfg.check()?;
        let ch = &cfg.block_out_channels;
        let ch0 = ch[0];
        let temb = ch0 * 4;
        let class_in = cfg.projection_class_embeddings_input_dim.ok_or_else(|| {
            Error::InvalidConfig("projection_class_embeddings_input_dim is missing".into())
        })?;
        let ctx = BlockCtx {
            temb_channels: temb,
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            cross_dim: cfg.cross_attention_dim,
        };
        let down_blocks = Self::down_blocks(&cfg, ctx, vb.pp("down_blocks"))?;
        let heads = cfg.heads();
        let last = ch.len() - 1;
        let mid_block = MidBlock::new(ch[last], heads[last], ctx, vb.pp("mid_block"))?;
        let up_blocks = Self::up_blocks(&cfg, ctx, vb.pp("up_blocks"))?;
        Ok(Self {
            time_embedding: TimestepEmbedding::new(ch0, temb, vb.pp("time_embedding"))?,
            class_embedding: TimestepEmbedding::new(class_in, temb, vb.pp("class_embedding"))?,
            conv_in: Conv2d::new(cfg.in_channels, ch0, 3, 1, 1, vb.pp("conv_in"))?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: group_norm(
                cfg.norm_num_groups,
                ch0,
                cfg.norm_eps,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: Conv2d::new(ch0, cfg.out_channels, 3, 1, 1, vb.pp("conv_out"))?,
            cfg,
        })
    }

    fn down_blocks(
        cfg: &UNet2DConditionConfig,
        ctx: BlockCtx,
        vb: VarBuilder,
    ) -> Result<Vec<DownBlock>> {
        let ch = &cfg.block_out_channels;
        let heads = cfg.heads();
        let mut out_c = ch[0];
        let mut blocks = Vec::with_capacity(ch.len());
        for (i, kind) in cfg.down_block_types.iter().enumerate() {
            let in_c = out_c;
            out_c = ch[i];
            let attn = (kind == "CrossAttnDownBlock2D").then_some(heads[i]);
            let is_final = i + 1 == ch.len();
            blocks.push(DownBlock::new(
                in_c,
                out_c,
                cfg.layers_per_block,
                attn,
                !is_final,
                ctx,
                vb.pp(i.to_string()),
            )?);
        }
        Ok(blocks)
    }

    fn up_blocks(
        cfg: &UNet2DConditionConfig,
        ctx: BlockCtx,
        vb: VarBuilder,
    ) -> Result<Vec<UpBlock>> {
        let rev: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let heads: Vec<usize> = cfg.heads().into_iter().rev().collect();
        let n = rev.len();
        let mut out_c = rev[0];
        let mut blocks = Vec::with_capacity(n);
        for (i, kind) in cfg.up_block_types.iter().enumerate() {
            let prev_out_c = out_c;
            out_c = rev[i];
            let in_c = rev[(i + 1).min(n - 1)];
            let attn = (kind == "CrossAttnUpBlock2D").then_some(heads[i]);
            let chans = UpChannels {
                in_c,
                out_c,
                prev_out_c,
            };
            blocks.push(UpBlock::new(
                chans,
                cfg.layers_per_block + 1,
                attn,
                i + 1 < n,
                ctx,
                vb.pp(i.to_string()),
            )?);
        }
        Ok(blocks)
    }

    /// The config it was built from.
    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.cfg
    }

    /// One UNet evaluation at `timestep` for the whole batch.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: usize,
        context: &Tensor,
        class_labels: &Tensor,
    ) -> Result<Tensor> {
        let b_sz = sample.dim(0)?;
        let ch0 = self.cfg.block_out_channels[0];
        let t_emb = timestep_embedding(
            &vec![timestep as f32; b_sz],
            ch0,
            self.cfg.flip_sin_to_cos,
            self.cfg.freq_shift as f32,
            sample.device(),
        )?
        .to_dtype(sample.dtype())?;
        let emb = self.time_embedding.forward(&t_emb)?;
        let emb = (emb + self.class_embedding.forward(class_labels)?)?;
        let mut xs = self.conv_in.forward(sample)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            let (out, states) = block.forward(&xs, &emb, context)?;
            xs = out;
            skips.extend(states);
        }
        xs = self.mid_block.forward(&xs, &emb, context)?;
        for block in &self.up_blocks {
            xs = block.forward(&xs, &mut skips, &emb, context)?;
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        Ok(self.conv_out.forward(&xs)?)
    }
}
