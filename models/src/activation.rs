//! The exact (erf) GELU computed the way PyTorch's CPU kernel computes it, in a form the
//! compiler vectorizes, and GEGLU fused into one pass.
//!
//! candle's `gelu_erf` calls libm's scalar `erff` per value: `perf` put it at 3 % of a
//! real-size EVA ViT-g forward. PyTorch's vectorized CPU GELU evaluates `erf` with
//! Abramowitz and Stegun's formula 7.1.26 (absolute error below 1.5e-7) over its own `exp`;
//! [`gelu_erf_value`] does the same with a Cephes-style `exp` (about 1 ulp), so both agree
//! with the exact function to about 1e-7 and with each other as closely. [`geglu`] computes
//! diffusers' `GEGLU` (`hidden · gelu(gate)` over the two halves of a projection) in one
//! pass instead of two slices, a GELU and a product.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, D};

/// `e^x` for f32 (Cephes `expf`: `2^n · p(r)`, `r = x − n·ln 2`), clamped to f32's range.
#[inline(always)]
pub fn exp_value(x: f32) -> f32 {
    // The integer is read from the float's bits instead of `as i32` (which saturates lane by
    // lane): that keeps the loop free of branches, so it vectorizes.
    let x = x.clamp(-87.3, 88.7);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let p = 1.987_569_1e-4f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // `n` is an integer in -126..=128: adding 1.5 · 2²³ puts it in the low mantissa bits.
    // 2^128 is not a normal float, so the power is applied in two halves.
    let n = ((n + 12_582_912.0).to_bits() as i32).wrapping_sub(0x4B40_0000);
    let half = n >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((n - half + 127) as u32) << 23);
    y * s1 * s2
}

/// [`exp_value`] of 8 lanes with AVX2/FMA, written out: the same operations in the same
/// order, so the results are bit-for-bit equal (tested below), but free of the shuffles
/// the compiler's own vectorization of an 8-wide loop around [`exp_value`] produced (the
/// attention's softmax ran at 2 ns per value that way).
///
/// # Safety
/// The CPU has AVX2 and FMA (this build's target features guarantee it).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_code)]
#[inline(always)]
pub unsafe fn exp_avx2(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: register-only intrinsics of features this build targets.
    unsafe {
        let c = _mm256_set1_ps;
        let x = _mm256_min_ps(_mm256_max_ps(x, c(-87.3)), c(88.7));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(x, c(std::f32::consts::LOG2_E), c(0.5)));
        let r = _mm256_fmadd_ps(n, c(-0.693_359_4), x);
        let r = _mm256_fmadd_ps(n, c(2.121_944_4e-4), r);
        let p = _mm256_fmadd_ps(c(1.987_569_1e-4), r, c(1.398_199_9e-3));
        let p = _mm256_fmadd_ps(p, r, c(8.333_452e-3));
        let p = _mm256_fmadd_ps(p, r, c(4.166_579_6e-2));
        let p = _mm256_fmadd_ps(p, r, c(1.666_666_5e-1));
        let p = _mm256_fmadd_ps(p, r, c(0.5));
        let y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), c(1.0));
        let n = _mm256_cvtps_epi32(n);
        let half = _mm256_srai_epi32(n, 1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_slli_epi32(_mm256_add_epi32(half, bias), 23);
        let s2 = _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(n, half), bias), 23);
        _mm256_mul_ps(
            _mm256_mul_ps(y, _mm256_castsi256_ps(s1)),
            _mm256_castsi256_ps(s2),
        )
    }
}

