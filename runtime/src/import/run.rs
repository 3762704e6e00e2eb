//! Running an import: validate and plan, check free space, hash the sources, write each
//! output (temporary name, fsync, rename, recorded in the progress file), then the
//! manifest. A rerun skips the outputs already finished once they are re-verified.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use mio_models::imported::{
    empty_prompt_safetensors, ImportManifest, OutputFile, SourceFile, MANIFEST_FILE,
    MANIFEST_VERSION,
};
use mio_models::pickle::PthFile;
use mio_models::weights_file::pth_to_safetensors;
use serde::Serialize;

use super::hash::{expected_hashes, sha256_file};
use super::plan::{Action, ImportPlan, Step};
use super::state::{
    mtime_ns, partial_path, sync_dir, write_atomic, HashedSource, ImportState, STATE_FILE,
};

/// What to import, and where.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The release folder, as it ships.
    pub release: PathBuf,
    /// MODELDIR: a new or empty folder, or one an interrupted import left.
    pub out: PathBuf,
    /// `q4_k_m`, `q5_k_m`, `q8_0`, `f16` or `f32`.
    pub quant: String,
    /// A `sha256sum`-style file of expected hashes (paths relative to the release).
    pub checksums: Option<PathBuf>,
    /// Test hook: fail like a full disk once this run has written this many bytes.
    pub write_limit: Option<u64>,
    /// Test hook: the free bytes to assume instead of asking the file system.
    pub free_space: Option<u64>,
    /// Set to stop the import at the next write (finished outputs are kept for a rerun).
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Where an import stands.
#[derive(Debug, Clone, Serialize)]
pub struct ImportProgress {
    /// `verify` (hashing a source), `check` (re-verifying a finished output) or `write`.
    pub stage: &'static str,
    /// The file concerned (relative).
    pub file: String,
    /// Bytes of work done so far.
    pub bytes_done: u64,
    /// Bytes of work in all.
    pub bytes_total: u64,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// MODELDIR.
    pub out: PathBuf,
    /// Outputs written by this run.
    pub written: Vec<String>,
    /// Outputs an earlier run had finished (verified, kept).
    pub kept: Vec<String>,
    /// Sources whose hash nothing published (recorded only).
    pub unverified: Vec<String>,
    /// The manifest written.
    pub manifest: ImportManifest,
}

struct Meter<'a> {
    done: u64,
    total: u64,
    /// Where the running step's work ends: its writes never count past it, and when it
    /// finishes the count is brought exactly to it (a step's writes need not add up to its
    /// estimated work, e.g. a GGUF is smaller than the shards it reads).
    step_end: Option<u64>,
    left: Option<u64>,
    cancel: Option<Arc<AtomicBool>>,
    cb: &'a mut dyn FnMut(&ImportProgress),
}

