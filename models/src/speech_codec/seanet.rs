//! SEANet encoder and decoder of `speech_tokenizer/modules/seanet.py` (`SEANetResnetBlock`,
//! `SEANetEncoder`, `SEANetDecoder`), with ELU activations, weight-normed reflect-padded
//! convolutions, `true_skip=False` (a 1×1 convolution shortcut), `compress=2`.
//!
//! Tensor prefixes: `encoder.model.{i}` / `decoder.model.{i}` with the `nn.Sequential`
//! indices of upstream (activations take an index and hold no tensor); a residual block holds
//! `block.1`, `block.3` and `shortcut`.
//!
//! Shapes: encoder `(B, 1, T)` → `(B, dimension, ⌈T / hop⌉)`; decoder `(B, dimension, F)` →
//! `(B, 1, F · hop)` (hop = ∏ ratios). The decoder also streams ([`SEANetDecoder::step`] +
//! [`SEANetDecoder::finish`] with a [`SEANetDecoderState`]): equal to `forward` on the
//! concatenated chunks (its LSTM is unidirectional; every convolution waits for its right
//! context, so the output lags the input by a few samples until `finish`).

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::config::Config;
use super::conv::{
    elu, SConv1d, SConv1dState, SConv1x1Pair, SConvTranspose1d, SConvTranspose1dState,
};
use super::lstm::{SLSTMState, SLSTM};
use super::stream::{cat_opt, SumJoin};
use crate::Result;

/// One entry of a SEANet `nn.Sequential`.
#[derive(Debug, Clone)]
enum Layer {
    Elu,
    Conv(SConv1d),
    ConvTr(SConvTranspose1d),
    Res(Box<SEANetResnetBlock>),
    Lstm(SLSTM),
}

/// Streaming state of one [`Layer`].
#[derive(Debug, Clone)]
enum LayerState {
    Stateless,
    Conv(SConv1dState),
    ConvTr(SConvTranspose1dState),
    Res(Box<ResnetBlockState>),
    Lstm(SLSTMState),
}

impl Layer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Elu => elu(xs),
            Layer::Conv(c) => Ok(c.forward(xs)?),
            Layer::ConvTr(c) => Ok(c.forward(xs)?),
            Layer::Res(r) => r.forward(xs),
            Layer::Lstm(l) => l.forward(xs),
        }
    }

    fn new_state(&self) -> LayerState {
        match self {
            Layer::Elu => LayerState::Stateless,
            Layer::Conv(_) => LayerState::Conv(SConv1dState::default()),
            Layer::ConvTr(_) => LayerState::ConvTr(SConvTranspose1dState::default()),
            Layer::Res(r) => LayerState::Res(Box::new(r.new_state())),
            Layer::Lstm(_) => LayerState::Lstm(SLSTMState::default()),
        }
    }

    fn step(&self, st: &mut LayerState, xs: &Tensor) -> Result<Option<Tensor>> {
        match (self, st) {
            (Layer::Elu, _) => Ok(Some(elu(xs)?)),
            (Layer::Conv(c), LayerState::Conv(s)) => c.step(s, xs),
            (Layer::ConvTr(c), LayerState::ConvTr(s)) => c.step(s, xs),
            (Layer::Res(r), LayerState::Res(s)) => r.step(s, Some(xs.clone())),
            (Layer::Lstm(l), LayerState::Lstm(s)) => Ok(Some(l.step(s, xs)?)),
            _ => Err(state_mismatch()),
        }
    }

    fn finish(&self, st: &mut LayerState) -> Result<Option<Tensor>> {
        match (self, st) {
            (Layer::Elu, _) => Ok(None),
            (Layer::Conv(c), LayerState::Conv(s)) => c.finish(s),
            (Layer::ConvTr(c), LayerState::ConvTr(s)) => c.finish(s),
            (Layer::Res(r), LayerState::Res(s)) => r.finish(s),
            (Layer::Lstm(_), LayerState::Lstm(s)) => {
                s.reset();
                Ok(None)
            }
            _ => Err(state_mismatch()),
        }
    }
}

