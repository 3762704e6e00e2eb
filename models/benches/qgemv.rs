//! `cargo bench -p mio-models --bench qgemv`: our q4_K / q6_K kernels against candle's
//! `QMatMul` on MIO-7B's decode shapes, 1 row (greedy decode), 5 rows (a beam of 5) and 64
//! rows (a prefill chunk). The weights of each shape are 8 matrices used in turn (hundreds of
//! MB), so every call streams its weight from memory as a real decode step does.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use mio_models::lm::qgemv::{PackedQ4K, QGemv};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let shapes = [
        ("ffn_up q4_K 11008x4096", GgmlDType::Q4K, 11008, 4096),
        ("ffn_down q6_K 4096x11008", GgmlDType::Q6K, 4096, 11008),
    ];
    println!("| weight | rows | candle QMatMul ms | ours ms | ours vs candle | ours GB/s |");
    println!("|---|---|---|---|---|---|");
    for (name, dtype, n, k) in shapes {
        let mats: Vec<QMatMul> = (0..8)
            .map(|i| {
                let w = (Tensor::randn(0f32, 1.0, (n, k), &dev)? * (1.0 + i as f64 * 0.1))?;
                QMatMul::from_qtensor(QTensor::quantize(&w, dtype)?)
            })
            .collect::<candle_core::Result<_>>()?;
        let bytes = match &mats[0] {
            QMatMul::QTensor(q) => q.storage_size_in_bytes(),
            _ => 0,
        };
        // q4_K runs packed, as the GGUF loader packs it.
        let packed: Vec<Option<PackedQ4K>> = mats
            .iter()
            .map(|mm| match mm {
                QMatMul::QTensor(q) if dtype == GgmlDType::Q4K => {
                    PackedQ4K::pack(&q.data().ok()?, n, k).ok()
                }
                _ => None,
            })
            .collect();
        for m in [1usize, 5, 64] {
            let xs = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let reps = if m == 64 { 2 } else { 6 };
            let mut best = [f64::MAX; 2];
            for _ in 0..reps {
                for (which, b) in best.iter_mut().enumerate() {
                    let t = Instant::now();
                    for (mm, pk) in mats.iter().zip(&packed) {
                        let ys = match (which, pk, QGemv::for_matmul(mm, &dev)) {
                            (1, Some(pk), _) => pk.forward(&xs)?,
                            (1, None, Some(op)) => xs.apply_op1_no_bwd(&op)?,
                            _ => mm.forward(&xs)?,
                        };
                        std::hint::black_box(ys);
                    }
                    *b = b.min(t.elapsed().as_secs_f64() / mats.len() as f64);
                }
            }
            println!(
                "| {name} | {m} | {:.2} | {:.2} | {:.2}x | {:.1} |",
                best[0] * 1e3,
                best[1] * 1e3,
                best[0] / best[1],
                bytes as f64 / best[1] / 1e9
            );
        }
    }
    Ok(())
}
