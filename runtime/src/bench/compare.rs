//! `mio bench lm --compare`: the same GGUF on our llama.cpp backend, our candle backend and
//! llama.cpp's own `llama-bench` (built from the source the crate vendors), side by side,
//! with each one's peak memory and the memory-bandwidth bound of decoding.
//!
//! Each backend runs in a child `mio bench lm` process so that its peak RSS is its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::bandwidth::read_bandwidth;
use crate::cli::Common;
use crate::commands::print;

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    prefill_tps: f64,
    decode_tps: f64,
    peak_rss: Option<u64>,
}

/// What to run.
pub struct CompareArgs<'a> {
    /// Model folder, GGUF and device flags.
    pub common: &'a Common,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Decoded tokens.
    pub decode_tokens: usize,
    /// Repetitions (best kept for ours; llama-bench averages its own).
    pub repeat: usize,
    /// The `llama-bench` binary (None: skip that row).
    pub llama_bench: Option<PathBuf>,
}

/// Peak RSS of a running child: its `VmHWM`, read until it exits.
fn wait_with_peak(mut child: std::process::Child) -> Result<(std::process::Output, Option<u64>)> {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = None;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = std::io::Read::read_to_string(out, &mut s);
        }
        s
    });
    loop {
        if let Some(kb) = std::fs::read_to_string(&status_path).ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        }) {
            peak = Some(kb * 1024);
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let stdout = reader.join().unwrap_or_default();
    Ok((
        std::process::Output {
            status: out.status,
            stdout: stdout.into_bytes(),
            stderr: out.stderr,
        },
        peak,
    ))
}

fn ours(args: &CompareArgs<'_>, backend: &str, gguf: &Path) -> Result<Row> {
    let exe = std::env::current_exe().context("cannot find the mio executable")?;
    let c = args.common;
    let out = Command::new(exe)
        .args(["bench", "lm", "--json", "--backend", backend])
        .arg("--model")
        .arg(&c.model)
        .arg("--lm")
        .arg(gguf)
        .args(["--device", &c.device.to_string()])
        .args(["--prompt-tokens", &args.prompt_tokens.to_string()])
        .args(["--decode-tokens", &args.decode_tokens.to_string()])
        .args(["--repeat", &args.repeat.to_string()])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()?;
    if !out.status.success() {
        bail!(
            "the {backend} run failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("bench output")?;
    Ok(Row {
        name: format!("mio {backend}"),
        prefill_tps: v["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
        decode_tps: v["decode_tokens_per_s"].as_f64().unwrap_or(0.0),
        peak_rss: v["peak_rss_bytes"].as_u64(),
    })
}

/// One `llama-bench` run: its JSON test list and the child's peak RSS.
fn llama_bench_run(bin: &Path, gguf: &Path, extra: &[String]) -> Result<(Vec<Value>, Option<u64>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let child = Command::new(bin)
        .arg("-m")
        .arg(gguf)
        .args(extra)
        .args(["-t", &threads.to_string(), "-ngl", "0", "-o", "json"])
        // `-lm none`: read, not mapped, as our llama.cpp backend loads, so peak RSS is like for like
        // (a mapped file keeps its page cache and the repacked copy resident together).
        .args(["-lm", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let (out, peak) = wait_with_peak(child)?;
    if !out.status.success() {
        bail!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("llama-bench JSON")?;
    let tests = v
        .as_array()
        .context("llama-bench JSON is not a list")?
        .clone();
    Ok((tests, peak))
}

/// llama-bench measured like ours: prefill of the prompt from an empty cache, and decode
/// *after* the prompt (`-d`, the depth our decode starts at; its plain `tg` test would decode
/// from an empty cache, which is cheaper).
fn llama_bench(args: &CompareArgs<'_>, bin: &Path, gguf: &Path) -> Result<Row> {
    let (p, n, r) = (
        args.prompt_tokens.to_string(),
        args.decode_tokens.to_string(),
        args.repeat.to_string(),
    );
    let strs = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (pp, pp_peak) = llama_bench_run(bin, gguf, &strs(&["-p", &p, "-n", "0", "-r", &r]))?;
    let (tg, tg_peak) =
        llama_bench_run(bin, gguf, &strs(&["-p", "0", "-n", &n, "-d", &p, "-r", &r]))?;
    let rate = |tests: &[Value], key: &str| {
        tests
            .iter()
            .find(|t| t[key].as_u64().unwrap_or(0) > 0)
            .and_then(|t| t["avg_ts"].as_f64())
            .unwrap_or(0.0)
    };
    Ok(Row {
        name: "llama-bench".into(),
        prefill_tps: rate(&pp, "n_prompt"),
        decode_tps: rate(&tg, "n_gen"),
        peak_rss: pp_peak.max(tg_peak),
    })
}

fn gib(b: Option<u64>) -> String {
    b.map_or("?".into(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

/// Runs the comparison and prints the table.
pub fn compare(args: &CompareArgs<'_>) -> Result<()> {
    let Some(gguf) = args.common.lm.clone() else {
        bail!("--compare runs one GGUF on every backend: pass --lm FILE.gguf");
    };
    let summary = mio_models::lm::validate_gguf(&gguf, None)?;
    let model_bytes = summary.data_bytes;
    let mut rows = vec![];
    if let Some(bin) = &args.llama_bench {
        rows.push(llama_bench(args, bin, &gguf)?);
    }
    rows.push(ours(args, "llamacpp", &gguf)?);
    rows.push(ours(args, "candle", &gguf)?);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bw = read_bandwidth(threads);
    let bound = bw / model_bytes.max(1) as f64;
    let base = rows
        .iter()
        .find(|r| r.name == "llama-bench")
        .map(|r| r.decode_tps);
    let table: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "backend": r.name, "prefill_tokens_per_s": r.prefill_tps,
                "decode_tokens_per_s": r.decode_tps, "peak_rss_bytes": r.peak_rss,
                "decode_vs_llama_bench": base.map(|b| r.decode_tps / b.max(1e-9)),
                "decode_vs_bandwidth_bound": r.decode_tps / bound.max(1e-9),
            })
        })
        .collect();
    let value = json!({
        "gguf": gguf, "tensor_types": summary.tensor_types, "model_bytes": model_bytes,
        "threads": threads, "prompt_tokens": args.prompt_tokens,
        "decode_tokens": args.decode_tokens, "read_bandwidth_bytes_per_s": bw,
        "decode_bound_tokens_per_s": bound, "rows": table,
    });
    print(args.common, value, || {
        let mut s = format!(
            "{}: {:.2} GiB of weights, {threads} threads, prompt {} / decode {} tokens\n",
            gguf.display(),
            model_bytes as f64 / (1u64 << 30) as f64,
            args.prompt_tokens,
            args.decode_tokens
        );
        s += "| backend | prefill tok/s | decode tok/s | decode vs llama-bench | decode vs bound | peak RSS |\n|---|---|---|---|---|---|\n";
        for r in &rows {
            let ratio = base.map_or("-".into(), |b| {
                format!("{:.2}x", r.decode_tps / b.max(1e-9))
            });
            s += &format!(
                "| {} | {:.1} | {:.2} | {ratio} | {:.0}% | {} |\n",
                r.name,
                r.prefill_tps,
                r.decode_tps,
                100.0 * r.decode_tps / bound.max(1e-9),
                gib(r.peak_rss)
            );
        }
        s += &format!(
            "memory read bandwidth {:.1} GB/s -> decode bound {:.2} tok/s for these weights",
            bw / 1e9,
            bound
        );
        s
    })
}
