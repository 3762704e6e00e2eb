//! Group normalization (optionally followed by SiLU) for f32 tensors on the CPU, in one
//! parallel pass per group.
//!
//! candle's `GroupNorm` is a chain of tensor ops (mean, subtract, square, mean, divide,
//! scale, shift, then SiLU as two more): each runs on one thread and writes a fresh
//! tensor, so at the unCLIP UNet's 96 × 96 latents one norm reads and writes 24 MB eight
//! times while the second core waits. Here the `(batch, group)` slices are spread over
//! candle's pool; each is read twice for its mean and variance (the same two-pass formula,
//! accumulated in f64) and written once, normalized, scaled, shifted and, for
//! [`GroupNorm::forward_silu`], passed through SiLU. Other devices and dtypes go through
//! tensor ops with [`sum_keepdim`].
//!
//! [`sum_keepdim`] is candle's `sum_keepdim` made right on CUDA: candle 0.11's CUDA f32 sum
//! kernel reduces with whole warps only, so when an output sums 16 values or fewer (its
//! block is narrower than a warp) the result is 0 — a weight-normed 1×1 convolution's norm
//! becomes 0 and its weight infinite. Such sums are added slice by slice there.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{CpuStorage, DType, Device, Module, Storage, Tensor};
use candle_nn::VarBuilder;

use crate::cpu_conv::SendPtr;

/// `nn.LayerNorm(dim, eps)` over the last dimension, with scale and shift. For a contiguous
/// f32 tensor on the CPU, candle's own CPU formula (a row's sum and sum of squares in f32,
/// value by value; `(x − mean) · inv_std · w + b`), the same values bit for bit, on the
/// pool the matrix products use: candle runs it on its rayon pool, next to the product
/// pool's spinning thread, and sums one row at a time; here two rows' sums are interleaved
/// (each row's additions in the same order). Elsewhere candle's `LayerNorm`.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    candle: candle_nn::LayerNorm,
    eps: f32,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl LayerNorm {
    /// Reads `weight` and `bias` (`dim` values each) under `vb`.
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = candle_nn::LayerNormConfig {
            eps,
            ..candle_nn::LayerNormConfig::default()
        };
        let candle = candle_nn::layer_norm(dim, cfg, vb)?;
        let weight = candle.weight().to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let bias = match candle.bias() {
            Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            None => vec![0f32; dim],
        };
        Ok(Self {
            candle,
            eps: eps as f32,
            weight,
            bias,
        })
    }

    /// One row's sum and sum of squares, value by value (candle's order).
    fn sums(row: &[f32]) -> (f32, f32) {
        let (mut sum, mut sum2) = (0f32, 0f32);
        for &v in row {
            sum += v;
            sum2 += v * v;
        }
        (sum, sum2)
    }

    /// Two rows' [`Self::sums`] in one loop (independent chains, twice the additions per
    /// cycle; each row's own order unchanged).
    fn sums2(a: &[f32], b: &[f32]) -> [(f32, f32); 2] {
        let (mut sa, mut qa, mut sb, mut qb) = (0f32, 0f32, 0f32, 0f32);
        for (&x, &y) in a.iter().zip(b) {
            sa += x;
            qa += x * x;
            sb += y;
            qb += y * y;
        }
        [(sa, qa), (sb, qb)]
    }

    /// `src` (a row) normalized into `dst` from its sums.
    fn write_row(&self, src: &[f32], (sum, sum2): (f32, f32), dst: &mut [MaybeUninit<f32>]) {
        let dim = src.len() as f32;
        let mean = sum / dim;
        let var = sum2 / dim - mean * mean;
        let inv_std = (var + self.eps).sqrt().recip();
        for (((d, &s), &w), &b) in dst.iter_mut().zip(src).zip(&self.weight).zip(&self.bias) {
            d.write((s - mean) * inv_std * w + b);
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dim = self.weight.len();
        let ours = matches!(xs.device(), Device::Cpu)
            && xs.dtype() == DType::F32
            && xs.dims().last() == Some(&dim)
            && dim > 0
            && self.bias.len() == dim;
        if !ours {
            return self.candle.forward(xs);
        }
        let xs = xs.contiguous()?;
        let (store, layout) = xs.storage_and_layout();
        let x = match (&*store, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, e))) => &v[a..e],
            _ => return self.candle.forward(&xs),
        };
        let mut out = Vec::<f32>::with_capacity(x.len());
        crate::activation::par_rows((x, dim), (out.spare_capacity_mut(), dim), |src, dst| {
            let mut pairs = src.chunks_exact(2 * dim).zip(dst.chunks_exact_mut(2 * dim));
            for (s, d) in &mut pairs {
                let (s0, s1) = s.split_at(dim);
                let (d0, d1) = d.split_at_mut(dim);
                let [a, b] = Self::sums2(s0, s1);
                self.write_row(s0, a, d0);
                self.write_row(s1, b, d1);
            }
            let rest = src.len() / (2 * dim) * 2 * dim;
            if let (Some(s), Some(d)) = (src.get(rest..), dst.get_mut(rest..)) {
                if !s.is_empty() {
                    self.write_row(s, Self::sums(s), d);
                }
            }
        });
        // SAFETY: `par_rows` passed every row of `x` (all `x.len()` values, the capacity
        // has room for them) to the closure, which wrote each output value.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(x.len())
        };
        Tensor::from_vec(out, xs.dims(), &Device::Cpu)
    }
}

