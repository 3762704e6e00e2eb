//! `mio bench lm`: prefill and decode speed of the LM and the process's peak memory
//! (`--compare`: both backends and llama-bench side by side); `mio bench image-decode`:
//! seconds per denoising step of the unCLIP decoder; `mio bench image-encode`: SEED image
//! encoding speed; all with the process's peak memory.

mod bandwidth;
mod compare;
mod side_by_side;
mod speech;

pub use bandwidth::read_bandwidth;
pub use compare::{compare, CompareArgs};
pub use side_by_side::ensure_threads;
pub use speech::speech;

use std::path::PathBuf;

use anyhow::{bail, Result};
use mio_models::engine::{
    CodecLoading, Event, GenerationParams, ImageInput, Request, Response, Timings,
};
use serde_json::json;

use crate::cli::Common;
use crate::commands::{print, start, start_with};

/// Peak resident memory of this process in bytes (Linux `VmHWM`), when the OS tells.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Deterministic prompt of `n` text tokens (a fixed linear-congruential walk over the
/// sentencepiece ids above the three control tokens).
fn prompt(n: usize, text_vocab: u32) -> Vec<u32> {
    let mut x: u32 = 12345;
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        ids.push(3 + (x >> 8) % text_vocab.saturating_sub(3).max(1));
    }
    ids
}

/// Runs `mio bench lm`.
pub fn lm(
    common: &Common,
    prompt_tokens: usize,
    decode_tokens: usize,
    repeat: usize,
) -> Result<()> {
    if prompt_tokens == 0 || decode_tokens < 2 || repeat == 0 {
        bail!("the benchmark needs at least 1 prompt token, 2 decode tokens and 1 repetition");
    }
    let load_start = std::time::Instant::now();
    let (worker, info) = start(common, false)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let ids = prompt(prompt_tokens, info.text_vocab_size as u32);
    let params = GenerationParams {
        max_new_tokens: Some(decode_tokens),
        num_beams: Some(1),
        eos_ids: Some(vec![]),
        constraints: Some(false),
        ..Default::default()
    };
    let mut best: Option<Timings> = None;
    for _ in 0..repeat {
        let response = worker
            .run(Request::Generate {
                ids: ids.clone(),
                params: params.clone(),
            })?
            .wait(|_| {})?;
        let Response::Generated { timings, .. } = response else {
            bail!("unexpected engine answer")
        };
        if best.is_none_or(|b| timings.prefill_s + timings.decode_s < b.prefill_s + b.decode_s) {
            best = Some(timings);
        }
    }
    let Some(t) = best else {
        bail!("no benchmark run finished")
    };
    // The first new token comes from the prefill logits; each later one costs a decode step.
    let decode_steps = t.new_tokens.saturating_sub(1).max(1);
    let prefill_tps = t.prompt_tokens as f64 / t.prefill_s.max(1e-9);
    let decode_tps = decode_steps as f64 / t.decode_s.max(1e-9);
    let peak = peak_rss_bytes();
    let value = json!({
        "model": common.model, "device": common.device.to_string(), "load_s": load_s,
        "prompt_tokens": t.prompt_tokens, "new_tokens": t.new_tokens,
        "prefill_s": t.prefill_s, "decode_s": t.decode_s,
        "prefill_tokens_per_s": prefill_tps, "decode_tokens_per_s": decode_tps,
        "peak_rss_bytes": peak,
    });
    print(common, value, || {
        format!(
            "load {load_s:.2} s | prefill {} tokens: {prefill_tps:.1} tok/s | decode {decode_steps} tokens: {decode_tps:.1} tok/s | peak RSS {}",
            t.prompt_tokens,
            peak.map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        )
    })
}

