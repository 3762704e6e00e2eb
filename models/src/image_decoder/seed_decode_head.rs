//! SEED decode head: 32 image codes → the 1024-d image embedding that conditions unCLIP.
//!
//! Ports the decoder side of `Blip2QformerQuantizer.get_codebook_entry`
//! (MIO `image_tokenizer/models/seed_qformer/qformer_quantizer.py`, `Block`/`Attention`/`Mlp`
//! of `seed_qformer/vit.py`), reading `seed-tokenizer-2/seed_quantizer.pt` by its own names:
//! `quantize.embedding.weight` (n_embed × e), `decode_task_layer.{0,2}` (Linear-Tanh-Linear,
//! e → hidden), `pos_embed_image` (1 × queries × hidden), `blocks_image.{i}` (pre-norm ViT
//! blocks, 12 heads, LayerNorm eps 1e-6, exact-erf GELU MLP), `image_down.{0,2,4}`
//! (bias-free Linear-ReLU-Linear-ReLU-Linear, hidden → 256 → 128 → 32) and
//! `distill_image_proj` (queries·32 → image_features_dim).
//!
//! Shapes: codes (b × 32) → embedding (b × image_features_dim): 1024 for the real release,
//! 512 for the tiny fixture. Deviation: the sizes are read from the checkpoint's tensor
//! shapes instead of a config (the real `seed_quantizer.pt` ships none); the head count (12)
//! is hard-coded upstream and here.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::sgemm::Dense;

use crate::weights_file::WeightFile;
use crate::{Error, Result};

/// Heads of every `blocks_image` block (hard-coded `num_heads=12` upstream).
pub const BLOCK_HEADS: usize = 12;
/// LayerNorm eps of the blocks (`partial(nn.LayerNorm, eps=1e-6)` upstream).
const BLOCK_NORM_EPS: f64 = 1e-6;

/// Sizes of the decode head, as read from the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedDecodeHeadConfig {
    /// Codebook size (`n_embed`, 8192).
    pub n_embed: usize,
    /// Codebook vector size (`codebook_embed_dim`, 32).
    pub codebook_embed_dim: usize,
    /// Q-Former hidden size (768 real, 48 tiny).
    pub hidden_size: usize,
    /// Queries per image (32).
    pub num_query_token: usize,
    /// Number of `blocks_image` (4).
    pub depth: usize,
    /// MLP hidden size of the blocks (`int(hidden * 4.0)`).
    pub mlp_hidden: usize,
    /// Output size of `image_down` (32).
    pub down_dim: usize,
    /// Output embedding size (`image_features_dim`: 1024 real, 512 tiny).
    pub image_features_dim: usize,
}

impl SeedDecodeHeadConfig {
    /// Reads the sizes from the tensor shapes of `seed_quantizer.pt`.
    pub fn from_checkpoint(pth: &WeightFile) -> Result<Self> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            pth.shape(name)
                .map(<[usize]>::to_vec)
                .ok_or_else(|| Error::MissingTensor(name.to_string()))
        };
        let dim = |name: &str, i: usize| -> Result<usize> {
            shape(name)?.get(i).copied().ok_or_else(|| {
                Error::checkpoint(pth.path(), format!("{name} has too few dimensions"))
            })
        };
        let depth = (0..)
            .take_while(|i| pth.contains(&format!("blocks_image.{i}.norm1.weight")))
            .count();
        Ok(Self {
            n_embed: dim("quantize.embedding.weight", 0)?,
            codebook_embed_dim: dim("quantize.embedding.weight", 1)?,
            hidden_size: dim("decode_task_layer.2.weight", 0)?,
            num_query_token: dim("pos_embed_image", 1)?,
            depth,
            mlp_hidden: dim("blocks_image.0.mlp.fc1.weight", 0)?,
            down_dim: dim("image_down.4.weight", 0)?,
            image_features_dim: dim("distill_image_proj.weight", 0)?,
        })
    }
}

/// timm-style multi-head self-attention (`Attention` of `vit.py`), prefix `attn`.
#[derive(Debug, Clone)]
struct Attention {
    qkv: Dense,
    proj: Dense,
    num_heads: usize,
    scale: f64,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            qkv: Dense::load(dim, dim * 3, vb.pp("qkv"))?,
            proj: Dense::load(dim, dim, vb.pp("proj"))?,
            num_heads,
            scale: ((dim / num_heads) as f64).powf(-0.5),
        })
    }
}

impl Module for Attention {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (b_sz, seq_len, dim) = xs.dims3()?;
        let head_dim = dim / self.num_heads;
        let qkv = self
            .qkv
            .forward(xs)?
            .reshape((b_sz, seq_len, 3, self.num_heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = ((q * self.scale)?.matmul(&k.t()?)?).contiguous()?;
        let attn = candle_nn::ops::softmax_last_dim(&attn)?;
        let xs = attn
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b_sz, seq_len, dim))?;
        self.proj.forward(&xs)
    }
}

/// Pre-norm transformer block (`Block` of `vit.py`), prefix `blocks_image.{i}`.
#[derive(Debug, Clone)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

