//! diffusers 0.20.2 `ResnetBlock2D` (`resnet.py`, default options: GroupNorm, SiLU, no
//! up/down sampling, output scale 1) and the 2-D convolution it and the UNet use.
//!
//! Tensor names under the block prefix: `norm1`, `conv1`, `time_emb_proj`, `norm2`, `conv2`
//! and, when the channel count changes, `conv_shortcut` (1 × 1). Shapes: `(B, C_in, H, W)`
//! → `(B, C_out, H, W)`; the time embedding `(B, T)`.
//!
//! [`Conv2d`] runs stride-1 convolutions of f32 tensors on the CPU through
//! [`crate::cpu_conv::conv2d_s1_packed`] (the weight packed once at load for the dense
//! kernel, the input's shifted rows read straight into its panels: no im2col matrix, which
//! candle's CPU `conv2d` builds by copying every input `KH·KW` times), and everything else
//! through candle's `conv2d`.

use std::sync::Arc;

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use crate::cpu_conv::{conv2d_s1_packed, PackedConv2d};
use crate::norm::{group_norm, GroupNorm};
use crate::sgemm::Dense;

use crate::Result;

/// A 2-D convolution with bias (`weight (C_out, C_in, K, K)`, `bias (C_out)`), groups 1,
/// dilation 1.
#[derive(Clone)]
pub struct Conv2d {
    weights: ConvWeights,
    padding: usize,
    stride: usize,
}

#[derive(Clone)]
enum ConvWeights {
    /// Stride 1, f32 on the CPU, with the dense kernel: the weight packed once (the tensor
    /// is dropped, so the weights are held once) and the bias values.
    Packed(Arc<(PackedConv2d, Vec<f32>)>),
    /// Anything else: candle's tensors.
    Tensors { weight: Tensor, bias: Tensor },
}

impl std::fmt::Debug for Conv2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let packed = matches!(self.weights, ConvWeights::Packed(_));
        f.debug_struct("Conv2d")
            .field("padding", &self.padding)
            .field("stride", &self.stride)
            .field("packed", &packed)
            .finish()
    }
}

impl Conv2d {
    /// Loads `vb.{weight,bias}` of a `(in, out, kernel)` convolution.
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((out_c, in_c, kernel, kernel), "weight")?;
        let bias = vb.get(out_c, "bias")?;
        let packed = match stride {
            1 => PackedConv2d::new(&weight)?,
            _ => None,
        };
        let weights = match packed {
            Some(w) => ConvWeights::Packed(Arc::new((w, bias.to_vec1::<f32>()?))),
            None => ConvWeights::Tensors { weight, bias },
        };
        Ok(Self {
            weights,
            padding,
            stride,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (weight, bias) = match &self.weights {
            ConvWeights::Packed(packed) => {
                let (w, bias) = packed.as_ref();
                return conv2d_s1_packed(xs, w, Some(bias), self.padding)
                    .map_err(candle_core::Error::wrap);
            }
            ConvWeights::Tensors { weight, bias } => (weight, bias),
        };
        if self.stride == 1 {
            let ours = crate::cpu_conv::conv2d_s1(xs, weight, Some(bias), self.padding)
                .map_err(candle_core::Error::wrap)?;
            if let Some(ys) = ours {
                return Ok(ys);
            }
        }
        xs.conv2d(weight, self.padding, self.stride, 1, 1)?
            .broadcast_add(&bias.reshape((1, (), 1, 1))?)
    }
}

/// `ResnetBlock2D`, with a time embedding (UNet) or without (VAE).
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Dense>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// From `in_c` to `out_c` channels; `temb` channels of the time embedding (none for the
    /// VAE's), GroupNorm `groups` and `eps`.
    pub fn new(
        in_c: usize,
        out_c: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            norm1: group_norm(groups, in_c, eps, vb.pp("norm1"))?,
            conv1: Conv2d::new(in_c, out_c, 3, 1, 1, vb.pp("conv1"))?,
            time_emb_proj: temb
                .map(|t| Dense::load(t, out_c, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: group_norm(groups, out_c, eps, vb.pp("norm2"))?,
            conv2: Conv2d::new(out_c, out_c, 3, 1, 1, vb.pp("conv2"))?,
            conv_shortcut: (in_c != out_c)
                .then(|| Conv2d::new(in_c, out_c, 1, 0, 1, vb.pp("conv_shortcut")))
                .transpose()?,
        })
    }

    /// `shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + proj(silu(temb)))))` (no
    /// `proj` term without a time embedding).
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let shortcut = match &self.conv_shortcut {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        let h = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        let h = match (temb, &self.time_emb_proj) {
            (Some(temb), Some(proj)) => proj
                .forward(&candle_nn::ops::silu(temb)?)?
                .unsqueeze(D::Minus1)?
                .unsqueeze(D::Minus1)?
                .broadcast_add(&h)?,
            _ => h,
        };
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        Ok((shortcut + h)?)
    }
}