/// Runs `mio bench image-decode`: `warmup` untimed decodes, then `repeat` timed decodes of fixed
/// codes; reports the best run's seconds per denoising step (one batched UNet call each),
/// the time before the first step (decode head, embedding noising) and after the last (VAE
/// decode, conversion), the whole decode, and the process's peak RSS.
pub fn image_decode(
    common: &Common,
    runs: &DecodeRuns,
    pytorch: Option<&std::path::Path>,
) -> Result<()> {
    let (steps, repeat) = (runs.steps, runs.repeat);
    let py = side_by_side::read_pytorch(pytorch)?;
    if steps == 0 || repeat == 0 {
        bail!("the benchmark needs at least 1 step and 1 repetition");
    }
    let load_start = std::time::Instant::now();
    // Every codec of the folder loaded up front, as before codecs loaded on first use: the
    // load time is apart from the timed runs and the peak comparable across sessions.
    let (worker, _) = start_with(common, true, CodecLoading::AtLoad)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let request = || Request::ImageDecode {
        codes: (0..32).map(|i| i * 97 % 8192).collect(),
        steps,
        guidance: 10.0,
        seed: 0,
        latents: None,
        noise: None,
        preview_every: 0,
    };
    for _ in 0..runs.warmup {
        worker.run(request())?.wait(|_| {})?;
    }
    let mut best: Option<DecodeRun> = None;
    for _ in 0..repeat {
        let t0 = std::time::Instant::now();
        let mut marks = vec![];
        let response = worker.run(request())?.wait(|e| {
            if matches!(&e, Event::Progress { stage, .. } if stage == "image") {
                marks.push(t0.elapsed().as_secs_f64());
            }
        })?;
        let total_s = t0.elapsed().as_secs_f64();
        let Response::Image(img) = response else {
            bail!("unexpected engine answer")
        };
        let (Some(first), Some(last)) = (marks.first(), marks.last()) else {
            bail!("the decoder reported no step")
        };
        // The first step's time is not separable from the set-up before it; steps are
        // measured between progress events.
        let unet_calls = marks.len();
        let per_step_s = if unet_calls > 1 {
            (last - first) / (unet_calls - 1) as f64
        } else {
            *first
        };
        let run = DecodeRun {
            total_s,
            per_step_s,
            unet_calls,
            before_first_step_s: (first - per_step_s).max(0.0),
            after_last_step_s: total_s - last,
            size: (img.width, img.height),
        };
        if best.as_ref().is_none_or(|b| run.total_s < b.total_s) {
            best = Some(run);
        }
    }
    let Some(r) = best else {
        bail!("no benchmark run finished")
    };
    let peak = peak_rss_bytes();
    let value = json!({
        "model": common.model, "device": common.device.to_string(), "load_s": load_s,
        "steps": steps, "unet_calls": r.unet_calls, "batch": 2, "size": [r.size.0, r.size.1],
        "seconds_per_step": r.per_step_s, "before_first_step_s": r.before_first_step_s,
        "vae_and_output_s": r.after_last_step_s, "total_s": r.total_s,
        "peak_rss_bytes": peak,
    });
    if let Some(py) = &py {
        return image_decode_table(common, value, &r, steps, py);
    }
    print(common, value, || {
        format!(
            "load {load_s:.2} s | {}×{} picture, {} UNet calls (batch 2): {:.4} s/step | VAE {:.4} s | total {:.3} s | peak RSS {}",
            r.size.0,
            r.size.1,
            r.unet_calls,
            r.per_step_s,
            r.after_last_step_s,
            r.total_s,
            peak.map_or("unknown".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
        )
    })
}

/// `mio bench image-decode --pytorch FILE`: ours beside diffusers.
fn image_decode_table(
    common: &Common,
    mut value: serde_json::Value,
    r: &DecodeRun,
    steps: usize,
    py: &serde_json::Value,
) -> Result<()> {
    use side_by_side::Metric;
    let pf = |k: &str| py[k].as_f64();
    // 20-step decode = the time before the first step + 20 steps + VAE and output.
    let full = |step: f64, before: f64, after: f64| before + 20.0 * step + after;
    let ours_full = full(r.per_step_s, r.before_first_step_s, r.after_last_step_s);
    let py_full = pf("seconds_per_step").map(|s| {
        full(
            s,
            pf("before_first_step_s").unwrap_or(0.0),
            pf("vae_s").unwrap_or(0.0),
        )
    });
    let peak = value["peak_rss_bytes"].as_u64().unwrap_or(0);
    let metrics = [
        Metric {
            name: "s / step (UNet, batch 2)",
            ours: r.per_step_s,
            pytorch: pf("seconds_per_step"),
            lower_is_better: true,
        },
        Metric {
            name: "VAE decode + output s",
            ours: r.after_last_step_s,
            pytorch: pf("vae_s"),
            lower_is_better: true,
        },
        Metric {
            name: "20-step decode s",
            ours: ours_full,
            pytorch: py_full,
            lower_is_better: true,
        },
        Metric {
            name: "peak RSS GiB",
            ours: side_by_side::gib(peak),
            pytorch: pf("peak_rss_bytes").map(|b| b / (1u64 << 30) as f64),
            lower_is_better: true,
        },
    ];
    value["rows"] = side_by_side::json_rows(&metrics);
    value["threads"] = side_by_side::threads().into();
    value["load_average"] = side_by_side::load_average().into();
    value["pytorch_threads"] = py["threads"].clone();
    print(common, value, || {
        format!(
            "unCLIP decode {}: {}×{} picture, {steps} steps measured, guidance batched, {} threads (diffusers: {}), load average {:.2}\n{}",
            common.model.display(),
            r.size.0,
            r.size.1,
            side_by_side::threads(),
            py["threads"],
            side_by_side::load_average().unwrap_or(f64::NAN),
            side_by_side::table(&metrics)
        )
    })
}

/// How many decodes `mio bench image-decode` runs.
pub struct DecodeRuns {
    /// Denoising steps per decode.
    pub steps: usize,
    /// Timed decodes (the best is reported).
    pub repeat: usize,
    /// Untimed decodes before them.
    pub warmup: usize,
}

/// One timed decode.
struct DecodeRun {
    total_s: f64,
    per_step_s: f64,
    unet_calls: usize,
    before_first_step_s: f64,
    after_last_step_s: f64,
    size: (u32, u32),
}

/// `n` deterministic 640×480 PNG pictures (gradients with a moving disc), so the benchmark
/// needs no files.
fn synthetic_images(n: usize) -> Result<Vec<ImageInput>> {
    (0..n)
        .map(|k| {
            let img = image::RgbImage::from_fn(640, 480, |x, y| {
                let (cx, cy) = (100 + 40 * k as i64, 240);
                let d = (i64::from(x) - cx).pow(2) + (i64::from(y) - cy).pow(2);
                match d < 80 * 80 {
                    true => image::Rgb([230, 40, 40]),
                    false => image::Rgb([(x / 3) as u8, (y / 2) as u8, ((x + y) / 5) as u8]),
                }
            });
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, image::ImageFormat::Png)?;
            Ok(ImageInput {
                name: format!("synthetic {k}"),
                bytes: bytes.into_inner(),
            })
        })
        .collect()
}