impl Block {
    fn new(cfg: &SeedDecodeHeadConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            norm1: layer_norm(h, BLOCK_NORM_EPS, vb.pp("norm1"))?,
            attn: Attention::new(h, BLOCK_HEADS, vb.pp("attn"))?,
            norm2: layer_norm(h, BLOCK_NORM_EPS, vb.pp("norm2"))?,
            fc1: Dense::load(h, cfg.mlp_hidden, vb.pp("mlp.fc1"))?,
            fc2: Dense::load(cfg.mlp_hidden, h, vb.pp("mlp.fc2"))?,
        })
    }
}

impl Module for Block {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = (xs + self.attn.forward(&self.norm1.forward(xs)?)?)?;
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&xs)?)?.gelu_erf()?)?;
        xs + mlp
    }
}

/// The decoder side of `Blip2QformerQuantizer`: codes → unCLIP image embedding.
#[derive(Debug, Clone)]
pub struct SeedDecodeHead {
    cfg: SeedDecodeHeadConfig,
    codebook: Tensor,
    decode_task_layer: (Dense, Dense),
    pos_embed_image: Tensor,
    blocks_image: Vec<Block>,
    image_down: [Dense; 3],
    distill_image_proj: Dense,
}

impl SeedDecodeHead {
    /// Loads the head from `seed_quantizer.pt` or its `.safetensors` copy (float32 on `dev`).
    pub fn load(path: &std::path::Path, dev: &Device) -> Result<Self> {
        let pth = WeightFile::open_preferred(path)?;
        let cfg = SeedDecodeHeadConfig::from_checkpoint(&pth)?;
        Self::new(cfg, pth.into_var_builder(DType::F32, dev))
    }

    /// Builds the head from a `VarBuilder` rooted at the checkpoint's top level.
    pub fn new(cfg: SeedDecodeHeadConfig, vb: VarBuilder) -> Result<Self> {
        let (e, h) = (cfg.codebook_embed_dim, cfg.hidden_size);
        let codebook = vb.get((cfg.n_embed, e), "quantize.embedding.weight")?;
        let decode_task_layer = (
            Dense::load(e, e, vb.pp("decode_task_layer.0"))?,
            Dense::load(e, h, vb.pp("decode_task_layer.2"))?,
        );
        let pos_embed_image = vb.get((1, cfg.num_query_token, h), "pos_embed_image")?;
        let blocks_image = (0..cfg.depth)
            .map(|i| Block::new(&cfg, vb.pp(format!("blocks_image.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let down = vb.pp("image_down");
        let image_down = [
            Dense::load_no_bias(h, 256, down.pp("0"))?,
            Dense::load_no_bias(256, 128, down.pp("2"))?,
            Dense::load_no_bias(128, cfg.down_dim, down.pp("4"))?,
        ];
        let distill_image_proj = Dense::load(
            cfg.num_query_token * cfg.down_dim,
            cfg.image_features_dim,
            vb.pp("distill_image_proj"),
        )?;
        Ok(Self {
            cfg,
            codebook,
            decode_task_layer,
            pos_embed_image,
            blocks_image,
            image_down,
            distill_image_proj,
        })
    }

    /// The sizes read from the checkpoint.
    pub fn config(&self) -> &SeedDecodeHeadConfig {
        &self.cfg
    }

    /// `quantize.get_codebook_entry`: codes (b × q, u32) → codebook rows (b × q × e).
    pub fn codebook_entries(&self, codes: &Tensor) -> Result<Tensor> {
        let (b_sz, q) = codes.dims2()?;
        let flat = codes.flatten_all()?.to_dtype(DType::U32)?;
        let max = flat.max(0)?.to_scalar::<u32>()?;
        if max as usize >= self.cfg.n_embed {
            return Err(Error::InvalidArgument(format!(
                "image code {max} is outside the codebook of {}",
                self.cfg.n_embed
            )));
        }
        let rows = self.codebook.index_select(&flat, 0)?;
        Ok(rows.reshape((b_sz, q, self.cfg.codebook_embed_dim))?)
    }

    /// `decode_task_layer(codebook rows)`: b × q × hidden.
    pub fn decode_task(&self, entries: &Tensor) -> Result<Tensor> {
        let (l0, l2) = &self.decode_task_layer;
        Ok(l2.forward(&l0.forward(entries)?.tanh()?)?)
    }

    /// `+ pos_embed_image` then the `blocks_image`: b × q × hidden.
    pub fn blocks(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.broadcast_add(&self.pos_embed_image)?;
        for block in &self.blocks_image {
            xs = block.forward(&xs)?;
        }
        Ok(xs)
    }

    /// `image_down`: b × q × hidden → b × q × 32.
    pub fn image_down(&self, xs: &Tensor) -> Result<Tensor> {
        let [l0, l2, l4] = &self.image_down;
        let xs = l0.forward(xs)?.relu()?;
        let xs = l2.forward(&xs)?.relu()?;
        Ok(l4.forward(&xs)?)
    }

    /// The whole head: codes (b × q) → image embedding (b × image_features_dim).
    pub fn forward(&self, codes: &Tensor) -> Result<Tensor> {
        let xs = self.decode_task(&self.codebook_entries(codes)?)?;
        let xs = self.image_down(&self.blocks(&xs)?)?;
        let xs = xs.flatten_from(D::Minus2)?;
        Ok(self.distill_image_proj.forward(&xs)?)
    }
}
