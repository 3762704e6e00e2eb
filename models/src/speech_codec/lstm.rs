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

use crate::{Error, Result};

/// `1 / (1 + e^{-x})`, as candle's `sigmoid`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A dot product in 32 independent lanes (vectorised by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

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

    /// [`LstmCell::run`] for f32 on the CPU, one fused loop per step instead of a dozen
    /// tensor ops: the recurrent product `W_hh · h` as row dot products over candle's CPU
    /// pool (candle's `h · W_hhᵀ` with one row runs as a column-major GEMV that rewrites its
    /// output once per input element), then the gates in place. Same formulas and order of
    /// the element-wise steps as the tensor path.
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
        if g4 != 4 * hd || h.len() != b_sz * hd || c.len() != b_sz * hd {
            return Err(Error::InvalidArgument(format!(
                "LSTM state of {} values for a batch of {b_sz} and hidden size {hd}",
                h.len()
            )));
        }
        let (w_store, w_layout) = self.w_hh.storage_and_layout();
        let w = match (&*w_store, w_layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
            _ => {
                return Err(Error::InvalidArgument(
                    "LSTM weights are not f32 on the CPU".into(),
                ))
            }
        };
        let pool = candle_core::utils::barrier_pool();
        let threads = pool.n_workers() + 1;
        let rows_per = g4.div_ceil(threads).max(1);
        let mut out = vec![0f32; b_sz * seq_len * hd];
        let mut gates = vec![0f32; g4];
        for b in 0..b_sz {
            let (hb, cb) = (&mut h[b * hd..(b + 1) * hd], &mut c[b * hd..(b + 1) * hd]);
            for i in 0..seq_len {
                let t = if reverse { seq_len - 1 - i } else { i };
                {
                    let chunks: Vec<Mutex<&mut [f32]>> =
                        gates.chunks_mut(rows_per).map(Mutex::new).collect();
                    let hb: &[f32] = hb;
                    pool.execute(|tid| {
                        let Some(chunk) = chunks.get(tid) else { return };
                        let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
                        let r0 = tid * rows_per;
                        for (r, g) in chunk.iter_mut().enumerate() {
                            let row = r0 + r;
                            *g = dot(&w[row * hd..(row + 1) * hd], hb);
                        }
                    });
                }
                let p = &proj[(b * seq_len + t) * g4..(b * seq_len + t + 1) * g4];
                for ((g, &pv), &bv) in gates.iter_mut().zip(p).zip(&b_hh) {
                    *g = pv + (*g + bv);
                }
                for j in 0..hd {
                    let ig = sigmoid(gates[j]);
                    let fg = sigmoid(gates[hd + j]);
                    let gg = gates[2 * hd + j].tanh();
                    let og = sigmoid(gates[3 * hd + j]);
                    cb[j] = fg * cb[j] + ig * gg;
                    hb[j] = og * cb[j].tanh();
                }
                out[(b * seq_len + t) * hd..(b * seq_len + t + 1) * hd].copy_from_slice(hb);
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
    fn the_cpu_loop_matches_the_tensor_ops() {
        let dev = Device::Cpu;
        let (in_dim, hd) = (24, 40);
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
