//! `cargo bench -p mio-models --bench dense`: our packed-weight linear layer
//! (`mio_models::sgemm::Dense`) against candle's `Linear` at the real-size EVA ViT-g's shapes
//! (2 images of 257 tokens, width 1408, MLP 6144), the SEED Q-Former's and the unCLIP UNet's
//! largest transformer (2 × 9216 tokens, width 320); best of 3 runs each, same weights.

use std::time::Instant;

use candle_core::{Device, Module, Tensor};
use mio_models::image_decoder::attention_rows;
use mio_models::sgemm::{attention_tensors, Dense};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `MIO_NO_AVX512=1`: the AVX2 tile on AVX-512 CPUs too, to compare the two.
    mio_models::sgemm::keep_avx2_tile(std::env::var_os("MIO_NO_AVX512").is_some());
    let dev = Device::Cpu;
    println!(
        "| layer | rows × in → out | candle Linear ms | ours ms | ours vs candle | ours GFLOP/s |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, m, k, n) in [
        ("ViT qkv", 514usize, 1408usize, 4224usize),
        ("ViT proj", 514, 1408, 1408),
        ("ViT fc1", 514, 1408, 6144),
        ("ViT fc2", 514, 6144, 1408),
        ("Q-Former self", 64, 768, 768),
        ("UNet attn q", 18432, 320, 320),
        ("UNet ff", 18432, 320, 2560),
    ] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, n, &dev)?;
        let theirs = candle_nn::Linear::new(w.clone(), Some(b.clone()));
        let ours = Dense::new(w, Some(b))?;
        let mut best = [f64::MAX; 2];
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(theirs.forward(&x)?);
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            std::hint::black_box(ours.forward(&x)?);
            best[1] = best[1].min(t.elapsed().as_secs_f64());
        }
        println!(
            "| {name} | {m} × {k} → {n} | {:.2} | {:.2} | {:.2}x | {:.0} |",
            best[0] * 1e3,
            best[1] * 1e3,
            best[0] / best[1],
            2.0 * (m * k * n) as f64 / best[1] / 1e9
        );
    }
    // A chain of ViT-g blocks with distinct weights (as a real forward runs them: each
    // weight read cold from memory, 6 blocks of 101 MB do not fit any cache), ours alone.
    let (m, width, hidden, blocks) = (514usize, 1408usize, 6144usize, 6usize);
    let mut layers = vec![];
    for _ in 0..blocks {
        let mut block = vec![];
        for (k, n) in [
            (width, 3 * width),
            (width, width),
            (width, hidden),
            (hidden, width),
        ] {
            let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
            let b = Tensor::randn(0f32, 1.0, n, &dev)?;
            block.push(Dense::new(w, Some(b))?);
        }
        layers.push(block);
    }
    let x = Tensor::randn(0f32, 1.0, (m, width), &dev)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for block in &layers {
            std::hint::black_box(block[0].forward(&x)?);
            std::hint::black_box(block[1].forward(&x)?);
            let h = block[2].forward(&x)?;
            std::hint::black_box(block[3].forward(&h)?);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let flops = 2.0 * (blocks * m * width * (3 * width + width + 2 * hidden)) as f64;
    println!(
        "\n{blocks} ViT-g blocks' linear layers, distinct (cold) weights: {:.2} s, {:.0} GFLOP/s",
        best,
        flops / best / 1e9
    );
    // The UNet's largest self-attention: 2 × 9216 tokens, 5 heads of 64: per head candle's
    // products and softmax on 256 query rows at a time (the path before) against ours.
    let (b, n, heads, d) = (2usize, 9216usize, 5usize, 64usize);
    let q = Tensor::randn(0f32, 1.0, (b, n, heads * d), &dev)?;
    let k = Tensor::randn(0f32, 1.0, (b, n, heads * d), &dev)?;
    let v = Tensor::randn(0f32, 1.0, (b, n, heads * d), &dev)?;
    let scale = (d as f64).powf(-0.5);
    let mut best = [f64::MAX; 2];
    for _ in 0..2 {
        let t = Instant::now();
        let mut outs = vec![];
        for h in 0..heads {
            let qh = (q.narrow(2, h * d, d)? * scale)?;
            let kh = k.narrow(2, h * d, d)?.contiguous()?;
            let vh = v.narrow(2, h * d, d)?.contiguous()?;
            outs.push(attention_rows(&qh, &kh, &vh, 256)?);
        }
        std::hint::black_box(Tensor::cat(&outs, 2)?);
        best[0] = best[0].min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        std::hint::black_box(attention_tensors(&q, &k, &v, heads, scale)?);
        best[1] = best[1].min(t.elapsed().as_secs_f64());
    }
    let flops = 4.0 * (b * heads * n * n * d) as f64;
    println!(
        "\nself-attention (2, 9216, 5 × 64): candle per head {:.2} s, ours {:.2} s ({:.2}x, {:.0} GFLOP/s)",
        best[0],
        best[1],
        best[0] / best[1],
        flops / best[1] / 1e9
    );
    Ok(())
}
