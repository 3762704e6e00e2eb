//! Convolutions of SpeechTokenizer: port of `speech_tokenizer/modules/conv.py`
//! (`SConv1d`, `SConvTranspose1d`, with `NormConv1d` / `NormConvTranspose1d` and
//! `torch.nn.utils.weight_norm` folded in).
//!
//! Tensor names under the module prefix `P`: `P.conv.conv.{weight_g,weight_v,bias}` for
//! [`SConv1d`], `P.convtr.convtr.{weight_g,weight_v,bias}` for [`SConvTranspose1d`]. The
//! weight is `weight_g · weight_v / ‖weight_v‖` (norm over every dim but 0), computed once at
//! load as `torch._weight_norm` does.
//!
//! Shapes: input `(B, C_in, T)`, output `(B, C_out, T')`. Only the non-causal, reflect-padded
//! configuration SpeechTokenizer uses is ported (`causal=False`, `pad_mode='reflect'`,
//! `norm='weight_norm'`).
//!
//! Streaming ([`SConv1d::step`], [`SConvTranspose1d::step`], state in [`SConv1dState`] /
//! [`SConvTranspose1dState`]): outputs are emitted once their whole receptive field has
//! arrived; `finish` applies the right-edge padding. Deviation: the transposed convolution is
//! computed as one matmul plus overlap-add of `kernel / stride` blocks (kernel must be a
//! multiple of the stride, as in SEANet where it is `2·ratio`).

use std::sync::Arc;

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

use super::stream::{cat_opt, split_at};
use crate::cpu_conv::PackedConv1d;
use crate::{Error, Result};

/// `torch.nn.utils.weight_norm(dim=0)` weight of `vb` (`weight_g`, `weight_v`).
fn weight_norm(vb: &VarBuilder, shape: (usize, usize, usize)) -> Result<Tensor> {
    let v = vb.get(shape, "weight_v")?;
    let g = vb.get((shape.0, 1, 1), "weight_g")?;
    let flat = v.sqr()?.reshape((shape.0, shape.1 * shape.2))?;
    let norm = crate::norm::sum_keepdim(&flat, 1)?
        .sqrt()?
        .reshape((shape.0, 1, 1))?;
    Ok(v.broadcast_mul(&g.broadcast_div(&norm)?)?)
}

/// Indices of reflect padding `(left, right)` over a length `len > max(left, right)`.
fn reflect_indices(len: usize, left: usize, right: usize) -> Vec<u32> {
    let last = len as i64 - 1;
    (-(left as i64)..len as i64 + right as i64)
        .map(|i| {
            let j = if i < 0 {
                -i
            } else if i > last {
                2 * last - i
            } else {
                i
            };
            j as u32
        })
        .collect()
}

/// `pad1d(x, (left, right), mode='reflect')` of upstream, including its zero-extension of
/// inputs not longer than the padding.
pub(crate) fn pad1d_reflect(xs: &Tensor, left: usize, right: usize) -> Result<Tensor> {
    if left == 0 && right == 0 {
        return Ok(xs.clone());
    }
    if let Some(padded) = crate::cpu_conv::pad_reflect_last(xs, left, right)? {
        return Ok(padded);
    }
    let len = xs.dim(D::Minus1)?;
    let max_pad = left.max(right);
    let extra = if len <= max_pad { max_pad - len + 1 } else { 0 };
    let xs = if extra > 0 {
        xs.pad_with_zeros(D::Minus1, 0, extra)?
    } else {
        xs.clone()
    };
    let idx = reflect_indices(len + extra, left, right);
    let idx = Tensor::from_vec(idx, len + extra + left + right, xs.device())?;
    let padded = xs.contiguous()?.index_select(&idx, D::Minus1)?;
    let total = padded.dim(D::Minus1)?;
    Ok(padded.narrow(D::Minus1, 0, total - extra)?)
}

/// `ceil(a / b)` for `b > 0` on signed integers (Python `math.ceil(a / b)`).
fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// `get_extra_padding_for_conv1d` of upstream.
pub(crate) fn extra_padding(len: usize, kernel: usize, stride: usize, total: usize) -> usize {
    let (l, k, s, p) = (len as i64, kernel as i64, stride as i64, total as i64);
    let n_frames = ceil_div(l - k + p, s) + 1;
    let ideal = (n_frames - 1) * s + (k - p);
    (ideal - l).max(0) as usize
}