impl Meter<'_> {
    fn tick(&mut self, stage: &'static str, file: &str, n: u64) {
        self.done = (self.done + n).min(self.step_end.unwrap_or(u64::MAX));
        (self.cb)(&ImportProgress {
            stage,
            file: file.to_string(),
            bytes_done: self.done.min(self.total),
            bytes_total: self.total,
        });
    }

    /// Fails once the import is cancelled.
    fn check_cancel(&self) -> std::io::Result<()> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            // Not `Interrupted`: `write_all` and `io::copy` retry those forever.
            return Err(std::io::Error::other("the import was cancelled"));
        }
        Ok(())
    }

    /// Charges `n` written bytes to the test hook's budget; fails when cancelled.
    fn charge(&mut self, n: u64) -> std::io::Result<()> {
        self.check_cancel()?;
        match &mut self.left {
            Some(left) if *left < n => {
                *left = 0;
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device (write limit reached)",
                ))
            }
            Some(left) => {
                *left -= n;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// A writer that charges every write to the meter's budget and reports it as progress.
struct Charged<'m, 'a, W: Write> {
    inner: W,
    meter: &'m mut Meter<'a>,
    name: &'m str,
}

impl<W: Write> Write for Charged<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.meter.charge(buf.len() as u64)?;
        let n = self.inner.write(buf)?;
        self.meter.tick("write", self.name, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Imports `opts.release` into `opts.out`; `progress` is called as work advances.
pub fn import_release(
    opts: &ImportOptions,
    progress: &mut dyn FnMut(&ImportProgress),
) -> Result<ImportReport> {
    let plan = ImportPlan::new(&opts.release, &opts.quant)
        .with_context(|| format!("cannot import {}", opts.release.display()))?;
    let release = std::fs::canonicalize(&opts.release)?;
    let out = opts.out.clone();
    let mut state = prepare_out(&out, &release, &plan)?;
    let mut meter = Meter {
        done: 0,
        total: 0,
        step_end: None,
        left: opts.write_limit,
        cancel: opts.cancel.clone(),
        cb: progress,
    };
    let kept = recheck_outputs(&out, &plan, &mut state, &mut meter)?;
    check_space(&out, &plan, &state, opts.free_space)?;
    let created = !out.exists();
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let result = run_steps(opts, &plan, &release, &mut state, &mut meter);
    match result {
        Ok((written, unverified, manifest)) => Ok(ImportReport {
            out,
            written,
            kept,
            unverified,
            manifest,
        }),
        Err(e) => Err(clean_up_after(&out, &state, created, e)),
    }
}

/// Leaves MODELDIR as it was when nothing was finished; otherwise keeps finished outputs
/// (for a rerun) and says so.
fn clean_up_after(
    out: &Path,
    state: &ImportState,
    created: bool,
    e: anyhow::Error,
) -> anyhow::Error {
    if state.done.is_empty() {
        let _ = std::fs::remove_file(out.join(STATE_FILE));
        if created {
            let _ = std::fs::remove_dir(out);
        }
        return e;
    }
    e.context(format!(
        "the import stopped; {} finished file(s) are kept in {} and the same command resumes it",
        state.done.len(),
        out.display()
    ))
}

fn prepare_out(out: &Path, release: &Path, plan: &ImportPlan) -> Result<ImportState> {
    let fresh = ImportState {
        release: release.to_path_buf(),
        quant: plan.quant_name.clone(),
        ..ImportState::default()
    };
    if !out.exists() {
        return Ok(fresh);
    }
    if !out.is_dir() {
        bail!("{} exists and is not a folder", out.display());
    }
    if out.join(MANIFEST_FILE).is_file() {
        bail!(
            "{} already holds an imported model; choose another folder",
            out.display()
        );
    }
    match ImportState::load(out)? {
        Some(s) if s.release == release && s.quant == plan.quant_name => Ok(s),
        Some(s) => bail!(
            "{} holds an unfinished import of {} as {}; choose another folder",
            out.display(),
            s.release.display(),
            s.quant
        ),
        None if std::fs::read_dir(out)?.next().is_some() => {
            bail!(
                "{} is not empty; choose a new or empty folder",
                out.display()
            )
        }
        None => Ok(fresh),
    }
}

/// Re-hashes the outputs an earlier run finished; drops those that changed or vanished.
fn recheck_outputs(
    out: &Path,
    plan: &ImportPlan,
    state: &mut ImportState,
    meter: &mut Meter,
) -> Result<Vec<String>> {
    let mut kept = vec![];
    for step in &plan.steps {
        let Some(done) = state.done.get(&step.output).cloned() else {
            continue;
        };
        let path = out.join(&step.output);
        let same_size = std::fs::metadata(&path).is_ok_and(|m| m.len() == done.bytes);
        let ok = same_size
            && sha256_file(&path, &mut |n| {
                meter.tick("check", &step.output, n);
                Ok(())
            })? == done.sha256;
        if ok {
            kept.push(step.output.clone());
        } else {
            state.done.remove(&step.output);
        }
    }
    Ok(kept)
}

/// The nearest existing folder at or above `path`.
fn existing_ancestor(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.ancestors()
        .find(|p| p.is_dir())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

fn check_space(
    out: &Path,
    plan: &ImportPlan,
    state: &ImportState,
    free: Option<u64>,
) -> Result<()> {
    let needed: u64 = plan
        .steps
        .iter()
        .filter(|s| !state.done.contains_key(&s.output))
        .map(|s| s.out_bytes)
        .sum::<u64>()
        + (1 << 20);
    let dir = existing_ancestor(out);
    let free = match free {
        Some(f) => f,
        None => fs2::available_space(&dir)
            .with_context(|| format!("cannot tell the free space at {}", dir.display()))?,
    };
    if needed > free {
        bail!(
            "the import needs {:.2} GiB free at {} but only {:.2} GiB is available",
            gib(needed),
            dir.display(),
            gib(free)
        );
    }
    Ok(())
}

type StepsOutcome = (Vec<String>, Vec<String>, ImportManifest);

fn run_steps(
    opts: &ImportOptions,
    plan: &ImportPlan,
    release: &Path,
    state: &mut ImportState,
    meter: &mut Meter,
) -> Result<StepsOutcome> {
    let out = opts.out.as_path();
    let todo: Vec<&Step> = plan
        .steps
        .iter()
        .filter(|s| !state.done.contains_key(&s.output))
        .collect();
    meter.done = 0;
    meter.total = plan.sources.iter().map(|(_, b)| b).sum::<u64>()
        + todo.iter().map(|s| s.work_bytes).sum::<u64>();
    state.save(out)?;
    let unverified = hash_sources(opts, plan, release, state, meter)?;
    let mut written = vec![];
    for step in todo {
        let end = meter.done + step.work_bytes;
        meter.step_end = Some(end);
        let file = run_step(plan, release, out, step, meter)
            .with_context(|| format!("cannot write {}", out.join(&step.output).display()))?;
        meter.step_end = None;
        let rest = end.saturating_sub(meter.done);
        meter.tick("write", &step.output, rest);
        state.done.insert(step.output.clone(), file);
        state.save(out)?;
        written.push(step.output.clone());
    }
    let manifest = write_manifest(plan, release, out, state)?;
    let _ = std::fs::remove_file(out.join(STATE_FILE));
    sync_dir(out);
    Ok((written, unverified, manifest))
}

/// Hashes every source (reusing hashes of unchanged files) and compares with the published
/// hash where one is known. Returns the sources nothing vouches for.
fn hash_sources(
    opts: &ImportOptions,
    plan: &ImportPlan,
    release: &Path,
    state: &mut ImportState,
    meter: &mut Meter,
) -> Result<Vec<String>> {
    let names: Vec<String> = plan.sources.iter().map(|(n, _)| n.clone()).collect();
    let expected = expected_hashes(release, &names, opts.checksums.as_deref())?;
    let mut unverified = vec![];
    for (name, bytes) in &plan.sources {
        let path = release.join(name);
        let mtime = mtime_ns(&path);
        let cached = state
            .sources
            .get(name)
            .filter(|h| h.file.bytes == *bytes && h.mtime_ns == mtime);
        let sha256 = match cached {
            Some(h) => {
                meter.tick("verify", name, *bytes);
                h.file.sha256.clone()
            }
            None => sha256_file(&path, &mut |n| {
                meter.tick("verify", name, n);
                meter.check_cancel()?;
                Ok(())
            })?,
        };
        let want = expected.get(name);
        if let Some(want) = want.filter(|w| w.sha256 != sha256) {
            bail!(
                "{} is corrupt or incomplete: its sha256 is {sha256} but {} says {}; download it again",
                path.display(),
                want.source,
                want.sha256
            );
        }
        if want.is_none() {
            unverified.push(name.clone());
        }
        let file = SourceFile {
            path: name.clone(),
            bytes: *bytes,
            sha256,
            verified_by: want.map(|w| w.source.to_string()),
        };
        state.sources.insert(
            name.clone(),
            HashedSource {
                file,
                mtime_ns: mtime,
            },
        );
    }
    state.save(&opts.out)?;
    Ok(unverified)
}

/// Makes one output via its temporary name; returns its record.
fn run_step(
    plan: &ImportPlan,
    release: &Path,
    out: &Path,
    step: &Step,
    meter: &mut Meter,
) -> Result<OutputFile> {
    let dest = out.join(&step.output);
    let parent = dest.parent().unwrap_or(out);
    std::fs::create_dir_all(parent)?;
    let tmp = partial_path(&dest);
    let result = match step.action {
        Action::Gguf => write_gguf(plan, release, &dest, step, meter),
        _ => write_via(
            &tmp,
            &dest,
            |w, m| write_simple(release, out, step, w, m),
            meter,
        ),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent);
    let bytes = std::fs::metadata(&dest)?.len();
    let sha256 = sha256_file(&dest, &mut |_| Ok(()))?;
    Ok(OutputFile {
        path: step.output.clone(),
        bytes,
        sha256,
        from: step.sources.clone(),
        how: match step.action {
            Action::Copy => "copy".into(),
            Action::Gguf => format!("gguf-{}", plan.quant_name),
            Action::PthToSafetensors => "pickle-to-safetensors".into(),
            Action::PromptEmbeds => "clip-empty-prompt".into(),
        },
    })
}

/// Writes `tmp` through `f` (charged to the budget), fsyncs it and renames it to `dest`.
fn write_via(
    tmp: &Path,
    dest: &Path,
    f: impl FnOnce(&mut dyn Write, &mut Meter) -> Result<()>,
    meter: &mut Meter,
) -> Result<()> {
    let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    f(&mut w, meter)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, dest)?;
    Ok(())
}

fn write_simple(
    release: &Path,
    out: &Path,
    step: &Step,
    w: &mut dyn Write,
    meter: &mut Meter,
) -> Result<()> {
    let src = release.join(step.sources.first().map_or("", String::as_str));
    let name = step.output.as_str();
    let mut charged = Charged {
        inner: w,
        meter,
        name,
    };
    match step.action {
        Action::Copy => {
            let mut input =
                File::open(&src).with_context(|| format!("cannot open {}", src.display()))?;
            std::io::copy(&mut input, &mut charged)?;
        }
        Action::PthToSafetensors => {
            let pth = PthFile::open(&src)?;
            let meta = BTreeMap::from([("source".to_string(), step.sources.join(","))]);
            let dest = partial_path(&out.join(name));
            pth_to_safetensors(&pth, &mut charged, &dest, &meta, &mut |_| Ok(()))?;
        }
        Action::PromptEmbeds => {
            let sd = release.join(mio_models::image_decoder::UNCLIP_DIR);
            let key = sha256_file(&src, &mut |_| Ok(()))?;
            let bytes = empty_prompt_safetensors(&sd, &key, &candle_core::Device::Cpu)?;
            charged.write_all(&bytes)?;
        }
        Action::Gguf => bail!("internal: the GGUF step is not a simple write"),
    }
    Ok(())
}

fn write_gguf(
    plan: &ImportPlan,
    release: &Path,
    dest: &Path,
    step: &Step,
    meter: &mut Meter,
) -> Result<()> {
    let mut reported = 0u64;
    let mut progress = |p: &mio_models::lm::GgufProgress| -> mio_models::Result<()> {
        let new = p.bytes_done.saturating_sub(reported);
        reported = p.bytes_done;
        meter
            .charge(new)
            .map_err(|e| mio_models::Error::io(dest, e))?;
        let work = step.work_bytes as f64 * new as f64 / p.bytes_total.max(1) as f64;
        meter.tick("write", &step.output, work as u64);
        Ok(())
    };
    mio_models::convert::convert_release(release, dest, plan.quant, true, &mut progress)?;
    Ok(())
}

fn write_manifest(
    plan: &ImportPlan,
    release: &Path,
    out: &Path,
    state: &ImportState,
) -> Result<ImportManifest> {
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let manifest = ImportManifest {
        version: MANIFEST_VERSION,
        tool: format!("mio {}", env!("CARGO_PKG_VERSION")),
        release: release.to_path_buf(),
        quant: plan.quant_name.clone(),
        lm_file: plan.lm_file(),
        created_unix,
        sources: state.sources.values().map(|h| h.file.clone()).collect(),
        outputs: plan
            .steps
            .iter()
            .filter_map(|s| state.done.get(&s.output).cloned())
            .collect(),
    };
    write_atomic(
        &out.join(MANIFEST_FILE),
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_ends_write_all_and_copy_instead_of_retrying_them() {
        let cancel = Arc::new(AtomicBool::new(false));
        let mut seen = 0;
        let mut cb = |_: &ImportProgress| seen += 1;
        let mut meter = Meter {
            done: 0,
            total: 10,
            step_end: None,
            left: None,
            cancel: Some(cancel.clone()),
            cb: &mut cb,
        };
        let mut out = vec![];
        {
            let mut w = Charged {
                inner: &mut out,
                meter: &mut meter,
                name: "x",
            };
            w.write_all(b"abc").unwrap();
            cancel.store(true, Ordering::Relaxed);
            // `write_all` and `io::copy` retry `Interrupted` errors: a cancel must not be one.
            let e = w.write_all(b"def").unwrap_err();
            assert_eq!(e.to_string(), "the import was cancelled");
            let e = std::io::copy(&mut &b"ghi"[..], &mut w).unwrap_err();
            assert_ne!(e.kind(), std::io::ErrorKind::Interrupted);
        }
        assert_eq!(out, b"abc");
        assert_eq!(seen, 1);
    }
}
