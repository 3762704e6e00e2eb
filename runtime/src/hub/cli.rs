//! `mio download` on the command line: a progress bar with throughput and ETA on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use super::{download, DownloadOptions, DownloadProgress, HubClient};
use crate::import::bar_line;

/// Runs `mio download`.
pub fn run(opts: DownloadOptions, endpoint: Option<String>, json_out: bool) -> Result<()> {
    let client = HubClient::new(endpoint, None);
    let start = Instant::now();
    let mut last = Instant::now();
    let mut drawn = false;
    let mut bar = |p: &DownloadProgress| {
        if json_out || last.elapsed().as_millis() < 250 {
            return;
        }
        last = Instant::now();
        drawn = true;
        let rate = p.bytes_fetched as f64 / start.elapsed().as_secs_f64().max(1e-3);
        eprint!("\r{}", bar_line(p.bytes_done, p.bytes_total, rate, &p.file));
        let _ = std::io::stderr().flush();
    };
    let result = download(&client, &opts, None, &mut bar);
    if drawn {
        eprintln!();
    }
    let report = result?;
    let secs = start.elapsed().as_secs_f64();
    if json_out {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let out: PathBuf = report.out.clone();
    eprintln!(
        "{} files verified in {} ({} fetched in {secs:.1} s, {} already there; {} skipped: variants MIO does not read, --all-files keeps them). Next: mio import --release {} --out MODELDIR",
        report.files.len(),
        out.display(),
        report.bytes_fetched,
        report.already_present,
        report.skipped.len(),
        out.display()
    );
    Ok(())
}