fn state_mismatch() -> crate::Error {
    crate::Error::InvalidArgument("streaming state does not belong to this decoder".into())
}

/// Whole-clip pass through a chain of layers.
fn chain_forward(layers: &[Layer], xs: &Tensor) -> Result<Tensor> {
    let mut xs = xs.clone();
    let mut rest = layers;
    while let Some((layer, after)) = rest.split_first() {
        (xs, rest) = match (layer, after.split_first()) {
            // A residual block and the ELU after it (both SEANets): one pass.
            (Layer::Res(r), Some((Layer::Elu, after_elu))) => (r.forward_then_elu(&xs)?, after_elu),
            _ => (layer.forward(&xs)?, after),
        };
    }
    Ok(xs)
}

/// One chunk through a chain (`None` = nothing reached that layer yet).
fn chain_step(
    layers: &[Layer],
    states: &mut [LayerState],
    xs: Option<Tensor>,
) -> Result<Option<Tensor>> {
    let mut carry = xs;
    for (l, s) in layers.iter().zip(states.iter_mut()) {
        carry = match carry {
            Some(x) => l.step(s, &x)?,
            None => return Ok(None),
        };
    }
    Ok(carry)
}

/// Flushes a chain: each layer gets what the previous one flushed, then flushes itself.
fn chain_finish(layers: &[Layer], states: &mut [LayerState]) -> Result<Option<Tensor>> {
    let mut carry: Option<Tensor> = None;
    for (l, s) in layers.iter().zip(states.iter_mut()) {
        let stepped = match carry {
            Some(x) => l.step(s, &x)?,
            None => None,
        };
        carry = cat_opt(stepped, l.finish(s)?)?;
    }
    Ok(carry)
}

/// `SEANetResnetBlock(dim, kernel_sizes=[k, 1], dilations=[d, 1], true_skip=False)`.
#[derive(Debug, Clone)]
pub struct SEANetResnetBlock {
    /// `block`: ELU, conv(k, d), ELU, conv(1).
    block: Vec<Layer>,
    shortcut: SConv1d,
    /// `block.3` and `shortcut` as one product with the ELU before `block.3` fused in (f32
    /// on the CPU with the dense kernel); `forward` uses it, streaming keeps the two.
    tail: Option<SConv1x1Pair>,
}

/// Streaming state of a [`SEANetResnetBlock`].
#[derive(Debug, Clone)]
pub(crate) struct ResnetBlockState {
    block: Vec<LayerState>,
    shortcut: SConv1dState,
    join: SumJoin,
}

impl SEANetResnetBlock {
    /// Loads `vb.block.{1,3}` and `vb.shortcut`.
    pub fn new(
        dim: usize,
        kernel_size: usize,
        dilation: usize,
        compress: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hidden = dim / compress;
        let vbb = vb.pp("block");
        let block = vec![
            Layer::Elu,
            Layer::Conv(SConv1d::new(
                dim,
                hidden,
                kernel_size,
                1,
                dilation,
                vbb.pp(1),
            )?),
            Layer::Elu,
            Layer::Conv(SConv1d::new(hidden, dim, 1, 1, 1, vbb.pp(3))?),
        ];
        let shortcut = SConv1d::new(dim, dim, 1, 1, 1, vb.pp("shortcut"))?;
        let tail = SConv1x1Pair::new((hidden, dim), dim, vbb.pp(3), vb.pp("shortcut"))?;
        Ok(Self {
            block,
            shortcut,
            tail,
        })
    }