/// Adds a per-channel bias `(C,)` to `(B, C, T)`.
fn add_bias(xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(xs.broadcast_add(&bias.reshape((1, (), 1))?)?)
}

/// `SConv1d`: weight-normed `Conv1d` with asymmetric reflect padding (non-causal).
#[derive(Clone)]
pub struct SConv1d {
    weights: ConvWeights,
    out_c: usize,
    kernel_size: usize,
    stride: usize,
    dilation: usize,
}

/// An [`SConv1d`]'s weight and bias.
#[derive(Clone)]
enum ConvWeights {
    /// f32 on the CPU with the dense kernel: the weight packed once (the tensor is dropped,
    /// so the weights are held once) and the bias values.
    Packed(Arc<(PackedConv1d, Vec<f32>)>),
    /// Anything else: candle's tensors.
    Tensors { weight: Tensor, bias: Tensor },
}

impl std::fmt::Debug for SConv1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SConv1d")
            .field("out_channels", &self.out_c)
            .field("kernel_size", &self.kernel_size)
            .field("stride", &self.stride)
            .field("dilation", &self.dilation)
            .field("packed", &matches!(self.weights, ConvWeights::Packed(_)))
            .finish()
    }
}

/// Streaming state of one [`SConv1d`] (stride 1 only).
#[derive(Debug, Clone, Default)]
pub struct SConv1dState {
    /// Input not yet consumed (raw before `started`, left-padded after).
    buf: Option<Tensor>,
    /// Whether the left reflect padding has been applied.
    started: bool,
}

impl SConv1dState {
    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl SConv1d {
    /// Loads `vb.conv.conv.*` of a `(in, out, kernel, stride, dilation)` convolution.
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel_size: usize,
        stride: usize,
        dilation: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv").pp("conv");
        let weight = weight_norm(&vb, (out_c, in_c, kernel_size))?;
        let bias = vb.get(out_c, "bias")?;
        let weights = match PackedConv1d::new(&weight)? {
            Some(w) => ConvWeights::Packed(Arc::new((w, bias.to_vec1::<f32>()?))),
            None => ConvWeights::Tensors { weight, bias },
        };
        Ok(Self {
            weights,
            out_c,
            kernel_size,
            stride,
            dilation,
        })
    }

    /// Output channels.
    pub fn out_channels(&self) -> Result<usize> {
        Ok(self.out_c)
    }

    /// `padding_total` of upstream: `(k - 1)·d - (s - 1)`.
    fn padding_total(&self) -> usize {
        ((self.kernel_size - 1) * self.dilation).saturating_sub(self.stride - 1)
    }

    /// `(left, right)` of the symmetric split (right gets the smaller half).
    fn split_padding(&self) -> (usize, usize) {
        let total = self.padding_total();
        (total - total / 2, total / 2)
    }

    /// The convolution itself on already padded input.
    fn conv(&self, xs: &Tensor) -> Result<Tensor> {
        let (weight, bias) = match &self.weights {
            ConvWeights::Packed(packed) => {
                let (w, bias) = packed.as_ref();
                return crate::cpu_conv::conv1d_packed(
                    xs,
                    w,
                    Some(bias),
                    self.stride,
                    self.dilation,
                );
            }
            ConvWeights::Tensors { weight, bias } => (weight, bias),
        };
        crate::cpu_conv::conv1d(xs, weight, Some(bias), self.stride, self.dilation)
    }

    /// One chunk `(B, C_in, n)` of a stream: the outputs whose receptive field is complete.
    pub fn step(&self, state: &mut SConv1dState, xs: &Tensor) -> Result<Option<Tensor>> {
        if self.stride != 1 {
            return Err(Error::Unsupported(
                "streaming a strided SConv1d (the SEANet decoder has none)".into(),
            ));
        }
        let (left, right) = self.split_padding();
        let mut buf = match state.buf.take() {
            Some(b) => Tensor::cat(&[&b, xs], D::Minus1)?,
            None => xs.clone(),
        };
        if !state.started {
            if buf.dim(D::Minus1)? <= left.max(right) {
                state.buf = Some(buf);
                return Ok(None);
            }
            buf = pad1d_reflect(&buf, left, 0)?;
            state.started = true;
        }
        let span = (self.kernel_size - 1) * self.dilation;
        let len = buf.dim(D::Minus1)?;
        if len <= span {
            state.buf = Some(buf);
            return Ok(None);
        }
        let ys = self.conv(&buf)?;
        state.buf = split_at(&buf, len - span)?.1;
        Ok(Some(ys))
    }

