//! Downloads a repo revision into a folder, resumably and verified.
//!
//! - Every file is written to `<name>.part`, appended to with `Range` after an interruption
//!   (a kill, a dropped connection), hashed while it streams (the part already on disk is
//!   hashed first), checked against the hub's LFS sha256 (large files) or git blob id (small
//!   files), fsynced and only then renamed: a file under its final name is always whole and
//!   verified.
//! - `.mio-download.json` remembers each verified file's size, modification time and digest,
//!   so a resumed download does not re-hash gigabytes it already checked.
//! - Connection errors are retried with backoff (0.5 s doubling, 6 tries), resuming where
//!   the bytes stopped. The free disk space is checked up front against what is left to fetch.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::api::{Fetch, HubClient, RepoFile};
use super::select::select;

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// `owner/name` on the hub, e.g. `m-a-p/MIO-7B-Instruct`.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// The folder to fill (created; an interrupted download there is resumed).
    pub out: PathBuf,
    /// Keep every file, including weight variants MIO does not read (see `select`).
    pub all_files: bool,
}

/// Progress of a download, reported often (at most every 64 KiB of a file).
#[derive(Debug, Clone, Serialize)]
pub struct DownloadProgress {
    /// The file being fetched.
    pub file: String,
    /// Bytes of every kept file present and verified, or fetched so far.
    pub bytes_done: u64,
    /// Bytes of every kept file.
    pub bytes_total: u64,
    /// Bytes fetched in this run (for throughput; resumed bytes are not counted).
    pub bytes_fetched: u64,
}

/// What a download did.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadReport {
    /// The folder.
    pub out: PathBuf,
    /// Files present and verified at the end.
    pub files: Vec<RepoFile>,
    /// Files not downloaded (weight variants MIO does not read, repo metadata).
    pub skipped: Vec<String>,
    /// Bytes fetched in this run.
    pub bytes_fetched: u64,
    /// Files that were already complete and verified.
    pub already_present: usize,
}

const STATE_FILE: &str = ".mio-download.json";
const TRIES: u32 = 6;