    /// `shortcut(x) + block(x)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_then(xs, false)
    }

    /// `ELU(shortcut(x) + block(x))`: the residual block and the ELU that follows it in
    /// both SEANets, with the ELU fused into the block's last product where it has one.
    pub fn forward_then_elu(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_then(xs, true)
    }

    fn forward_then(&self, xs: &Tensor, then_elu: bool) -> Result<Tensor> {
        let cpu_f32 = matches!(xs.device(), candle_core::Device::Cpu)
            && xs.dtype() == candle_core::DType::F32;
        if let Some(tail) = self.tail.as_ref().filter(|_| cpu_f32) {
            // ELU and the first convolution, then ELU + `block.3` + shortcut in one product.
            let h = chain_forward(&self.block[..2], xs)?;
            return tail.forward(&h, xs, then_elu);
        }
        let out = (self.shortcut.forward(xs)? + chain_forward(&self.block, xs)?)?;
        if then_elu {
            return elu(&out);
        }
        Ok(out)
    }

    fn new_state(&self) -> ResnetBlockState {
        ResnetBlockState {
            block: self.block.iter().map(Layer::new_state).collect(),
            shortcut: SConv1dState::default(),
            join: SumJoin::default(),
        }
    }

    fn step(&self, st: &mut ResnetBlockState, xs: Option<Tensor>) -> Result<Option<Tensor>> {
        let Some(xs) = xs else { return Ok(None) };
        let short = self.shortcut.step(&mut st.shortcut, &xs)?;
        let block = chain_step(&self.block, &mut st.block, Some(xs))?;
        st.join.push(short, block)
    }

    fn finish(&self, st: &mut ResnetBlockState) -> Result<Option<Tensor>> {
        let short = self.shortcut.finish(&mut st.shortcut)?;
        let block = chain_finish(&self.block, &mut st.block)?;
        let out = st.join.push(short, block)?;
        st.join.reset();
        Ok(out)
    }
}

/// `SEANetEncoder`: conv, then per ratio (reversed) residual blocks + ELU + strided conv,
/// then the (bidirectional) LSTM, ELU and the last conv to `dimension`.
#[derive(Debug, Clone)]
pub struct SEANetEncoder {
    layers: Vec<Layer>,
}

impl SEANetEncoder {
    /// Loads `vb.model.*` (`vb` = `encoder`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("model");
        let nf = cfg.n_filters;
        let mut layers = vec![Layer::Conv(SConv1d::new(
            cfg.channels,
            nf,
            cfg.kernel_size,
            1,
            1,
            vb.pp(0),
        )?)];
        let mut mult = 1;
        for &ratio in cfg.ratios.iter().rev() {
            for j in 0..cfg.n_residual_layers {
                let dilation = cfg.dilation_base.pow(j as u32);
                let (k, c) = (cfg.residual_kernel_size, cfg.compress);
                let vb_i = vb.pp(layers.len());
                let block = SEANetResnetBlock::new(mult * nf, k, dilation, c, vb_i)?;
                layers.push(Layer::Res(Box::new(block)));
            }
            layers.push(Layer::Elu);
            let vb_i = vb.pp(layers.len());
            let conv = SConv1d::new(mult * nf, mult * nf * 2, ratio * 2, ratio, 1, vb_i)?;
            layers.push(Layer::Conv(conv));
            mult *= 2;
        }
        if cfg.lstm_layers > 0 {
            let vb_i = vb.pp(layers.len());
            let bi = cfg.encoder_bidirectional;
            layers.push(Layer::Lstm(SLSTM::new(
                mult * nf,
                cfg.lstm_layers,
                bi,
                vb_i,
            )?));
        }
        if cfg.encoder_bidirectional && cfg.lstm_layers > 0 {
            mult *= 2;
        }
        layers.push(Layer::Elu);
        let vb_i = vb.pp(layers.len());
        let last = SConv1d::new(mult * nf, cfg.dimension, cfg.last_kernel_size, 1, 1, vb_i)?;
        layers.push(Layer::Conv(last));
        Ok(Self { layers })
    }

    /// `(B, 1, T)` → `(B, dimension, frames)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        chain_forward(&self.layers, xs)
    }
}