/// `GroupNorm(groups, channels, eps)` with learned scale and shift, over `(B, C, …)`.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    groups: usize,
    eps: f64,
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// The scale and shift as given (on the model's device), for the tensor path.
    weight_t: Tensor,
    bias_t: Tensor,
}

/// Loads `vb.{weight,bias}` of a group norm over `channels` channels.
pub fn group_norm(
    groups: usize,
    channels: usize,
    eps: f64,
    vb: VarBuilder,
) -> candle_core::Result<GroupNorm> {
    let weight = vb.get(channels, "weight")?;
    let bias = vb.get(channels, "bias")?;
    GroupNorm::new(weight, bias, channels, groups, eps)
}

impl GroupNorm {
    /// From its scale and shift (`channels` values each).
    pub fn new(
        weight: Tensor,
        bias: Tensor,
        channels: usize,
        groups: usize,
        eps: f64,
    ) -> candle_core::Result<Self> {
        if groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!("GroupNorm: {channels} channels in {groups} groups");
        }
        if weight.dims() != [channels] || bias.dims() != [channels] {
            candle_core::bail!(
                "GroupNorm: scale {:?} and shift {:?} for {channels} channels",
                weight.dims(),
                bias.dims()
            );
        }
        let values = |t: &Tensor| t.to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok(Self {
            groups,
            eps,
            weight: values(&weight)?,
            bias: values(&bias)?,
            weight_t: weight,
            bias_t: bias,
        })
    }

    /// `silu(group_norm(x))`.
    pub fn forward_silu(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self.on_cpu(xs, true)? {
            Some(ys) => Ok(ys),
            None => candle_nn::ops::silu(&self.forward_tensors(xs)?),
        }
    }

    /// Our kernel's result, or `None` for tensors it does not take.
    fn on_cpu(&self, xs: &Tensor, silu: bool) -> candle_core::Result<Option<Tensor>> {
        let dims = xs.dims();
        let c = self.weight.len();
        if !matches!(xs.device(), Device::Cpu)
            || xs.dtype() != DType::F32
            || dims.len() < 2
            || dims[1] != c
            || self.groups == 0
            || !c.is_multiple_of(self.groups)
        {
            return Ok(None);
        }
        let xs = xs.contiguous()?;
        let (store, layout) = xs.storage_and_layout();
        let x = match (&*store, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, e))) => &v[a..e],
            _ => return Ok(None),
        };
        let per_group = x.len() / (dims[0] * self.groups).max(1);
        let spatial = per_group / (c / self.groups).max(1);
        let mut out = vec![0f32; x.len()];
        let jobs = dims[0] * self.groups;
        let next = AtomicUsize::new(0);
        let out_at = SendPtr(out.as_mut_ptr());
        if per_group > 0 {
            candle_core::utils::barrier_pool().execute(|_| loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    break;
                }
                let src = &x[job * per_group..(job + 1) * per_group];
                // SAFETY: job `job` alone writes `out[job · per_group ..][..per_group]`,
                // inside `out` (`jobs · per_group` values).
                #[allow(unsafe_code)]
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out_at.get().add(job * per_group), per_group)
                };
                let g = job % self.groups;
                let cg = c / self.groups;
                self.normalize(src, dst, (g * cg..(g + 1) * cg, spatial), silu);
            });
        }
        Ok(Some(Tensor::from_vec(out, dims, &Device::Cpu)?))
    }

    /// One group's values (`channels.len()` planes of `spatial`) into `dst`.
    fn normalize(
        &self,
        src: &[f32],
        dst: &mut [f32],
        (channels, spatial): (std::ops::Range<usize>, usize),
        silu: bool,
    ) {
        let n = src.len() as f64;
        let m = (sum(src, |v| v) / n) as f32;
        let var = sum(src, |v| (v - m) * (v - m)) / n;
        let rstd = (1.0 / (var + self.eps).sqrt()) as f32;
        for (ch, (s, d)) in channels.zip(src.chunks(spatial).zip(dst.chunks_mut(spatial))) {
            let scale = rstd * self.weight[ch];
            let shift = self.bias[ch];
            for (y, &v) in d.iter_mut().zip(s) {
                *y = (v - m).mul_add(scale, shift);
            }
            if silu {
                for y in d.iter_mut() {
                    *y /= 1.0 + crate::activation::exp_value(-*y);
                }
            }
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self.on_cpu(xs, false)? {
            Some(ys) => Ok(ys),
            None => self.forward_tensors(xs),
        }
    }
}

