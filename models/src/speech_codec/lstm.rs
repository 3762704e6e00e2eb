//! `SLSTM` of `speech_tokenizer/modules/lstm.py`: a multi-layer `nn.LSTM` over the time
//! axis of a convolutional layout, with a skip connection (`y + x`, `x` repeated twice along
//! channels when bidirectional).
//!
//! Tensor names under the module prefix `P`: `P.lstm.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}`
//! and, when bidirectional, the same with a `_reverse` suffix. Gate order (PyTorch): i, f, g, o.
//!
//! Shapes: `(B, C, T)` → `(B, C, T)` (unidirectional) or `(B, 2C, T)` (bidirectional; the
//! SEANet encoder). The unidirectional one (SEANet decoder) also streams: [`SLSTM::step`]
//! carries `(h, c)` of every layer in an [`SLSTMState`].

use std::sync::Mutex;

use candle_core::{CpuStorage, Device, Storage, Tensor, D};
use candle_nn::VarBuilder;

use crate::activation::{exp_value, expm1_value};
use crate::{Error, Result};

/// `tanh(x) = (e²ˣ − 1) / (e²ˣ + 1)` through [`expm1_value`] (accurate near 0; ±1 at the
/// ends, where the exponential is clamped), branch-free so 8 lanes vectorize.
#[inline(always)]
fn tanh_value(x: f32) -> f32 {
    let e = expm1_value(2.0 * x);
    e / (e + 2.0)
}

/// `1 / (1 + e^{-x})` through [`exp_value`], branch-free.
#[inline(always)]
fn sigmoid_value(x: f32) -> f32 {
    1.0 / (1.0 + exp_value(-x))
}

/// The LSTM cell update of up to 8 units from their gate pre-activations `pre[gate][unit]`
/// (gates i, f, g, o): `c ← σ(f)·c + σ(i)·tanh(g)`, `h ← σ(o)·tanh(c)`, over 8 lanes at once
/// (libm's scalar `expf`/`tanhf` were a tenth of a real-size LSTM).
fn update_units(pre: &[[f32; 8]; 4], c: &mut [f32], h: &mut [f32]) {
    let mut cn = [0f32; 8];
    let n = c.len().min(8);
    cn[..n].copy_from_slice(&c[..n]);
    let mut hn = [0f32; 8];
    for u in 0..8 {
        let ig = sigmoid_value(pre[0][u]);
        let fg = sigmoid_value(pre[1][u]);
        let gg = tanh_value(pre[2][u]);
        let og = sigmoid_value(pre[3][u]);
        cn[u] = fg * cn[u] + ig * gg;
        hn[u] = og * tanh_value(cn[u]);
    }
    c[..n].copy_from_slice(&cn[..n]);
    for (h, v) in h.iter_mut().zip(hn) {
        *h = v;
    }
}

/// The dot products of four rows with `x` (the four gates of one hidden unit), each load
/// of `x` shared by the four rows; 8 lanes × 2 partial sums per row.
fn dot4(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    if rows.iter().all(|r| r.len() == x.len()) {
        // SAFETY: the four rows and `x` have the same length (checked), the features are
        // compiled in.
        #[allow(unsafe_code)]
        return unsafe { avx2::dot4(rows, x) };
    }
    dot4_portable(rows, x)
}