/// `SEANetDecoder`: conv, unidirectional LSTM, then per ratio ELU + transposed conv +
/// residual blocks, then ELU and the last conv to one channel (no final activation).
#[derive(Debug, Clone)]
pub struct SEANetDecoder {
    layers: Vec<Layer>,
}

/// Streaming state of a [`SEANetDecoder`] (one per audio stream).
#[derive(Debug, Clone)]
pub struct SEANetDecoderState {
    layers: Vec<LayerState>,
}

impl SEANetDecoderState {
    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        for s in &mut self.layers {
            s.reset();
        }
    }
}

impl LayerState {
    fn reset(&mut self) {
        match self {
            LayerState::Stateless => {}
            LayerState::Conv(s) => s.reset(),
            LayerState::ConvTr(s) => s.reset(),
            LayerState::Lstm(s) => s.reset(),
            LayerState::Res(s) => {
                s.block.iter_mut().for_each(LayerState::reset);
                s.shortcut.reset();
                s.join.reset();
            }
        }
    }
}

impl SEANetDecoder {
    /// Loads `vb.model.*` (`vb` = `decoder`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("model");
        let nf = cfg.n_filters;
        let mut mult = 1usize << cfg.ratios.len();
        let first = SConv1d::new(cfg.dimension, mult * nf, cfg.kernel_size, 1, 1, vb.pp(0))?;
        let mut layers = vec![Layer::Conv(first)];
        if cfg.lstm_layers > 0 {
            let vb_i = vb.pp(layers.len());
            layers.push(Layer::Lstm(SLSTM::new(
                mult * nf,
                cfg.lstm_layers,
                false,
                vb_i,
            )?));
        }
        for &ratio in &cfg.ratios {
            layers.push(Layer::Elu);
            let (c_in, c_out) = (mult * nf, mult * nf / 2);
            let vb_i = vb.pp(layers.len());
            let up = SConvTranspose1d::new(c_in, c_out, ratio * 2, ratio, vb_i)?;
            layers.push(Layer::ConvTr(up));
            for j in 0..cfg.n_residual_layers {
                let dilation = cfg.dilation_base.pow(j as u32);
                let (k, c) = (cfg.residual_kernel_size, cfg.compress);
                let vb_i = vb.pp(layers.len());
                let block = SEANetResnetBlock::new(c_out, k, dilation, c, vb_i)?;
                layers.push(Layer::Res(Box::new(block)));
            }
            mult /= 2;
        }
        layers.push(Layer::Elu);
        let vb_i = vb.pp(layers.len());
        let last = SConv1d::new(nf, cfg.channels, cfg.last_kernel_size, 1, 1, vb_i)?;
        layers.push(Layer::Conv(last));
        Ok(Self { layers })
    }

    /// `(B, dimension, F)` → `(B, 1, F · hop)`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        chain_forward(&self.layers, xs)
    }

    /// A fresh streaming state.
    pub fn new_state(&self) -> SEANetDecoderState {
        SEANetDecoderState {
            layers: self.layers.iter().map(Layer::new_state).collect(),
        }
    }

    /// One chunk of latent frames `(B, dimension, n)`: the samples that are final so far
    /// (`None` while the first convolutions still wait for context).
    pub fn step(&self, state: &mut SEANetDecoderState, xs: &Tensor) -> Result<Option<Tensor>> {
        if state.layers.len() != self.layers.len() {
            return Err(state_mismatch());
        }
        chain_step(&self.layers, &mut state.layers, Some(xs.clone()))
    }

    /// End of the stream: the remaining samples; the state is reset.
    pub fn finish(&self, state: &mut SEANetDecoderState) -> Result<Option<Tensor>> {
        if state.layers.len() != self.layers.len() {
            return Err(state_mismatch());
        }
        let out = chain_finish(&self.layers, &mut state.layers);
        state.reset();
        out
    }
}
