//! Side-by-side tables against PyTorch for `mio bench speech|image-encode|image-decode`:
//! the thread count both sides run with (`--threads`), the JSON the PyTorch scripts of
//! `scripts/bench-pytorch/` write (`--pytorch FILE`), and the table with the ratio.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The environment variable candle (and rayon) read for their thread count.
const THREADS_VAR: &str = "RAYON_NUM_THREADS";

/// Makes this process compute with `threads` threads: candle reads `RAYON_NUM_THREADS`
/// once, so when it differs the command runs again as a child with it set, and this
/// process exits with the child's status. `None`: leave the default (all cores).
pub fn ensure_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else { return Ok(()) };
    if std::env::var(THREADS_VAR)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        == Some(n)
    {
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the mio executable")?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(THREADS_VAR, n.to_string())
        .status()
        .context("cannot re-run mio with the thread count set")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// Threads candle computes with in this process.
pub fn threads() -> usize {
    candle_core::utils::get_num_threads()
}

/// One-minute load average (`/proc/loadavg`), to state the machine's load with the figures.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The JSON a `scripts/bench-pytorch/*.py bench` run wrote.
pub fn read_pytorch(path: Option<&Path>) -> Result<Option<Value>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the PyTorch figures {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not the JSON of a bench-pytorch script",
            path.display()
        )
    })?;
    Ok(Some(v))
}

/// One measured quantity: name, ours, PyTorch's, and whether lower is better.
pub struct Metric {
    /// Row label.
    pub name: &'static str,
    /// Our figure.
    pub ours: f64,
    /// PyTorch's, when known.
    pub pytorch: Option<f64>,
    /// True for times and memory (the speed-up is PyTorch / ours), false for rates.
    pub lower_is_better: bool,
}

impl Metric {
    /// How many times better ours is (>1: ours is faster / smaller).
    pub fn ratio(&self) -> Option<f64> {
        let p = self.pytorch?;
        Some(match self.lower_is_better {
            true => p / self.ours.max(1e-12),
            false => self.ours / p.max(1e-12),
        })
    }
}

/// A Markdown table of `metrics`: | metric | mio | PyTorch | mio vs PyTorch |.
pub fn table(metrics: &[Metric]) -> String {
    let mut s = String::from("| metric | mio | PyTorch | mio vs PyTorch |\n|---|---|---|---|\n");
    for m in metrics {
        let p = m.pytorch.map_or("-".into(), fmt);
        let r = m.ratio().map_or("-".into(), |r| format!("{r:.2}x"));
        s += &format!("| {} | {} | {p} | {r} |\n", m.name, fmt(m.ours));
    }
    s
}

fn fmt(x: f64) -> String {
    match x.abs() {
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.4}"),
    }
}

/// Bytes as GiB.
pub fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// The metrics as JSON rows (with the ratio).
pub fn json_rows(metrics: &[Metric]) -> Value {
    metrics
        .iter()
        .map(|m| {
            serde_json::json!({
                "metric": m.name, "mio": m.ours, "pytorch": m.pytorch, "ratio": m.ratio(),
            })
        })
        .collect()
}
