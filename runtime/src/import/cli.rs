//! `mio import` on the command line: a progress bar with throughput and ETA on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use super::run::{import_release, ImportOptions, ImportProgress};

fn human(bytes: f64) -> String {
    match bytes {
        b if b >= (1u64 << 30) as f64 => format!("{:.2} GiB", b / (1u64 << 30) as f64),
        b if b >= (1u64 << 20) as f64 => format!("{:.1} MiB", b / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", b / 1024.0),
    }
}

fn eta(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One progress-bar line: bar, percent, throughput (`rate` bytes/s), ETA and `what`.
pub(crate) fn bar_line(done: u64, total: u64, rate: f64, what: &str) -> String {
    let frac = done as f64 / total.max(1) as f64;
    let left = total.saturating_sub(done) as f64 / rate.max(1.0);
    let filled = ((frac * 30.0) as usize).min(30);
    format!(
        "[{}{}] {:>5.1}% {}/s ETA {} {:<40.40}",
        "#".repeat(filled),
        "-".repeat(30 - filled),
        100.0 * frac,
        human(rate),
        eta(left),
        what
    )
}

/// Runs `mio import`.
pub fn run(
    release: PathBuf,
    out: PathBuf,
    quant: String,
    checksums: Option<PathBuf>,
    write_limit: Option<u64>,
    json_out: bool,
) -> Result<()> {
    let opts = ImportOptions {
        release,
        out,
        quant,
        checksums,
        write_limit,
        free_space: None,
        cancel: None,
    };
    let start = Instant::now();
    let mut last = Instant::now();
    let mut drawn = false;
    let mut bar = |p: &ImportProgress| {
        let finished = p.bytes_done >= p.bytes_total;
        if json_out || (last.elapsed().as_millis() < 250 && !finished) {
            return;
        }
        last = Instant::now();
        drawn = true;
        let rate = p.bytes_done as f64 / start.elapsed().as_secs_f64().max(1e-3);
        let what = format!("{} {}", p.stage, p.file);
        eprint!("\r{}", bar_line(p.bytes_done, p.bytes_total, rate, &what));
        let _ = std::io::stderr().flush();
    };
    let result = import_release(&opts, &mut bar);
    if drawn && result.is_ok() {
        eprint!("\r[{}] 100.0% {:<70}", "#".repeat(30), "done");
    }
    if drawn {
        eprintln!();
    }
    let report = result?;
    let secs = start.elapsed().as_secs_f64();
    if json_out {
        println!(
            "{}",
            serde_json::json!({
                "out": report.out,
                "written": report.written,
                "kept": report.kept,
                "unverified": report.unverified,
                "lm_file": report.manifest.lm_file,
                "seconds": secs,
            })
        );
        return Ok(());
    }
    if !report.unverified.is_empty() {
        eprintln!(
            "note: no published sha256 was found for {} file(s); their hashes are recorded in manifest.json, unverified (pass --checksums FILE to verify)",
            report.unverified.len()
        );
    }
    eprintln!(
        "imported {} into {} in {secs:.1} s ({} file(s) written, {} kept from an earlier run); load it with --model {}",
        opts.release.display(),
        report.out.display(),
        report.written.len(),
        report.kept.len(),
        report.out.display()
    );
    Ok(())
}
