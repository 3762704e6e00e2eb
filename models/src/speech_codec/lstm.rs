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

use candle_core::{Tensor, D};
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// One direction of one LSTM layer.
#[derive(Debug, Clone)]
struct LstmCell {
    /// `(In, 4H)`.
    w_ih_t: Tensor,
    /// `(H, 4H)`.
    w_hh_t: Tensor,
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
            w_hh_t: vb
                .get((g, hidden), &format!("weight_hh_{suffix}"))?
                .t()?
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
        let (b_sz, seq_len, _) = xs.dims3()?;
        let proj = xs
            .broadcast_matmul(&self.w_ih_t)?
            .broadcast_add(&self.b_ih)?;
        let (mut h, mut c) = match state {
            Some(s) => s,
            None => {
                let z = Tensor::zeros((b_sz, self.hidden), xs.dtype(), xs.device())?;
                (z.clone(), z)
            }
        };
        let mut outs = Vec::with_capacity(seq_len);
        for i in 0..seq_len {
            let t = if reverse { seq_len - 1 - i } else { i };
            let hh = h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?;
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
