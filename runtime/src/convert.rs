//! `mio convert`: the release's LM to GGUF, with a progress line on stderr.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use mio_models::convert::convert_release;
use mio_models::lm::{GgufProgress, GgufType};
use serde_json::json;

/// Runs `mio convert`.
pub fn run(model: &Path, out: &Path, ty: &str, force: bool, json_out: bool) -> Result<()> {
    let ty: GgufType = ty.parse()?;
    let start = Instant::now();
    let mut last = Instant::now();
    let mut bytes = 0;
    let mut progress = |p: &GgufProgress| {
        bytes = p.bytes_total;
        let due = last.elapsed().as_millis() >= 200 || p.done == p.total;
        if !json_out && due {
            last = Instant::now();
            let pct = 100.0 * p.bytes_done as f64 / p.bytes_total.max(1) as f64;
            eprint!(
                "\r[{:>5.1}%] {}/{} tensors  {:<28}",
                pct, p.done, p.total, p.tensor
            );
            let _ = std::io::stderr().flush();
        }
        Ok(())
    };
    convert_release(model, out, ty, force, &mut progress)
        .with_context(|| format!("cannot convert {}", model.display()))?;
    let secs = start.elapsed().as_secs_f64();
    if json_out {
        println!(
            "{}",
            json!({ "out": out, "type": format!("{ty:?}"), "data_bytes": bytes, "seconds": secs })
        );
    } else {
        eprintln!(
            "\nwrote {} ({:.1} MiB of tensors) in {secs:.1} s",
            out.display(),
            bytes as f64 / 1048576.0
        );
    }
    Ok(())
}