/// [`dot4`] in plain Rust (builds without AVX2/FMA, e.g. Apple silicon).
fn dot4_portable(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
    let mut acc = [[0f32; 8]; 4];
    let n = x.len() / 8 * 8;
    for (k, xs) in x[..n].chunks_exact(8).enumerate() {
        for (a, r) in acc.iter_mut().zip(&rows) {
            for ((a, &w), &v) in a.iter_mut().zip(&r[k * 8..k * 8 + 8]).zip(xs) {
                *a = w.mul_add(v, *a);
            }
        }
    }
    std::array::from_fn(|g| {
        let tail: f32 = rows[g][n..].iter().zip(&x[n..]).map(|(w, v)| w * v).sum();
        acc[g].iter().sum::<f32>() + tail
    })
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::activation::hsum_avx2 as hsum;

    /// [`super::dot4`] with AVX2/FMA.
    ///
    /// # Safety
    /// Every row has `x.len()` values.
    #[inline]
    pub unsafe fn dot4(rows: [&[f32]; 4], x: &[f32]) -> [f32; 4] {
        let n = x.len();
        let full = n / 16 * 16;
        // SAFETY: loads at `k < full ≤ n` (16 at a time) stay inside `x` and each row (all
        // `n` long: the contract).
        unsafe {
            let z = _mm256_setzero_ps();
            let mut lo = [z; 4];
            let mut hi = [z; 4];
            let px = x.as_ptr();
            let pr = rows.map(|r| r.as_ptr());
            let mut k = 0;
            while k < full {
                let x0 = _mm256_loadu_ps(px.add(k));
                let x1 = _mm256_loadu_ps(px.add(k + 8));
                for g in 0..4 {
                    lo[g] = _mm256_fmadd_ps(_mm256_loadu_ps(pr[g].add(k)), x0, lo[g]);
                    hi[g] = _mm256_fmadd_ps(_mm256_loadu_ps(pr[g].add(k + 8)), x1, hi[g]);
                }
                k += 16;
            }
            std::array::from_fn(|g| {
                let tail: f32 = rows[g][full..]
                    .iter()
                    .zip(&x[full..])
                    .map(|(w, v)| w * v)
                    .sum();
                hsum(_mm256_add_ps(lo[g], hi[g])) + tail
            })
        }
    }
}

/// One thread's share of a step: per batch row, its units' `c` and new `h`.
type UnitSlices<'a> = Vec<(&'a mut [f32], &'a mut [f32])>;

/// One direction of one LSTM layer.
#[derive(Debug, Clone)]
struct LstmCell {
    /// `(In, 4H)`.
    w_ih_t: Tensor,
    /// `(4H, H)`, as stored (rows: gates i, f, g, o).
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    hidden: usize,
}

impl LstmCell {
    fn new(in_dim: usize, hidden: usize, suffix: &str, vb: &VarBuilder) -> Result<Self> {
        let g = 4 * hidden;
        Ok(Self {
            w_ih_t: vb
                .get((g, in_dim), &format!("weight_ih_{suffix}"))?
                .t()?
                .contiguous()?,
            w_hh: vb
                .get((g, hidden), &format!("weight_hh_{suffix}"))?
                .contiguous()?,
            b_ih: vb.get(g, &format!("bias_ih_{suffix}"))?,
            b_hh: vb.get(g, &format!("bias_hh_{suffix}"))?,
            hidden,
        })
    }

    /// Runs over `xs` `(B, T, In)` (backwards when `reverse`) from `state` (zeros when
    /// `None`); returns `(B, T, H)` in time order and the final `(h, c)`.
    fn run(
        &self,
        xs: &Tensor,
        reverse: bool,
        state: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let proj = xs
            .broadcast_matmul(&self.w_ih_t)?
            .broadcast_add(&self.b_ih)?;
        if matches!(xs.device(), Device::Cpu) && xs.dtype() == candle_core::DType::F32 {
            return self.run_cpu(&proj, reverse, state);
        }
        self.run_tensors(&proj, reverse, state)
    }