    /// End of the stream: the outputs that needed the right padding.
    pub fn finish(&self, state: &mut SConv1dState) -> Result<Option<Tensor>> {
        let buf = state.buf.take();
        let started = std::mem::take(&mut state.started);
        let Some(buf) = buf else { return Ok(None) };
        if !started {
            return Ok(Some(self.forward(&buf)?));
        }
        let (_, right) = self.split_padding();
        if right == 0 {
            return Ok(None);
        }
        let padded = pad1d_reflect(&buf, 0, right)?;
        Ok(Some(self.conv(&padded)?))
    }
}

/// `conv_a(ELU(a)) + conv_b(b)` for two 1×1 [`SConv1d`]s of the same output channels (a
/// SEANet residual block's last convolution and its shortcut) as one packed product
/// ([`crate::cpu_conv::conv1x1_pair`]): f32 on the CPU with the dense kernel only.
#[derive(Clone)]
pub struct SConv1x1Pair {
    packed: Arc<(PackedConv1d, Vec<f32>)>,
}

impl std::fmt::Debug for SConv1x1Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SConv1x1Pair(→ {} channels)", self.packed.1.len())
    }
}

impl SConv1x1Pair {
    /// Loads the two convolutions (`(in_a | in_b) → out`, as [`SConv1d::new`] does from
    /// `vb_a` and `vb_b`); `None` where the packed kernel does not run.
    pub fn new(
        (in_a, in_b): (usize, usize),
        out_c: usize,
        vb_a: VarBuilder,
        vb_b: VarBuilder,
    ) -> Result<Option<Self>> {
        let (vb_a, vb_b) = (vb_a.pp("conv").pp("conv"), vb_b.pp("conv").pp("conv"));
        let wa = weight_norm(&vb_a, (out_c, in_a, 1))?;
        let wb = weight_norm(&vb_b, (out_c, in_b, 1))?;
        let Some(w) = PackedConv1d::new(&Tensor::cat(&[&wa, &wb], 1)?)? else {
            return Ok(None);
        };
        let ba = vb_a.get(out_c, "bias")?.to_vec1::<f32>()?;
        let bb = vb_b.get(out_c, "bias")?.to_vec1::<f32>()?;
        let bias = ba.iter().zip(&bb).map(|(a, b)| a + b).collect();
        Ok(Some(Self {
            packed: Arc::new((w, bias)),
        }))
    }

    /// `conv_a(ELU(a)) + conv_b(b)`, and the ELU of that when `elu_out`; `a` and `b`
    /// `(B, in_a | in_b, T)`.
    pub fn forward(&self, a: &Tensor, b: &Tensor, elu_out: bool) -> Result<Tensor> {
        let (w, bias) = self.packed.as_ref();
        crate::cpu_conv::conv1x1_pair((a, true), b, w, Some(bias), elu_out)
    }
}

impl Module for SConv1d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let len = xs.dim(D::Minus1)?;
        let total = self.padding_total();
        let extra = extra_padding(len, self.kernel_size, self.stride, total);
        let (left, right) = self.split_padding();
        if let ConvWeights::Packed(packed) = &self.weights {
            if len > left.max(right + extra) && matches!(xs.device(), candle_core::Device::Cpu) {
                // The padding read in place by the packed kernel (no padded copy).
                let (w, bias) = packed.as_ref();
                return crate::cpu_conv::conv1d_packed_reflect(
                    &xs.to_dtype(candle_core::DType::F32)?,
                    w,
                    Some(bias),
                    self.stride,
                    self.dilation,
                    (left, right + extra),
                )
                .map_err(candle_core::Error::wrap);
            }
        }
        let padded = pad1d_reflect(xs, left, right + extra).map_err(candle_core::Error::wrap)?;
        self.conv(&padded).map_err(candle_core::Error::wrap)
    }
}

