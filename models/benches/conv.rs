//! `cargo bench -p mio-models --bench conv`: our CPU 3 × 3 convolutions (per tap, packed
//! direct, and the packed entry point, which takes Winograd's F(2 × 2, 3 × 3) where it pays)
//! against candle's `conv2d` at the unCLIP UNet's shapes
//! for 96 × 96 latents with the two guidance branches batched, and at the VAE decoder's
//! (best of 2 runs each); then one head of the UNet's largest self-attention.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mio_models::cpu_conv::{
    conv1d_packed, conv2d_s1, conv2d_s1_packed, conv2d_s1_packed_direct, PackedConv1d, PackedConv2d,
};
use mio_models::image_decoder::attention_rows;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    println!(
        "| input (B, C, H, W) | candle conv2d s | ours, per tap s | ours, packed direct s | ours, packed (Winograd) s | packed vs candle |"
    );
    println!("|---|---|---|---|---|---|");
    // UNet (guidance batch of 2) and VAE decoder (1 image, 768 × 768 out) shapes.
    for (bs, c, hw) in [
        (2usize, 320usize, 96usize),
        (2, 640, 48),
        (2, 1280, 24),
        (2, 1280, 12),
        (1, 512, 192),
        (1, 256, 384),
        (1, 128, 768),
    ] {
        let xs = Tensor::randn(0f32, 1.0, (bs, c, hw, hw), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (c, c, 3, 3), &dev)?;
        let b = Tensor::randn(0f32, 1.0, c, &dev)?;
        let packed = PackedConv2d::new(&w)?.ok_or("no dense kernel in this build")?;
        let bias = b.to_vec1::<f32>()?;
        let mut best = [f64::MAX; 4];
        for _ in 0..2 {
            let t = Instant::now();
            std::hint::black_box(conv2d_s1_packed(&xs, &packed, Some(&bias), 1)?);
            best[3] = best[3].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(conv2d_s1_packed_direct(&xs, &packed, Some(&bias), 1)?);
            best[2] = best[2].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let ys = xs
                .conv2d(&w, 1, 1, 1, 1)?
                .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
            std::hint::black_box(ys);
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let ys = conv2d_s1(&xs, &w, Some(&b), 1)?;
            std::hint::black_box(ys);
            best[1] = best[1].min(t.elapsed().as_secs_f64());
        }
        println!(
            "| ({bs}, {c}, {hw}, {hw}) | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            best[0],
            best[1],
            best[2],
            best[3],
            best[0] / best[3]
        );
    }
    // The SpeechTokenizer encoder's 1-D convolutions at the real size (10 s of 16 kHz audio):
    // our packed kernel alone, with its GFLOP/s (the resblocks at 64 and 128 channels, a
    // down-sampling conv, the last conv).
    println!("\n| SEANet conv1d (C_in → C_out, k, stride, samples) | ours s | GFLOP/s |");
    println!("|---|---|---|");
    for (c_in, c_out, k, stride, len) in [
        (64usize, 32usize, 3usize, 1usize, 160_000usize),
        (32, 64, 1, 1, 160_000),
        (64, 64, 1, 1, 160_000),
        (64, 128, 4, 2, 160_000),
        (128, 64, 3, 1, 80_000),
        (256, 512, 10, 5, 20_000),
        (2048, 1024, 7, 1, 506),
    ] {
        let xs = Tensor::randn(0f32, 1.0, (1, c_in, len), &dev)?;
        let w = Tensor::randn(0f32, 0.1, (c_out, c_in, k), &dev)?;
        let packed = PackedConv1d::new(&w)?.ok_or("no dense kernel in this build")?;
        let bias = vec![0.5f32; c_out];
        let mut best = f64::MAX;
        let mut l_out = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let y = conv1d_packed(&xs, &packed, Some(&bias), stride, 1)?;
            best = best.min(t.elapsed().as_secs_f64());
            l_out = y.dim(2)?;
        }
        let flops = 2.0 * (l_out * c_out * c_in * k) as f64;
        println!(
            "| {c_in} → {c_out}, k {k}, s {stride}, {len} | {best:.4} | {:.0} |",
            flops / best / 1e9
        );
    }
    // One head of the 96 × 96 latents' self-attention (9216 tokens, 64 dims, 2 branches):
    // the whole score matrix at once against 256 query rows at a time.
    let q = Tensor::randn(0f32, 0.125, (2, 9216, 64), &dev)?;
    let k = Tensor::randn(0f32, 1.0, (2, 9216, 64), &dev)?;
    let v = Tensor::randn(0f32, 1.0, (2, 9216, 64), &dev)?;
    let mut best = [f64::MAX; 2];
    for _ in 0..2 {
        for (i, chunk) in [0usize, 256].into_iter().enumerate() {
            let t = Instant::now();
            std::hint::black_box(attention_rows(&q, &k, &v, chunk)?);
            best[i] = best[i].min(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "\nself-attention head, (2, 9216, 64): whole {:.3} s, 256-row blocks {:.3} s ({:.2}x)",
        best[0],
        best[1],
        best[0] / best[1]
    );
    Ok(())
}
