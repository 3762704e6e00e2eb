//! `mio bench speech`: SpeechTokenizer encode and decode speed (real-time factor) and peak
//! memory, on a deterministic clip, beside `scripts/bench-pytorch/speech.py`'s figures for
//! the same folder (`--pytorch FILE`), whose codes and waveform it also checks against ours.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use mio_models::speech_codec::SpeechTokenizer;
use serde_json::{json, Value};

use super::peak_rss_bytes;
use super::side_by_side::{self as sbs, Metric};
use crate::cli::Common;
use crate::commands::print;

/// RVQ layers MIO decodes (content + 3 timbre layers).
const DECODE_LAYERS: usize = 4;

/// The deterministic test clip, mono float32 at `rate` (same formula as the script).
fn clip(seconds: f64, rate: u32) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    let tau = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let x = 0.4 * (tau * 220.0 * t).sin() + 0.2 * (tau * 1330.0 * t).sin();
            (x * (0.6 + 0.4 * (tau * 0.5 * t).sin())) as f32
        })
        .collect()
}

/// Best wall time of `repeat` runs after one warm-up, and the last result.
fn best_of<T>(repeat: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut out = f()?;
    let mut best = f64::INFINITY;
    for _ in 0..repeat {
        let t = std::time::Instant::now();
        out = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, out))
}

/// How our codes and waveform compare with PyTorch's: code mismatches (of the total), and
/// the largest absolute difference of the (subsampled) waveform.
fn agreement(py: &Value, codes: &[Vec<u32>], wave: &[f32]) -> Value {
    let theirs: Vec<Vec<u64>> = serde_json::from_value(py["codes"].clone()).unwrap_or_default();
    let total: usize = codes.iter().map(Vec::len).sum();
    let per_layer: Vec<usize> = codes
        .iter()
        .zip(&theirs)
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .filter(|(x, y)| u64::from(**x) != **y)
                .count()
        })
        .collect();
    let mismatched: usize = per_layer.iter().sum();
    let stride = py["wave_stride"].as_u64().unwrap_or(1).max(1) as usize;
    let their_wave: Vec<f64> = serde_json::from_value(py["wave"].clone()).unwrap_or_default();
    let max_abs_diff = wave
        .iter()
        .step_by(stride)
        .zip(&their_wave)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max);
    json!({
        "codes_total": total, "codes_mismatched": mismatched,
        "codes_mismatched_per_layer": per_layer,
        "codes_compared": theirs.len() == codes.len(),
        "wave_max_abs_diff": max_abs_diff,
        "wave_len_equal": py["wave_len"].as_u64() == Some(wave.len() as u64),
    })
}

/// Runs `mio bench speech`.
pub fn speech(common: &Common, seconds: f64, repeat: usize, pytorch: Option<&Path>) -> Result<()> {
    if !seconds.is_finite() || seconds <= 0.0 || repeat == 0 {
        bail!("the benchmark needs a positive clip length and at least 1 repetition");
    }
    let py = sbs::read_pytorch(pytorch)?;
    let dev = Device::Cpu;
    let load_start = std::time::Instant::now();
    let codec = SpeechTokenizer::load(&common.model.join("SpeechTokenizer"), &dev)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let rate = codec.config().sample_rate;
    let samples = clip(seconds, rate);
    let n = samples.len();
    let input = Tensor::from_vec(samples, (1, 1, n), &dev)?;
    let (encode_s, codes) = best_of(repeat, || Ok(codec.encode(&input)?))?;
    let layers = codes.dim(0)?.min(DECODE_LAYERS);
    let c4 = codes.narrow(0, 0, layers)?;
    let (decode_s, wave) = best_of(repeat, || Ok(codec.decode(&c4, 0)?))?;
    let codes: Vec<Vec<u32>> = codes.squeeze(1)?.to_vec2()?;
    let wave: Vec<f32> = wave.flatten_all()?.to_vec1()?;
    let peak = peak_rss_bytes().unwrap_or(0);
    let pf = |k: &str| py.as_ref().and_then(|v| v[k].as_f64());
    let metrics = [
        Metric {
            name: "encode s",
            ours: encode_s,
            pytorch: pf("encode_s"),
            lower_is_better: true,
        },
        Metric {
            name: "encode RTF",
            ours: encode_s / seconds,
            pytorch: pf("encode_rtf"),
            lower_is_better: true,
        },
        Metric {
            name: "decode s (4 layers)",
            ours: decode_s,
            pytorch: pf("decode_s"),
            lower_is_better: true,
        },
        Metric {
            name: "decode RTF",
            ours: decode_s / seconds,
            pytorch: pf("decode_rtf"),
            lower_is_better: true,
        },
        Metric {
            name: "peak RSS GiB",
            ours: sbs::gib(peak),
            pytorch: pf("peak_rss_bytes").map(|b| b / (1u64 << 30) as f64),
            lower_is_better: true,
        },
    ];
    let agree = py.as_ref().map(|p| agreement(p, &codes, &wave));
    let value = json!({
        "model": common.model, "threads": sbs::threads(), "load_s": load_s,
        "seconds_of_audio": seconds, "decode_layers": layers, "encode_s": encode_s,
        "decode_s": decode_s, "peak_rss_bytes": peak, "load_average": sbs::load_average(),
        "rows": sbs::json_rows(&metrics), "agreement_with_pytorch": agree,
        "pytorch_threads": py.as_ref().map(|p| p["threads"].clone()),
    });
    print(common, value, || {
        let mut s = format!(
            "SpeechTokenizer {}: {seconds} s clip, {} threads (PyTorch: {}), load average {:.2}\n",
            common.model.display(),
            sbs::threads(),
            py.as_ref().map_or("-".into(), |p| p["threads"].to_string()),
            sbs::load_average().unwrap_or(f64::NAN)
        );
        s += &sbs::table(&metrics);
        if let Some(a) = &agree {
            s += &format!("agreement with PyTorch: {a}\n");
        }
        s
    })
}