/// `SConvTranspose1d`: weight-normed `ConvTranspose1d`, output trimmed symmetrically by
/// `kernel - stride` (non-causal).
#[derive(Debug, Clone)]
pub struct SConvTranspose1d {
    /// `(C_out · kernel, C_in)`: rows `o·kernel + j`; not kept when packed (the packed copy
    /// serves every CPU call, so the weights are held once: 40 MB less at the real size).
    weight: Option<Tensor>,
    /// The same weight packed for our CPU kernel (f32 on the CPU with the kernel).
    packed: Option<std::sync::Arc<crate::cpu_conv::PackedConvTranspose1d>>,
    bias: Tensor,
    out_c: usize,
    kernel_size: usize,
    stride: usize,
}

/// Streaming state of one [`SConvTranspose1d`].
#[derive(Debug, Clone, Default)]
pub struct SConvTranspose1dState {
    /// Overlap of the frames seen so far onto the next `kernel - stride` samples (no bias).
    pending: Option<Tensor>,
    /// Output samples already emitted (the first `left` are trimmed).
    emitted: usize,
}

impl SConvTranspose1dState {
    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl SConvTranspose1d {
    /// Loads `vb.convtr.convtr.*` of an `(in, out, kernel, stride)` transposed convolution.
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel_size: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if stride == 0 || !kernel_size.is_multiple_of(stride) {
            return Err(Error::InvalidConfig(format!(
                "transposed convolution kernel {kernel_size} is not a multiple of its stride {stride}"
            )));
        }
        let vb = vb.pp("convtr").pp("convtr");
        let w = weight_norm(&vb, (in_c, out_c, kernel_size))?;
        let weight = w.reshape((in_c, out_c * kernel_size))?.t()?.contiguous()?;
        let bias = vb.get(out_c, "bias")?;
        let packed =
            crate::cpu_conv::PackedConvTranspose1d::new(&weight, out_c, kernel_size, stride)?
                .map(std::sync::Arc::new);
        let weight = packed.is_none().then_some(weight);
        Ok(Self {
            packed,
            weight,
            bias,
            out_c,
            kernel_size,
            stride,
        })
    }

    /// `(left, right)` trimmed from the full transposed-convolution output.
    fn trim(&self) -> (usize, usize) {
        let total = self.kernel_size - self.stride;
        (total - total / 2, total / 2)
    }

    /// Full `ConvTranspose1d` output without bias: `(B, C_out, (T + m - 1)·s)`, `m = k / s`.
    fn overlap_add(&self, xs: &Tensor) -> Result<Tensor> {
        if let Some(packed) = &self.packed {
            if matches!(xs.device(), candle_core::Device::Cpu) {
                return crate::cpu_conv::conv_transpose1d_packed(xs, packed);
            }
        }
        let Some(weight) = &self.weight else {
            return Err(Error::InvalidArgument(format!(
                "a transposed convolution packed for the CPU got input on {:?}",
                xs.device().location()
            )));
        };
        if let Some(full) = crate::cpu_conv::conv_transpose1d_full(
            xs,
            weight,
            self.out_c,
            self.kernel_size,
            self.stride,
        )? {
            return Ok(full);
        }
        let (b_sz, _, seq_len) = xs.dims3()?;
        let (s, m) = (self.stride, self.kernel_size / self.stride);
        let frames = weight.broadcast_left(b_sz)?.matmul(&xs.contiguous()?)?;
        let frames = frames.reshape((b_sz, self.out_c, m, s, seq_len))?;
        let mut sum: Option<Tensor> = None;
        for j in 0..m {
            let part = frames.narrow(2, j, 1)?.squeeze(2)?;
            let part = part.pad_with_zeros(D::Minus1, j, m - 1 - j)?;
            sum = Some(match sum {
                Some(acc) => (acc + part)?,
                None => part,
            });
        }
        let sum = sum.ok_or_else(|| Error::InvalidConfig("empty transposed kernel".into()))?;
        let n_blocks = seq_len + m - 1;
        Ok(sum
            .transpose(2, 3)?
            .contiguous()?
            .reshape((b_sz, self.out_c, n_blocks * s))?)
    }

