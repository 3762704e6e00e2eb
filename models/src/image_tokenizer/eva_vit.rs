//! EVA-CLIP ViT-g, the SEED tokenizer's image encoder.
//!
//! Ports `image_tokenizer/models/seed_qformer/eva_vit.py`: `VisionTransformer`
//! (`create_eva_vit_g`: patch 14, width 1408, 39 blocks, 16 heads, mlp 6144, LayerNorm
//! eps 1e-6, `qkv_bias`, absolute position embedding, no relative position bias, no
//! `gamma` layer scale, no final norm), with its `PatchEmbed`, `Block`, `Attention` and
//! `Mlp`. Tensor names are those of `eva_vit_g.pth`, un-prefixed (`cls_token`,
//! `pos_embed`, `patch_embed.proj.*`, `blocks.{i}.{norm1,attn,norm2,mlp}.*`); the file is
//! float16 and is computed in f32 (what the reference did for the goldens).
//! Input `(B, 3, 224, 224)` → output `(B, 1 + 256, width)` (cls token first).
//! Deviation: `interpolate_pos_embed` is not ported: a checkpoint whose `pos_embed` grid
//! differs from `img_size / patch_size` is refused by the shape check.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use candle_nn::{conv2d, Conv2d, Conv2dConfig};

use super::config::VitConfig;
use crate::norm::LayerNorm;
use crate::sgemm::Dense;
use crate::Result;

/// `nn.LayerNorm(dim, eps)` reading `weight` and `bias`.
pub(crate) fn layer_norm_eps(dim: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::load(dim, eps, vb)?)
}

/// `PatchEmbed`: a stride-`patch` convolution, flattened to `(B, N, width)`.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    proj: Conv2d,
}

impl PatchEmbed {
    /// Reads `proj.weight` `(width, 3, patch, patch)` and `proj.bias`.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let conv_cfg = Conv2dConfig {
            stride: cfg.patch_size,
            ..Conv2dConfig::default()
        };
        let proj = conv2d(3, cfg.embed_dim, cfg.patch_size, conv_cfg, vb.pp("proj"))?;
        Ok(Self { proj })
    }
}

impl Module for PatchEmbed {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.proj.forward(xs)?.flatten_from(2)?.transpose(1, 2)
    }
}

/// `Attention`: fused `qkv` without bias plus `q_bias`/`v_bias` (k gets zeros), here one
/// layer with the concatenated bias.
#[derive(Debug, Clone)]
pub struct Attention {
    qkv: Dense,
    proj: Dense,
    num_heads: usize,
    scale: f64,
}

impl Attention {
    /// Reads `qkv.weight`, `q_bias`, `v_bias`, `proj.*`.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let qkv_weight = vb.pp("qkv").get((dim * 3, dim), "weight")?;
        let qkv_bias = if cfg.qkv_bias {
            let q = vb.get(dim, "q_bias")?;
            let v = vb.get(dim, "v_bias")?;
            Some(Tensor::cat(&[&q, &q.zeros_like()?, &v], 0)?)
        } else {
            None
        };
        let head_dim = dim / cfg.num_heads;
        Ok(Self {
            qkv: Dense::new(qkv_weight, qkv_bias)?,
            proj: Dense::load(dim, dim, vb.pp("proj"))?,
            num_heads: cfg.num_heads,
            scale: (head_dim as f64).powf(-0.5),
        })
    }
}

impl Attention {
    /// `residual + self.forward(xs)`, the addition done by the output projection's kernel.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        let (b_sz, seq_len, _) = xs.dims3()?;
        let qkv = self.qkv.forward(xs)?;
        if let Some(out) = crate::sgemm::attention_fused_qkv(&qkv, self.num_heads, self.scale)? {
            return self.proj.forward_add(&out, residual);
        }
        // (B, N, 3, H, D) → (3, B, H, N, D)
        let qkv = qkv
            .reshape((b_sz, seq_len, 3, self.num_heads, ()))?
            .permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * self.scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = q.matmul(&k.t()?)?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let out = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, ()))?;
        self.proj.forward_add(&out, residual)
    }
}

/// `Mlp`: fc1 → exact GELU → fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Dense,
    fc2: Dense,
}

impl Mlp {
    /// Reads `fc1.*`, `fc2.*`.
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            fc1: Dense::load(dim, hidden, vb.pp("fc1"))?,
            fc2: Dense::load(hidden, dim, vb.pp("fc2"))?,
        })
    }
}

impl Mlp {
    /// `residual + self.forward(xs)`: the GELU and the addition done by the kernels of `fc1`
    /// and `fc2` on each finished tile.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward_add(&self.fc1.forward_gelu(xs)?, residual)
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward_gelu(xs)?)
    }
}

/// `Block`: pre-norm attention and MLP with residuals.
#[derive(Debug, Clone)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    /// Reads `norm1.*`, `attn.*`, `norm2.*`, `mlp.*`.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        Ok(Self {
            norm1: layer_norm_eps(dim, cfg.norm_eps, vb.pp("norm1"))?,
            attn: Attention::new(cfg, vb.pp("attn"))?,
            norm2: layer_norm_eps(dim, cfg.norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(dim, cfg.mlp_hidden, vb.pp("mlp"))?,
        })
    }
}

impl Module for Block {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.attn.forward_add(&self.norm1.forward(xs)?, xs)?;
        self.mlp.forward_add(&self.norm2.forward(&xs)?, &xs)
    }
}

/// `VisionTransformer.forward` (= `forward_features`): patches, cls token, position
/// embedding, blocks.
#[derive(Debug, Clone)]
pub struct VisionTransformer {
    patch_embed: PatchEmbed,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<Block>,
}

impl VisionTransformer {
    /// Builds the ViT from the un-prefixed `eva_vit_g.pth` names.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim;
        let n_pos = cfg.grid() * cfg.grid() + 1;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embed: PatchEmbed::new(cfg, vb.pp("patch_embed"))?,
            cls_token: vb.get((1, 1, dim), "cls_token")?,
            pos_embed: vb.get((1, n_pos, dim), "pos_embed")?,
            blocks,
        })
    }
}

impl Module for VisionTransformer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = self.patch_embed.forward(xs)?;
        let (b_sz, _, dim) = xs.dims3()?;
        let cls = self.cls_token.expand((b_sz, 1, dim))?;
        let mut xs = Tensor::cat(&[&cls, &xs], 1)?.broadcast_add(&self.pos_embed)?;
        for block in &self.blocks {
            xs = block.forward(&xs)?;
        }
        Ok(xs)
    }
}
