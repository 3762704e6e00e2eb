//! `cargo bench -p mio-models --bench conv1d`: our packed 1-D convolution at the shapes of
//! the real-size SpeechTokenizer encoder on 10 s of 16 kHz audio (where the signal is long
//! and the channels few: each panel fill reads from many rows far apart, and the outputs
//! are tens of MB), best of 10, with GFLOP/s.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mio_models::cpu_conv::{conv1d_packed_reflect, PackedConv1d};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    println!("| C_in → C_out | kernel | stride | samples | ms | GFLOP/s |");
    println!("|---|---|---|---|---|---|");
    // First residual block's 3-tap conv, a 1×1 of its tail's depth, a deeper residual
    // conv, the first strided (down-sampling) conv.
    for (c_in, c_out, k, len, stride) in [
        (64usize, 32usize, 3usize, 160_000usize, 1usize),
        (96, 64, 1, 160_000, 1),
        (256, 128, 3, 20_000, 1),
        (64, 128, 4, 160_000, 2),
    ] {
        let xs = Tensor::randn(0f32, 1.0, (1, c_in, len), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (c_out, c_in, k), &dev)?;
        let packed = PackedConv1d::new(&w)?.ok_or("no dense kernel in this build")?;
        let bias = vec![0.1f32; c_out];
        let pads = (k / 2, k / 2);
        let mut best = f64::MAX;
        for _ in 0..10 {
            let t = Instant::now();
            let ys = conv1d_packed_reflect(&xs, &packed, Some(&bias), stride, 1, pads)?;
            std::hint::black_box(ys);
            best = best.min(t.elapsed().as_secs_f64());
        }
        let flop = 2.0 * (c_out * c_in * k * (len / stride)) as f64;
        println!(
            "| {c_in} → {c_out} | {k} | {stride} | {len} | {:.2} | {:.0} |",
            best * 1e3,
            flop / best / 1e9
        );
    }
    Ok(())
}