    /// One chunk `(B, C_in, n)`: the `n · stride` output samples no later frame touches.
    pub fn step(&self, state: &mut SConvTranspose1dState, xs: &Tensor) -> Result<Option<Tensor>> {
        let full = self.overlap_add(xs)?;
        let full = match state.pending.take() {
            Some(p) => {
                let (head, tail) = split_at(&full, p.dim(D::Minus1)?)?;
                let head = head.map(|h| h + p).transpose()?;
                cat_opt(head, tail)?.ok_or_else(|| Error::InvalidArgument("empty chunk".into()))?
            }
            None => full,
        };
        let ready = xs.dim(D::Minus1)? * self.stride;
        let (out, rest) = split_at(&full, ready)?;
        state.pending = rest;
        self.emit(state, out)
    }

    /// End of the stream: the overlap tail, minus the right trim.
    pub fn finish(&self, state: &mut SConvTranspose1dState) -> Result<Option<Tensor>> {
        let Some(tail) = state.pending.take() else {
            state.emitted = 0;
            return Ok(None);
        };
        let (_, right) = self.trim();
        let keep = tail.dim(D::Minus1)?.saturating_sub(right);
        let out = split_at(&tail, keep)?.0;
        let ys = self.emit(state, out)?;
        state.emitted = 0;
        Ok(ys)
    }

    /// Adds the bias and drops what is left of the first `left` samples.
    fn emit(
        &self,
        state: &mut SConvTranspose1dState,
        ys: Option<Tensor>,
    ) -> Result<Option<Tensor>> {
        let Some(ys) = ys else { return Ok(None) };
        let (left, _) = self.trim();
        let len = ys.dim(D::Minus1)?;
        let skip = left.saturating_sub(state.emitted).min(len);
        state.emitted += len;
        match split_at(&ys, skip)?.1 {
            Some(ys) => Ok(Some(add_bias(&ys, &self.bias)?)),
            None => Ok(None),
        }
    }
}

impl Module for SConvTranspose1d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let wrap = candle_core::Error::wrap;
        let full = self.overlap_add(xs).map_err(wrap)?;
        let (left, right) = self.trim();
        let len = full.dim(D::Minus1)?;
        let ys = full.narrow(D::Minus1, left, len - left - right)?;
        add_bias(&ys, &self.bias).map_err(wrap)
    }
}