impl GroupNorm {
    /// candle's `GroupNorm` formula (f32 statistics, two passes) with [`sum_keepdim`], for
    /// the tensors our kernel does not take.
    fn forward_tensors(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dims = xs.dims();
        let c = self.weight.len();
        if dims.len() < 2 || dims[1] != c {
            candle_core::bail!("GroupNorm over {c} channels of a {dims:?} tensor");
        }
        let b = dims[0];
        let n = xs.elem_count() / (b * self.groups);
        let x = xs
            .to_dtype(DType::F32)?
            .contiguous()?
            .reshape((b, self.groups, n))?;
        let mean = (sum_keepdim(&x, 2)? / n as f64)?;
        let x = x.broadcast_sub(&mean)?;
        let var = (sum_keepdim(&x.sqr()?, 2)? / n as f64)?;
        let x = x.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        let mut shape = vec![1, c];
        shape.resize(dims.len(), 1);
        let w = self
            .weight_t
            .reshape(shape.as_slice())?
            .to_dtype(xs.dtype())?;
        let bias = self
            .bias_t
            .reshape(shape.as_slice())?
            .to_dtype(xs.dtype())?;
        x.reshape(dims)?
            .to_dtype(xs.dtype())?
            .broadcast_mul(&w)?
            .broadcast_add(&bias)
    }
}

/// Sums of 16 values or fewer per output that candle's CUDA kernel gets wrong.
const SMALL_SUM: usize = 16;

/// `xs.sum_keepdim(dim)`, right on every device (see the module documentation): on the CPU
/// candle's; elsewhere, sums of [`SMALL_SUM`] values or fewer are added slice by slice.
pub fn sum_keepdim(xs: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    if matches!(xs.device(), Device::Cpu) || xs.dim(dim)? > SMALL_SUM {
        return xs.sum_keepdim(dim);
    }
    sum_by_slices(xs, dim)
}

fn sum_by_slices(xs: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let n = xs.dim(dim)?;
    if n == 0 {
        return xs.sum_keepdim(dim);
    }
    let mut acc = xs.narrow(dim, 0, 1)?.contiguous()?;
    for i in 1..n {
        acc = (acc + xs.narrow(dim, i, 1)?)?;
    }
    Ok(acc)
}