    /// The recurrence over `proj = xs · W_ihᵀ + b_ih` `(B, T, 4H)` with tensor ops (any
    /// device and dtype).
    fn run_tensors(
        &self,
        proj: &Tensor,
        reverse: bool,
        state: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b_sz, seq_len, _) = proj.dims3()?;
        let (mut h, mut c) = match state {
            Some(s) => s,
            None => {
                let z = Tensor::zeros((b_sz, self.hidden), proj.dtype(), proj.device())?;
                (z.clone(), z)
            }
        };
        let mut outs = Vec::with_capacity(seq_len);
        for i in 0..seq_len {
            let t = if reverse { seq_len - 1 - i } else { i };
            let hh = h.matmul(&self.w_hh.t()?)?.broadcast_add(&self.b_hh)?;
            let gates = (proj.narrow(1, t, 1)?.squeeze(1)? + hh)?;
            let chunk = |k: usize| gates.narrow(D::Minus1, k * self.hidden, self.hidden);
            let ig = candle_nn::ops::sigmoid(&chunk(0)?)?;
            let fg = candle_nn::ops::sigmoid(&chunk(1)?)?;
            let gg = chunk(2)?.tanh()?;
            let og = candle_nn::ops::sigmoid(&chunk(3)?)?;
            c = ((fg * &c)? + (ig * gg)?)?;
            h = (og * c.tanh()?)?;
            outs.push(h.clone());
        }
        if reverse {
            outs.reverse();
        }
        Ok((Tensor::stack(&outs, 1)?, (h, c)))
    }

    /// [`LstmCell::run`] for f32 on the CPU: one call of candle's CPU pool per time step,
    /// in which each thread owns a range of hidden units and does everything for them —
    /// the four gate rows' dot products with `h` (sharing each load of `h`), the gates, and
    /// the new `c` and `h` of its units. The only synchronisation is the end of the step
    /// (every thread reads all of the previous `h`, so the new one goes to a second buffer).
    /// The recurrent weight (16 MiB per direction at the real size) does not fit a core's
    /// L2, so a step is bound by how fast it streams from L3: one pass per step, no other
    /// work serialised between passes. Same formulas and order of the element-wise steps
    /// as the tensor path (`proj + (W_hh·h + b_hh)`, then sigmoid/tanh).
    fn run_cpu(
        &self,
        proj: &Tensor,
        reverse: bool,
        state: Option<(Tensor, Tensor)>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b_sz, seq_len, g4) = proj.dims3()?;
        let hd = self.hidden;
        let proj = proj.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let b_hh = self
            .b_hh
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        let (mut h, mut c) = match state {
            Some((h, c)) => (
                h.flatten_all()?.to_vec1::<f32>()?,
                c.flatten_all()?.to_vec1::<f32>()?,
            ),
            None => (vec![0f32; b_sz * hd], vec![0f32; b_sz * hd]),
        };
        if g4 != 4 * hd || h.len() != b_sz * hd || c.len() != b_sz * hd || b_hh.len() != g4 {
            return Err(Error::InvalidArgument(format!(
                "LSTM state of {} values for a batch of {b_sz} and hidden size {hd}",
                h.len()
            )));
        }
        let (w_store, w_layout) = self.w_hh.storage_and_layout();
        let w = match (&*w_store, w_layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) if b - a == g4 * hd => &v[a..b],
            _ => {
                return Err(Error::InvalidArgument(
                    "LSTM weights are not f32 on the CPU".into(),
                ))
            }
        };
        let pool = candle_core::utils::barrier_pool();
        let threads = (pool.n_workers() + 1).min(hd.div_ceil(8)).max(1);
        // Units per thread, a multiple of 8 so threads do not share cache lines of `h`/`c`.
        let units_per = hd.div_ceil(threads).div_ceil(8) * 8;
        let mut out = vec![0f32; b_sz * seq_len * hd];
        let mut next = vec![0f32; b_sz * hd];
        for i in 0..seq_len {
            let t = if reverse { seq_len - 1 - i } else { i };
            {
                // Per thread: its units' `c` (updated in place) and new `h`, for every batch row.
                let mut parts: Vec<UnitSlices> =
                    (0..threads).map(|_| Vec::with_capacity(b_sz)).collect();
                for (cb, nb) in c.chunks_mut(hd).zip(next.chunks_mut(hd)) {
                    for (part, (cu, nu)) in parts
                        .iter_mut()
                        .zip(cb.chunks_mut(units_per).zip(nb.chunks_mut(units_per)))
                    {
                        part.push((cu, nu));
                    }
                }
                let parts: Vec<Mutex<UnitSlices>> = parts.into_iter().map(Mutex::new).collect();
                let (h, proj, b_hh) = (&h, &proj, &b_hh);
                pool.execute(|tid| {
                    let Some(part) = parts.get(tid) else { return };
                    let mut part = part.lock().unwrap_or_else(|e| e.into_inner());
                    let j0 = tid * units_per;
                    for (b, (cu, nu)) in part.iter_mut().enumerate() {
                        let hb = &h[b * hd..(b + 1) * hd];
                        let p = &proj[(b * seq_len + t) * g4..(b * seq_len + t + 1) * g4];
                        for (k, (cs, ns)) in cu.chunks_mut(8).zip(nu.chunks_mut(8)).enumerate() {
                            let mut pre = [[0f32; 8]; 4];
                            for u in 0..cs.len() {
                                let j = j0 + k * 8 + u;
                                let row = |g: usize| &w[(g * hd + j) * hd..(g * hd + j + 1) * hd];
                                let d = dot4([row(0), row(1), row(2), row(3)], hb);
                                for (g, pre) in pre.iter_mut().enumerate() {
                                    pre[u] = p[g * hd + j] + (d[g] + b_hh[g * hd + j]);
                                }
                            }
                            update_units(&pre, cs, ns);
                        }
                    }
                });
            }
            std::mem::swap(&mut h, &mut next);
            for b in 0..b_sz {
                out[(b * seq_len + t) * hd..(b * seq_len + t + 1) * hd]
                    .copy_from_slice(&h[b * hd..(b + 1) * hd]);
            }
        }
        let dev = Device::Cpu;
        Ok((
            Tensor::from_vec(out, (b_sz, seq_len, hd), &dev)?,
            (
                Tensor::from_vec(h, (b_sz, hd), &dev)?,
                Tensor::from_vec(c, (b_sz, hd), &dev)?,
            ),
        ))
    }
}