#[derive(Default, Serialize, Deserialize)]
struct State {
    files: BTreeMap<String, Verified>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct Verified {
    size: u64,
    mtime_ns: u128,
    digest: String,
}

/// Downloads `opts.repo` at `opts.revision` into `opts.out`; `cancel` stops it between
/// chunks, leaving the `.part` files to resume from.
pub fn download(
    client: &HubClient,
    opts: &DownloadOptions,
    cancel: Option<&AtomicBool>,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<DownloadReport> {
    let listed = client.list(&opts.repo, &opts.revision)?;
    let (files, skipped) = select(listed, opts.all_files);
    for f in &files {
        safe_relative(&f.path)?;
    }
    fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut state = read_state(&opts.out);
    let mut todo = vec![];
    let mut done = 0u64;
    for f in &files {
        let path = opts.out.join(&f.path);
        if is_verified(&state, f, &path) {
            done += f.size;
        } else {
            todo.push(f);
        }
    }
    let already_present = files.len() - todo.len();
    check_space(&opts.out, &todo)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut p = DownloadProgress {
        file: String::new(),
        bytes_done: done,
        bytes_total: total,
        bytes_fetched: 0,
    };
    for f in todo {
        p.file = f.path.clone();
        let path = opts.out.join(&f.path);
        let digest = fetch_file(client, opts, f, &path, cancel, &mut p, progress)?;
        state
            .files
            .insert(f.path.clone(), verified(&path, f.size, digest)?);
        write_state(&opts.out, &state)?;
    }
    progress(&p);
    Ok(DownloadReport {
        out: opts.out.clone(),
        files,
        skipped: skipped.into_iter().map(|f| f.path).collect(),
        bytes_fetched: p.bytes_fetched,
        already_present,
    })
}

/// Refuses absolute paths and `..` from the server.
fn safe_relative(path: &str) -> Result<()> {
    let p = Path::new(path);
    if path.is_empty()
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("the hub listed an unsafe file path {path:?}");
    }
    Ok(())
}

fn check_space(out: &Path, todo: &[&RepoFile]) -> Result<()> {
    let mut need = 0u64;
    for f in todo {
        let part = part_path(&out.join(&f.path));
        let have = fs::metadata(&part).map_or(0, |m| m.len());
        need += f.size.saturating_sub(have);
    }
    let free = fs2::available_space(out).with_context(|| format!("{}", out.display()))?;
    if need > free {
        bail!(
            "not enough disk space in {}: the download needs {:.2} GiB more, {:.2} GiB are free",
            out.display(),
            need as f64 / (1u64 << 30) as f64,
            free as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// A hasher of the digest the hub publishes for `f`.
enum Hasher {
    Lfs(Sha256),
    Git(Sha1),
}

impl Hasher {
    fn new(f: &RepoFile) -> Self {
        if f.sha256.is_some() {
            Hasher::Lfs(Sha256::new())
        } else {
            let mut h = Sha1::new();
            h.update(format!("blob {}\0", f.size).as_bytes());
            Hasher::Git(h)
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Lfs(h) => h.update(b),
            Hasher::Git(h) => h.update(b),
        }
    }
    fn finish(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Lfs(h) => h.finalize().to_vec(),
            Hasher::Git(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn expected(f: &RepoFile) -> &str {
    f.sha256.as_deref().unwrap_or(&f.git_oid)
}

/// Fetches one file into place; returns its verified digest.
fn fetch_file(
    client: &HubClient,
    opts: &DownloadOptions,
    f: &RepoFile,
    path: &Path,
    cancel: Option<&AtomicBool>,
    p: &mut DownloadProgress,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let part = part_path(path);
    let mut hasher = Hasher::new(f);
    let mut have = hash_existing(&part, f.size, &mut hasher)?;
    let base_done = p.bytes_done;
    p.bytes_done = base_done + have;
    let mut tries = 0;
    while have < f.size {
        match append_from(
            client,
            opts,
            f,
            &part,
            have,
            &mut hasher,
            cancel,
            p,
            progress,
        ) {
            Ok(n) => {
                have += n;
                tries = 0;
            }
            Err(Step::Restart) => {
                // The server ignored Range: start the file over.
                hasher = Hasher::new(f);
                have = 0;
                File::create(&part).with_context(|| format!("cannot write {}", part.display()))?;
                p.bytes_done = base_done;
            }
            Err(Step::Fail(e)) => return Err(e),
            Err(Step::Retry(why)) => {
                tries += 1;
                if tries >= TRIES {
                    return Err(client.explain(Fetch::Transport(why), &opts.repo, &f.path));
                }
                std::thread::sleep(Duration::from_millis(500 << (tries - 1)));
            }
        }
    }
    if have > f.size {
        let _ = fs::remove_file(&part);
        bail!(
            "{}: the server sent more than its listed {} bytes",
            f.path,
            f.size
        );
    }
    let digest = hasher.finish();
    if digest != expected(f) {
        let _ = fs::remove_file(&part);
        bail!(
            "{} is corrupt: its checksum is {digest}, the hub publishes {} (the partial file was removed; run again to fetch it anew)",
            f.path,
            expected(f)
        );
    }
    File::open(&part)
        .and_then(|h| h.sync_all())
        .with_context(|| format!("cannot sync {}", part.display()))?;
    fs::rename(&part, path).with_context(|| format!("cannot rename {}", part.display()))?;
    Ok(digest)
}

/// Feeds the bytes already in `part` to `hasher`; returns how many (a part longer than the
/// file is discarded).
fn hash_existing(part: &Path, size: u64, hasher: &mut Hasher) -> Result<u64> {
    let Ok(mut file) = File::open(part) else {
        return Ok(0);
    };
    let len = file.metadata().map_or(0, |m| m.len());
    if len > size {
        drop(file);
        fs::remove_file(part).with_context(|| format!("cannot remove {}", part.display()))?;
        return Ok(0);
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", part.display()))?;
        if k == 0 {
            return Ok(n);
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
}

enum Step {
    Restart,
    Retry(String),
    Fail(anyhow::Error),
}

/// One request: appends what the server sends to `part`; returns the bytes appended.
#[allow(clippy::too_many_arguments)]
fn append_from(
    client: &HubClient,
    opts: &DownloadOptions,
    f: &RepoFile,
    part: &Path,
    from: u64,
    hasher: &mut Hasher,
    cancel: Option<&AtomicBool>,
    p: &mut DownloadProgress,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> std::result::Result<u64, Step> {
    let resp = match client.open(&opts.repo, &opts.revision, &f.path, from) {
        Ok(r) => r,
        Err(Fetch::Transport(t)) => return Err(Step::Retry(t)),
        Err(Fetch::Status(s @ (500..=599 | 429))) => {
            return Err(Step::Retry(format!("status {s}")))
        }
        Err(e) => return Err(Step::Fail(client.explain(e, &opts.repo, &f.path))),
    };
    if from > 0 && resp.status() != 206 {
        return Err(Step::Restart);
    }
    let fail =
        |e: std::io::Error| Step::Fail(anyhow::anyhow!("cannot write {}: {e}", part.display()));
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(fail)?;
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 64 << 10];
    let mut n = 0u64;
    let mut last = Instant::now();
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Step::Fail(anyhow::anyhow!(
                "download cancelled (run it again to resume)"
            )));
        }
        let k = match reader.read(&mut buf) {
            Ok(0) if n == 0 => return Err(Step::Retry("the server sent no bytes".into())),
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) => {
                // Keep what arrived; the caller resumes from there.
                out.flush().map_err(fail)?;
                return if n > 0 {
                    Ok(n)
                } else {
                    Err(Step::Retry(e.to_string()))
                };
            }
        };
        out.write_all(&buf[..k]).map_err(fail)?;
        hasher.update(&buf[..k]);
        n += k as u64;
        p.bytes_done += k as u64;
        p.bytes_fetched += k as u64;
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            progress(p);
        }
    }
}

fn mtime_ns(path: &Path) -> Option<(u64, u128)> {
    let m = fs::metadata(path).ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((m.len(), t.as_nanos()))
}

fn verified(path: &Path, size: u64, digest: String) -> Result<Verified> {
    let (len, mtime_ns) = mtime_ns(path).with_context(|| format!("{}", path.display()))?;
    if len != size {
        bail!("{} changed while it was written", path.display());
    }
    Ok(Verified {
        size,
        mtime_ns,
        digest,
    })
}

fn is_verified(state: &State, f: &RepoFile, path: &Path) -> bool {
    let Some(v) = state.files.get(&f.path) else {
        return false;
    };
    v.size == f.size && v.digest == expected(f) && mtime_ns(path) == Some((f.size, v.mtime_ns))
}

fn read_state(out: &Path) -> State {
    fs::read(out.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_state(out: &Path, state: &State) -> Result<()> {
    let path = out.join(STATE_FILE);
    let tmp = out.join(format!("{STATE_FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(state)?;
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let f = RepoFile {
            path: "x".into(),
            size: 6,
            git_oid: String::new(),
            sha256: None,
        };
        let mut h = Hasher::new(&f);
        h.update(b"hello\n");
        assert_eq!(h.finish(), "ce013625030ba8dba906f756967f9e9ca394464a");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert!(safe_relative(p).is_err(), "{p}");
        }
        assert!(safe_relative("a/b.bin").is_ok());
    }
}
