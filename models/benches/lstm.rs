//! `cargo bench -p mio-models --bench lstm`: the SpeechTokenizer's LSTMs at the real size
//! (width 1024, 2 layers, 500 frames = 10 s of 16 kHz audio): the SEANet encoder's
//! bidirectional one and the decoder's unidirectional one, random weights; best of 3.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use mio_models::speech_codec::SLSTM;

fn lstm(
    dim: usize,
    layers: usize,
    bidirectional: bool,
) -> Result<SLSTM, Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let mut ts = HashMap::new();
    let dirs = if bidirectional { 2 } else { 1 };
    for l in 0..layers {
        let in_dim = if l == 0 { dim } else { dim * dirs };
        for suffix in ["", "_reverse"].iter().take(dirs) {
            let s = format!("l{l}{suffix}");
            let bound = (dim as f32).powf(-0.5);
            for (name, shape) in [
                (format!("lstm.weight_ih_{s}"), vec![4 * dim, in_dim]),
                (format!("lstm.weight_hh_{s}"), vec![4 * dim, dim]),
                (format!("lstm.bias_ih_{s}"), vec![4 * dim]),
                (format!("lstm.bias_hh_{s}"), vec![4 * dim]),
            ] {
                let t = (Tensor::rand(0f32, 2.0 * bound, shape, &dev)? - bound as f64)?;
                ts.insert(name, t);
            }
        }
    }
    let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
    Ok(SLSTM::new(dim, layers, bidirectional, vb)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (dim, frames) = (1024usize, 500usize);
    let x = Tensor::randn(0f32, 1.0, (1, dim, frames), &Device::Cpu)?;
    for (name, bidirectional) in [("encoder BiLSTM", true), ("decoder LSTM", false)] {
        let m = lstm(dim, 2, bidirectional)?;
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(m.forward(&x)?);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let cells = if bidirectional { 4 } else { 2 };
        println!(
            "{name}: {:.3} s ({:.0} µs per cell step)",
            best,
            best / (cells * frames) as f64 * 1e6
        );
    }
    Ok(())
}