/// `SLSTM(dimension, num_layers, skip=True, bidirectional)`.
#[derive(Debug, Clone)]
pub struct SLSTM {
    /// Per layer: forward cell, and the reverse cell when bidirectional.
    layers: Vec<(LstmCell, Option<LstmCell>)>,
}

/// Streaming state of a unidirectional [`SLSTM`]: `(h, c)` per layer.
#[derive(Debug, Clone, Default)]
pub struct SLSTMState {
    hc: Vec<Option<(Tensor, Tensor)>>,
}

impl SLSTMState {
    /// Back to zero state.
    pub fn reset(&mut self) {
        self.hc.clear();
    }
}

impl SLSTM {
    /// Loads `vb.lstm.*` for `num_layers` layers of width `dim`.
    pub fn new(dim: usize, num_layers: usize, bidirectional: bool, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("lstm");
        let dirs = if bidirectional { 2 } else { 1 };
        let layers = (0..num_layers)
            .map(|l| {
                let in_dim = if l == 0 { dim } else { dim * dirs };
                let fwd = LstmCell::new(in_dim, dim, &format!("l{l}"), &vb)?;
                let rev = bidirectional
                    .then(|| LstmCell::new(in_dim, dim, &format!("l{l}_reverse"), &vb))
                    .transpose()?;
                Ok((fwd, rev))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn bidirectional(&self) -> bool {
        self.layers.iter().any(|(_, r)| r.is_some())
    }

    /// Whole sequence `(B, C, T)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if !self.bidirectional() {
            return self.step(&mut SLSTMState::default(), xs);
        }
        let input = xs.transpose(1, 2)?.contiguous()?;
        let mut ys = input.clone();
        for (fwd, rev) in &self.layers {
            let (f, _) = fwd.run(&ys, false, None)?;
            ys = match rev {
                Some(rev) => Tensor::cat(&[&f, &rev.run(&ys, true, None)?.0], D::Minus1)?,
                None => f,
            };
        }
        let skip = Tensor::cat(&[&input, &input], D::Minus1)?;
        Ok((ys + skip)?.transpose(1, 2)?.contiguous()?)
    }

    /// One chunk `(B, C, n)` of a stream (unidirectional only), continuing from `state`.
    pub fn step(&self, state: &mut SLSTMState, xs: &Tensor) -> Result<Tensor> {
        if self.bidirectional() {
            return Err(Error::Unsupported(
                "streaming a bidirectional LSTM (the SEANet encoder's)".into(),
            ));
        }
        state.hc.resize(self.layers.len(), None);
        let input = xs.transpose(1, 2)?.contiguous()?;
        let mut ys = input.clone();
        for ((cell, _), hc) in self.layers.iter().zip(state.hc.iter_mut()) {
            let (out, last) = cell.run(&ys, false, hc.take())?;
            *hc = Some(last);
            ys = out;
        }
        Ok((ys + input)?.transpose(1, 2)?.contiguous()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::DType;
    use std::collections::HashMap;

    #[test]
    fn both_dot_products_match_a_double_precision_sum() {
        // 37 values: two 16-wide steps, one 8-wide step of the portable loop, and tails.
        let x: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let rows: Vec<Vec<f32>> = (0..4)
            .map(|g| {
                (0..37)
                    .map(|i| ((i * 7 + g * 3) as f32 * 0.11).cos())
                    .collect()
            })
            .collect();
        let refs = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
        let exact: Vec<f64> = rows
            .iter()
            .map(|r| r.iter().zip(&x).map(|(&w, &v)| w as f64 * v as f64).sum())
            .collect();
        for got in [dot4(refs, &x), dot4_portable(refs, &x)] {
            for (g, e) in got.iter().zip(&exact) {
                assert!((*g as f64 - e).abs() < 1e-5, "{got:?} vs {exact:?}");
            }
        }
    }

    #[test]
    fn vectorizable_gates_match_libm() {
        let mut worst = [0f32; 2];
        for i in -40_000..=40_000 {
            let x = i as f32 * 1e-3;
            worst[0] = worst[0].max((tanh_value(x) - x.tanh()).abs());
            worst[1] = worst[1].max((sigmoid_value(x) - 1.0 / (1.0 + (-x).exp())).abs());
        }
        assert!(worst[0] < 3e-7 && worst[1] < 3e-7, "{worst:?}");
        for x in [-1e30f32, -200.0, 200.0, 1e30] {
            assert_eq!(tanh_value(x), x.signum());
            assert!(sigmoid_value(x).is_finite());
        }
        assert_eq!(tanh_value(0.0), 0.0);
        assert!((tanh_value(1e-6) - 1e-6).abs() < 1e-12);
    }

    #[test]
    fn the_cpu_loop_matches_the_tensor_ops() {
        let dev = Device::Cpu;
        // 37 units: a partial block of 8 and a dot product with a tail past its 16-wide steps.
        let (in_dim, hd) = (24, 37);
        let mut ts = HashMap::new();
        ts.insert(
            "weight_ih_l0".to_string(),
            Tensor::randn(0f32, 0.3, (4 * hd, in_dim), &dev).unwrap(),
        );
        ts.insert(
            "weight_hh_l0".to_string(),
            Tensor::randn(0f32, 0.3, (4 * hd, hd), &dev).unwrap(),
        );
        ts.insert(
            "bias_ih_l0".to_string(),
            Tensor::randn(0f32, 0.3, 4 * hd, &dev).unwrap(),
        );
        ts.insert(
            "bias_hh_l0".to_string(),
            Tensor::randn(0f32, 0.3, 4 * hd, &dev).unwrap(),
        );
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let cell = LstmCell::new(in_dim, hd, "l0", &vb).unwrap();
        let xs = Tensor::randn(0f32, 1., (2, 7, in_dim), &dev).unwrap();
        let proj = xs
            .broadcast_matmul(&cell.w_ih_t)
            .unwrap()
            .broadcast_add(&cell.b_ih)
            .unwrap();
        let h0 = Tensor::randn(0f32, 0.5, (2, hd), &dev).unwrap();
        let c0 = Tensor::randn(0f32, 0.5, (2, hd), &dev).unwrap();
        let max_diff = crate::sgemm::tests::max_abs_diff;
        for reverse in [false, true] {
            for state in [None, Some((h0.clone(), c0.clone()))] {
                let (ya, (ha, ca)) = cell.run_cpu(&proj, reverse, state.clone()).unwrap();
                let (yb, (hb, cb)) = cell.run_tensors(&proj, reverse, state).unwrap();
                assert_eq!(ya.dims(), &[2, 7, hd]);
                assert!(max_diff(&ya, &yb) < 1e-5);
                assert!(max_diff(&ha, &hb) < 1e-5);
                assert!(max_diff(&ca, &cb) < 1e-5);
            }
        }
        // Through `run`: the dispatch on the CPU takes the loop.
        let (y, _) = cell.run(&xs, false, None).unwrap();
        let (yb, _) = cell.run_tensors(&proj, false, None).unwrap();
        assert!(max_diff(&y, &yb) < 1e-5);
    }
}