/// Runs `mio bench image-encode`: the whole path the chat uses (decode, PIL-exact resize,
/// EVA ViT, Q-Former, quantizer) on a batch of images, best of `repeat`.
pub fn image_encode(
    common: &Common,
    files: &[PathBuf],
    batch: usize,
    repeat: usize,
    pytorch: Option<&std::path::Path>,
) -> Result<()> {
    let py = side_by_side::read_pytorch(pytorch)?;
    if repeat == 0 || (files.is_empty() && batch == 0) {
        bail!("the benchmark needs at least 1 image and 1 repetition");
    }
    let images = match files.is_empty() {
        true => synthetic_images(batch)?,
        false => files
            .iter()
            .map(|p| crate::media::load_image(p))
            .collect::<Result<Vec<_>>>()?,
    };
    let load_start = std::time::Instant::now();
    // Every codec of the folder loaded up front, as before codecs loaded on first use: the
    // load time is apart from the timed runs and the peak comparable across sessions.
    let (worker, _) = start_with(common, true, CodecLoading::AtLoad)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let mut best = f64::INFINITY;
    let mut codes = vec![];
    for _ in 0..repeat {
        let t = std::time::Instant::now();
        let response = worker
            .run(Request::ImageEncode {
                images: images.clone(),
            })?
            .wait(|_| {})?;
        let Response::ImageCodes { codes: c, .. } = response else {
            bail!("unexpected engine answer")
        };
        best = best.min(t.elapsed().as_secs_f64());
        codes = c;
    }
    let n = images.len();
    let per_s = n as f64 / best.max(1e-9);
    let peak = peak_rss_bytes();
    let value = json!({
        "model": common.model, "device": common.device.to_string(), "load_s": load_s,
        "images": n, "seconds": best, "images_per_s": per_s, "peak_rss_bytes": peak,
    });
    if let Some(py) = &py {
        use side_by_side::Metric;
        let pf = |k: &str| py[k].as_f64();
        let metrics = [
            Metric {
                name: "images / s",
                ours: per_s,
                pytorch: pf("images_per_s"),
                lower_is_better: false,
            },
            Metric {
                name: "s / image",
                ours: best / n.max(1) as f64,
                pytorch: pf("images_per_s").map(|r| 1.0 / r.max(1e-12)),
                lower_is_better: true,
            },
            Metric {
                name: "peak RSS GiB",
                ours: side_by_side::gib(peak.unwrap_or(0)),
                pytorch: pf("peak_rss_bytes").map(|b| b / (1u64 << 30) as f64),
                lower_is_better: true,
            },
        ];
        let mut value = value;
        value["rows"] = side_by_side::json_rows(&metrics);
        value["threads"] = side_by_side::threads().into();
        value["load_average"] = side_by_side::load_average().into();
        value["pytorch_threads"] = py["threads"].clone();
        let theirs: Vec<Vec<u32>> = serde_json::from_value(py["codes"].clone()).unwrap_or_default();
        let same = codes
            .iter()
            .flatten()
            .zip(theirs.iter().flatten())
            .filter(|(a, b)| a == b)
            .count();
        let total = codes.iter().map(Vec::len).sum::<usize>();
        value["codes_equal_to_pytorch"] = json!({ "equal": same, "of": total });
        return print(common, value, || {
            format!(
                "SEED encode {}: {n} images per request, {} threads (PyTorch: {}), load average {:.2}\n{}codes equal to PyTorch's: {same} of {total}",
                common.model.display(),
                side_by_side::threads(),
                py["threads"],
                side_by_side::load_average().unwrap_or(f64::NAN),
                side_by_side::table(&metrics)
            )
        });
    }
    print(common, value, || {
        format!(
            "load {load_s:.2} s | {n} images in {best:.3} s: {per_s:.1} images/s | peak RSS {}",
            peak.map_or("unknown".into(), |b| format!(
                "{:.1} MiB",
                b as f64 / 1048576.0
            ))
        )
    })
}