/// The sum of the 8 lanes of `v` (AVX).
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_code)]
#[inline(always)]
pub fn hsum_avx2(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: register-only intrinsics of features this build targets.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// `eˣ − 1` for f32, without the cancellation of `exp(x) − 1` near 0: a Taylor polynomial
/// to `x⁸` where `|x| < 0.35` (remainder below 3e-9 relative), [`exp_value`] − 1 elsewhere;
/// both are computed and one is selected, so loops over it vectorize (libm's scalar
/// `expm1f` was 7 % of a SpeechTokenizer encode).
#[inline(always)]
pub fn expm1_value(x: f32) -> f32 {
    let mut p = 1.0 / 40320.0f32;
    for c in [5040.0f32, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0] {
        p = p.mul_add(x, 1.0 / c);
    }
    let small = p * x;
    let large = exp_value(x) - 1.0;
    if x.abs() < 0.35 {
        small
    } else {
        large
    }
}

/// `erf(x)` by Abramowitz and Stegun 7.1.26 (what PyTorch's vectorized CPU `erf` uses).
#[inline(always)]
pub fn erf_value(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / a.mul_add(0.327_591_1, 1.0);
    let poly = 1.061_405_4f32;
    let poly = poly.mul_add(t, -1.453_152);
    let poly = poly.mul_add(t, 1.421_413_7);
    let poly = poly.mul_add(t, -0.284_496_74);
    let poly = poly.mul_add(t, 0.254_829_6);
    let r = 1.0 - poly * t * exp_value(-a * a);
    r.copysign(x)
}

/// The exact GELU, `x · (1 + erf(x / √2)) / 2`.
#[inline(always)]
pub fn gelu_erf_value(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_value(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn on_cpu_f32(xs: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu) && xs.dtype() == DType::F32
}

/// The exact GELU of a tensor (the formula above for f32 on the CPU, candle's elsewhere).
pub fn gelu_erf(xs: &Tensor) -> candle_core::Result<Tensor> {
    if !on_cpu_f32(xs) || xs.rank() == 0 {
        return xs.gelu_erf();
    }
    xs.contiguous()?.apply_op1_no_bwd(&Geglu { gated: false })
}

/// diffusers' `GEGLU` after its projection: the last dimension is split in halves
/// `(hidden, gate)` and the result is `hidden · gelu(gate)`.
pub fn geglu(proj: &Tensor) -> candle_core::Result<Tensor> {
    let last = proj.dim(D::Minus1)?;
    if last % 2 != 0 {
        candle_core::bail!("GEGLU needs an even last dimension, not {last}");
    }
    if !on_cpu_f32(proj) {
        let half = last / 2;
        return proj.narrow(D::Minus1, 0, half)?
            * proj.narrow(D::Minus1, half, half)?.gelu_erf()?;
    }
    proj.contiguous()?.apply_op1_no_bwd(&Geglu { gated: true })
}

struct Geglu {
    gated: bool,
}

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "mio-gelu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let last = layout.dims().last().copied().unwrap_or(1);
        let xs = crate::lm::qgemv::input_rows(self.name(), storage, layout, last)?;
        if !self.gated {
            return Ok(map_values(xs, layout, gelu_erf_value));
        }
        let mut dims = layout.dims().to_vec();
        let Some(last) = dims.last_mut() else {
            candle_core::bail!("mio-gelu: GEGLU of a scalar");
        };
        let half = *last / 2;
        *last = half;
        let mut out = vec![0f32; xs.len() / 2];
        if half > 0 {
            par_rows((xs, 2 * half), (&mut out, half), |src, dst| {
                for (row, o) in src.chunks_exact(2 * half).zip(dst.chunks_exact_mut(half)) {
                    let (hidden, gate) = row.split_at(half);
                    for ((o, &h), &g) in o.iter_mut().zip(hidden).zip(gate) {
                        *o = h * gelu_erf_value(g);
                    }
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// ELU (α = 1) of one value, as [`elu`] computes it.
#[inline(always)]
pub fn elu_value(x: f32) -> f32 {
    if x.is_sign_positive() {
        x
    } else {
        expm1_value(x)
    }
}

/// ELU with `alpha = 1` (`nn.ELU()`): `x` for `x ≥ 0`, `e^x − 1` below (as `expm1`, like
/// PyTorch's kernel), in parallel over candle's pool for f32 on the CPU (candle's `elu`,
/// one thread and `exp(x) − 1`, elsewhere).
pub fn elu(xs: &Tensor) -> candle_core::Result<Tensor> {
    if !on_cpu_f32(xs) || xs.rank() == 0 {
        return xs.elu(1.0);
    }
    xs.contiguous()?.apply_op1_no_bwd(&Elu)
}

struct Elu;

impl CustomOp1 for Elu {
    fn name(&self) -> &'static str {
        "mio-elu"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let last = layout.dims().last().copied().unwrap_or(1);
        let xs = crate::lm::qgemv::input_rows(self.name(), storage, layout, last)?;
        Ok(map_values(xs, layout, elu_value))
    }
}

/// `f` of every value, on candle's pool, as a storage of the layout's shape.
fn map_values(xs: &[f32], layout: &Layout, f: impl Fn(f32) -> f32 + Sync) -> (CpuStorage, Shape) {
    // Written once, not zeroed first (a `memset` of the whole output on the calling thread
    // while the pool waited, at a SEED forward's GELU 12 MB per block).
    let mut out = Vec::<f32>::with_capacity(xs.len());
    par_rows((xs, 1), (out.spare_capacity_mut(), 1), |src, dst| {
        for (d, &x) in dst.iter_mut().zip(src) {
            d.write(f(x));
        }
    });
    // SAFETY: `par_rows` ran the closure on every one of the `xs.len()` rows of one value
    // (the spare capacity holds at least that many), which wrote each of them.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(xs.len())
    };
    (CpuStorage::F32(out), layout.shape().clone())
}

/// Runs `f(input rows, output rows)` over blocks of whole rows (`rows_in` input values and
/// `rows_out` output values per row; about 64 Ki values per block) on candle's pool. Every
/// row of `x` is passed to `f` exactly once when `out` has room for all of them (nothing
/// runs otherwise); `out` may be uninitialised (`MaybeUninit`) for an `f` that writes all
/// of its output rows.
pub(crate) fn par_rows<T: Send>(
    (x, row_in): (&[f32], usize),
    (out, row_out): (&mut [T], usize),
    f: impl Fn(&[f32], &mut [T]) + Sync,
) {
    let rows = x.len() / row_in.max(1);
    if rows == 0 || out.len() < rows * row_out {
        return;
    }
    let per_block = ((1usize << 16) / row_in.max(1)).max(1);
    let blocks = rows.div_ceil(per_block);
    if blocks == 1 {
        f(x, out);
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out_at = crate::cpu_conv::SendPtr(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute(|_| loop {
        let blk = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if blk >= blocks {
            break;
        }
        let (r0, n) = (blk * per_block, per_block.min(rows - blk * per_block));
        // SAFETY: block `blk` alone writes output rows `r0 .. r0+n`, inside `out` (checked
        // to hold `rows · row_out` values).
        #[allow(unsafe_code)]
        let dst =
            unsafe { std::slice::from_raw_parts_mut(out_at.get().add(r0 * row_out), n * row_out) };
        f(&x[r0 * row_in..(r0 + n) * row_in], dst);
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_the_exact_functions() {
        for i in -20000..=20000 {
            let x = i as f32 / 1000.0;
            let e = exp_value(x);
            let want = (x as f64).exp();
            assert!(
                ((e as f64 - want) / want).abs() < 3e-7,
                "exp({x}) = {e}, want {want}"
            );
            // The formula's own error (1.5e-7) plus f32 rounding of `1 − y·e^(−x²)` (one
            // ulp of 1 is 1.2e-7) and of the polynomial.
            let erf = erf_value(x);
            let want = libm::erf(x as f64);
            assert!(
                (erf as f64 - want).abs() < 5e-7,
                "erf({x}) = {erf}, want {want}"
            );
        }
        assert_eq!(exp_value(-200.0), exp_value(-87.3));
        for i in -20000..=5000 {
            let x = i as f32 / 1000.0;
            let (got, want) = (expm1_value(x) as f64, libm::expm1(x as f64));
            // Relative accuracy near 0 (the point of expm1); past the polynomial's range the
            // `− 1` costs up to one ulp of 1.
            let tol = 3e-7 * want.abs() + if x.abs() < 0.35 { 0.0 } else { 1.2e-7 };
            assert!((got - want).abs() <= tol, "expm1({x}) = {got}, want {want}");
        }
        // The AVX2 form gives the same bits, clamps included.
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx2",
            target_feature = "fma"
        ))]
        #[allow(unsafe_code)]
        for i in -2600..=2600 {
            let xs: [f32; 8] = std::array::from_fn(|l| (i * 8 + l as i32) as f32 / 97.0);
            let mut got = [0f32; 8];
            // SAFETY: this build targets AVX2/FMA; 8-float arrays.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(got.as_mut_ptr(), exp_avx2(_mm256_loadu_ps(xs.as_ptr())));
            }
            for (x, g) in xs.iter().zip(got) {
                assert_eq!(g.to_bits(), exp_value(*x).to_bits(), "exp({x})");
            }
        }
        assert!(exp_value(200.0).is_finite());
        assert_eq!(erf_value(40.0), 1.0);
        assert_eq!(erf_value(-40.0), -1.0);
    }

    #[test]
    fn gelu_and_geglu_match_candles_exact_gelu() {
        let dev = Device::Cpu;
        let xs: Vec<f32> = (0..4 * 6).map(|i| (i as f32 - 11.5) * 0.7).collect();
        let x = Tensor::from_vec(xs, (4, 6), &dev).unwrap();
        let diff = crate::sgemm::tests::max_abs_diff;
        assert!(diff(&gelu_erf(&x).unwrap(), &x.gelu_erf().unwrap()) < 2e-6);
        let want =
            (x.narrow(1, 0, 3).unwrap() * x.narrow(1, 3, 3).unwrap().gelu_erf().unwrap()).unwrap();
        let got = geglu(&x).unwrap();
        assert_eq!(got.dims(), &[4, 3]);
        assert!(diff(&got, &want) < 2e-5);
        assert!(geglu(&x.narrow(1, 0, 5).unwrap()).is_err());
        let scalar = Tensor::new(0.7f32, &dev).unwrap();
        let got = gelu_erf(&scalar).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - scalar.gelu_erf().unwrap().to_scalar::<f32>().unwrap()).abs() < 1e-6);
        // Large enough to be split over the pool in several blocks (odd row sizes).
        let big = Tensor::randn(0f32, 3.0, (301, 1234), &dev).unwrap();
        assert!(diff(&gelu_erf(&big).unwrap(), &big.gelu_erf().unwrap()) < 2e-6);
        let want = (big.narrow(1, 0, 617).unwrap()
            * big.narrow(1, 617, 617).unwrap().gelu_erf().unwrap())
        .unwrap();
        assert!(diff(&geglu(&big).unwrap(), &want) < 1e-4);
    }

    #[test]
    fn elu_matches_candle() {
        let dev = Device::Cpu;
        for shape in [(1, 5, 7), (2, 64, 1601)] {
            let x = Tensor::randn(0f32, 3.0, shape, &dev).unwrap();
            let got = elu(&x).unwrap();
            assert_eq!(got.dims(), x.dims());
            assert!(crate::sgemm::tests::max_abs_diff(&got, &x.elu(1.0).unwrap()) < 1e-6);
            // A strided view is made contiguous first.
            let t = x.transpose(1, 2).unwrap();
            let want = t.elu(1.0).unwrap();
            assert!(crate::sgemm::tests::max_abs_diff(&elu(&t).unwrap(), &want) < 1e-6);
        }
    }

    #[test]
    fn every_value_of_a_mapped_output_is_written() {
        // Outputs are not zeroed before the pool writes them: over several of its blocks
        // (64 Ki values each) and a partial one, each value is exactly the scalar function.
        let n = 3 * (1 << 16) + 12_345;
        let x = Tensor::randn(0f32, 2.0, n, &Device::Cpu).unwrap();
        let xs = x.to_vec1::<f32>().unwrap();
        for (got, f) in [
            (elu(&x).unwrap(), elu_value as fn(f32) -> f32),
            (gelu_erf(&x).unwrap(), gelu_erf_value),
        ] {
            let got = got.to_vec1::<f32>().unwrap();
            assert_eq!(got.len(), n);
            assert!(got
                .iter()
                .zip(&xs)
                .all(|(g, &v)| g.to_bits() == f(v).to_bits()));
        }
    }
}