/// ELU(alpha = 1) activation (`nn.ELU()` of the SEANet blocks).
pub(crate) fn elu(xs: &Tensor) -> Result<Tensor> {
    Ok(crate::activation::elu(xs)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_reflect_padding_equals_the_gather() {
        let xs = Tensor::randn(0f32, 1.0, (2, 3, 50_000), &Device::Cpu).unwrap();
        for (l, r) in [(0, 3), (3, 0), (5, 7), (1, 1)] {
            let fast = crate::cpu_conv::pad_reflect_last(&xs, l, r)
                .unwrap()
                .unwrap();
            let idx = Tensor::from_vec(reflect_indices(50_000, l, r), 50_000 + l + r, &Device::Cpu)
                .unwrap();
            let want = xs.index_select(&idx, D::Minus1).unwrap();
            assert_eq!(fast.dims(), want.dims());
            let diff = (fast - want).unwrap().abs().unwrap().max_all().unwrap();
            assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        }
        // Strided input (a transposed view) is made contiguous first.
        let t = Tensor::randn(0f32, 1.0, (2, 9, 4), &Device::Cpu)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let fast = crate::cpu_conv::pad_reflect_last(&t, 2, 2)
            .unwrap()
            .unwrap();
        let idx = Tensor::from_vec(reflect_indices(9, 2, 2), 13, &Device::Cpu).unwrap();
        let want = t
            .contiguous()
            .unwrap()
            .index_select(&idx, D::Minus1)
            .unwrap();
        let diff = (fast - want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        // Padding as long as the input is not taken (upstream zero-extends it first).
        assert!(crate::cpu_conv::pad_reflect_last(&t, 9, 0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn reflect_padding_matches_torch() {
        let xs = Tensor::new(&[[[1f32, 2., 3., 4.]]], &Device::Cpu).unwrap();
        let p = pad1d_reflect(&xs, 2, 3).unwrap();
        // F.pad([1,2,3,4], (2,3), 'reflect') = [3,2,1,2,3,4,3,2,1]
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [3., 2., 1., 2., 3., 4., 3., 2., 1.]
        );
        // short input: zero-extended to [1,2,0,0], reflected to [0,0,2,1,2,0,0,0,2,1],
        // then the 2 extra samples cut from the end.
        let xs = Tensor::new(&[[[1f32, 2.]]], &Device::Cpu).unwrap();
        let p = pad1d_reflect(&xs, 3, 3).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0., 0., 2., 1., 2., 0., 0., 0.]
        );
    }

    #[test]
    fn extra_padding_matches_upstream() {
        // n_frames = (32000 - 4 + 1) / 2 + 1 = 16999.5 -> 17000; ideal 32001.
        assert_eq!(extra_padding(32000, 4, 2, 1), 1);
        assert_eq!(extra_padding(32000, 4, 2, 2), 0);
        assert_eq!(extra_padding(10, 7, 1, 6), 0);
        // (1 - 16 + 8) / 8 + 1 = 0.125 -> 1 frame; ideal 8.
        assert_eq!(extra_padding(1, 16, 8, 8), 7);
    }

    fn random_vb(tensors: &[(&str, Vec<usize>)]) -> VarBuilder<'static> {
        let dev = Device::Cpu;
        let map = tensors
            .iter()
            .map(|(n, shape)| {
                let t = Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap();
                (n.to_string(), t)
            })
            .collect();
        VarBuilder::from_tensors(map, candle_core::DType::F32, &dev)
    }

    fn streamed<S>(
        xs: &Tensor,
        chunk: usize,
        state: &mut S,
        step: impl Fn(&mut S, &Tensor) -> Result<Option<Tensor>>,
        finish: impl Fn(&mut S) -> Result<Option<Tensor>>,
    ) -> Tensor {
        let len = xs.dim(D::Minus1).unwrap();
        let mut out = None;
        for start in (0..len).step_by(chunk) {
            let c = xs.narrow(D::Minus1, start, chunk.min(len - start)).unwrap();
            out = cat_opt(out, step(state, &c).unwrap()).unwrap();
        }
        cat_opt(out, finish(state).unwrap()).unwrap().unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// `step` + `finish` equal `forward` for a dilated conv and a 3-block transposed conv,
    /// whatever the chunking, including inputs shorter than the padding.
    #[test]
    fn streaming_equals_forward() {
        let vb = random_vb(&[
            ("c.conv.conv.weight_v", vec![3, 2, 5]),
            ("c.conv.conv.weight_g", vec![3, 1, 1]),
            ("c.conv.conv.bias", vec![3]),
            ("t.convtr.convtr.weight_v", vec![2, 3, 6]),
            ("t.convtr.convtr.weight_g", vec![2, 1, 1]),
            ("t.convtr.convtr.bias", vec![3]),
        ]);
        let conv = SConv1d::new(2, 3, 5, 1, 2, vb.pp("c")).unwrap();
        let convtr = SConvTranspose1d::new(2, 3, 6, 2, vb.pp("t")).unwrap();
        for len in [1, 3, 5, 17] {
            let xs = Tensor::randn(0f32, 1.0, (1, 2, len), &Device::Cpu).unwrap();
            for chunk in [1, 2, 4, 17] {
                let mut st = SConv1dState::default();
                let got = streamed(
                    &xs,
                    chunk,
                    &mut st,
                    |s, x| conv.step(s, x),
                    |s| conv.finish(s),
                );
                assert!(
                    max_diff(&got, &conv.forward(&xs).unwrap()) < 1e-5,
                    "conv {len}/{chunk}"
                );
                let mut st = SConvTranspose1dState::default();
                let step = |s: &mut _, x: &Tensor| convtr.step(s, x);
                let got = streamed(&xs, chunk, &mut st, step, |s| convtr.finish(s));
                let want = convtr.forward(&xs).unwrap();
                assert!(max_diff(&got, &want) < 1e-5, "convtr {len}/{chunk}");
            }
        }
    }
}