/// `Σ f(x)` in f64, over 8 f32 lanes per block of 4096 values (vectorizes; a block's
/// partial sums are small enough that f32 loses nothing that matters next to the f64 total).
fn sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(4096) {
        let mut lanes = [0f32; 8];
        let mut chunks = block.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += f(v);
            }
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
        total += chunks.remainder().iter().map(|&v| f(v) as f64).sum::<f64>();
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_equals_candles_bit_for_bit() {
        let dev = Device::Cpu;
        // Odd and even row counts (the pairs and the last single row), rows over one pool
        // block (64 Ki values), a 1-value dimension.
        for (rows, dim) in [(1, 5), (7, 96), (514, 1408), (3, 1)] {
            let mut seed = 7u32;
            let mut next = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 1.5
            };
            let x: Vec<f32> = (0..rows * dim).map(|_| next()).collect();
            let w: Vec<f32> = (0..dim).map(|_| next()).collect();
            let b: Vec<f32> = (0..dim).map(|_| next()).collect();
            let mut map = std::collections::HashMap::new();
            map.insert(
                "weight".to_string(),
                Tensor::new(w.as_slice(), &dev).unwrap(),
            );
            map.insert("bias".to_string(), Tensor::new(b.as_slice(), &dev).unwrap());
            let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
            let ours = LayerNorm::load(dim, 1e-6, vb.clone()).unwrap();
            let cfg = candle_nn::LayerNormConfig {
                eps: 1e-6,
                ..candle_nn::LayerNormConfig::default()
            };
            let theirs = candle_nn::layer_norm(dim, cfg, vb).unwrap();
            let xs = Tensor::from_vec(x, (1, rows, dim), &dev).unwrap();
            let bits = |t: Tensor| -> Vec<u32> {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.iter().map(|x| x.to_bits()).collect()
            };
            let got = ours.forward(&xs).unwrap();
            assert_eq!(got.dims(), xs.dims());
            assert_eq!(
                bits(got),
                bits(theirs.forward(&xs).unwrap()),
                "{rows} × {dim}"
            );
        }
    }

    #[test]
    fn sums_by_slices_equal_candles() {
        let xs = Tensor::randn(0f32, 1.0, (3, 5, 4), &Device::Cpu).unwrap();
        for dim in 0..3 {
            let want = xs.sum_keepdim(dim).unwrap();
            let got = sum_by_slices(&xs, dim).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        }
    }

    #[test]
    fn tensor_group_norm_equals_the_kernel() {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 2.0, (2, 8, 3, 5), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, 8, &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 8, &dev).unwrap();
        let gn = GroupNorm::new(w, b, 8, 4, 1e-5).unwrap();
        let kernel = gn.forward(&xs).unwrap();
        let tensors = gn.forward_tensors(&xs).unwrap();
        let diff = (kernel - tensors)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn matches_candle_group_norm_and_silu() {
        let dev = Device::Cpu;
        for &(b, c, groups, h, w) in &[(2, 32, 8, 9, 7), (1, 6, 3, 1, 1), (2, 64, 32, 20, 3)] {
            // An offset, so the variance is computed about a mean far from zero.
            let xs = (Tensor::randn(0f32, 2., (b, c, h, w), &dev).unwrap() + 3.0).unwrap();
            let weight = Tensor::randn(1f32, 0.5, c, &dev).unwrap();
            let bias = Tensor::randn(0f32, 0.5, c, &dev).unwrap();
            let ours = GroupNorm::new(weight.clone(), bias.clone(), c, groups, 1e-6).unwrap();
            let theirs = candle_nn::GroupNorm::new(weight, bias, c, groups, 1e-6).unwrap();
            let want = theirs.forward(&xs).unwrap();
            let got = ours.forward(&xs).unwrap();
            assert!(crate::sgemm::tests::max_abs_diff(&got, &want) < 1e-5);
            let want = candle_nn::ops::silu(&want).unwrap();
            let got = ours.forward_silu(&xs).unwrap();
            assert!(crate::sgemm::tests::max_abs_diff(&got, &want) < 1e-5);
            // Other dtypes take the tensor path (statistics in f32; candle's own GroupNorm
            // refuses f16 input against its f32 scale).
            let half = xs.to_dtype(DType::F16).unwrap();
            assert!(theirs.forward(&half).is_err());
            let got = ours.forward(&half).unwrap().to_dtype(DType::F32).unwrap();
            let want = theirs.forward(&xs).unwrap();
            assert!(crate::sgemm::tests::max_abs_diff(&got, &want) < 2e-2);
        }
        // Channels that do not split into the groups, or a scale of the wrong size: refused.
        let ones = |n: usize| Tensor::ones(n, DType::F32, &dev).unwrap();
        assert!(GroupNorm::new(ones(4), ones(4), 4, 3, 1e-5).is_err());
        assert!(GroupNorm::new(ones(4), ones(4), 4, 0, 1e-5).is_err());
        assert!(GroupNorm::new(ones(3), ones(4), 4, 2, 1e-5).is_err());
        // A channel count the norm was not made for is one error, not a panic.
        let ours = GroupNorm::new(
            Tensor::ones(4, DType::F32, &dev).unwrap(),
            Tensor::zeros(4, DType::F32, &dev).unwrap(),
            4,
            2,
            1e-5,
        )
        .unwrap();
        let xs = Tensor::zeros((1, 6, 2, 2), DType::F32, &dev).unwrap();
        assert!(ours.forward(&xs).is_err());
    }
}
