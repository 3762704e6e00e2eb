//! `mio import` when things go wrong: an interrupted import resumes redoing only what is
//! missing; a missing, foreign, truncated or hostile shard, a tokenizer config without its
//! added tokens, too little free disk and a disk that fills mid-import each give one clear
//! error and leave nothing half-written in MODELDIR.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use anyhow::Result;
use mio_models::imported::ImportManifest;
use mio_runtime::import::{import_release, ImportOptions};
use mio_tests::{fixtures, release_layout};

const SHARD1: &str = "pytorch_model-00001-of-00002.bin";
const SHARD2: &str = "pytorch_model-00002-of-00002.bin";

/// A copy of the release-layout folder (files copied, sub-folders linked).
fn release_copy(dir: &Path) -> PathBuf {
    let root = dir.join("release");
    std::fs::create_dir_all(&root).unwrap();
    for e in std::fs::read_dir(release_layout()).unwrap() {
        let e = e.unwrap();
        let dest = root.join(e.file_name());
        let src = std::fs::canonicalize(e.path()).unwrap();
        if src.is_dir() {
            std::os::unix::fs::symlink(&src, &dest).unwrap();
        } else {
            std::fs::copy(&src, &dest).unwrap();
        }
    }
    root
}

fn options(release: &Path, out: &Path) -> ImportOptions {
    ImportOptions {
        release: release.to_path_buf(),
        out: out.to_path_buf(),
        quant: "q8_0".into(),
        ..ImportOptions::default()
    }
}

fn error_of(opts: &ImportOptions) -> String {
    let err = import_release(opts, &mut |_| {}).unwrap_err();
    let text = mio_runtime::commands::one_sentence(&err);
    eprintln!("{text}");
    text
}

/// Every file under `dir`, relative.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn interrupted_import_resumes_and_redoes_only_what_is_missing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("m");
    // A disk that fills after the LM: the GGUF is finished, the next outputs are not.
    let gguf_bytes = 2_400_000;
    let opts = ImportOptions {
        write_limit: Some(gguf_bytes + 3_000_000),
        ..options(&release_layout(), &out)
    };
    let err = error_of(&opts);
    assert!(
        err.contains("no space left") && err.contains("resumes"),
        "{err}"
    );
    let left = listing(&out);
    assert!(left.iter().all(|f| !f.ends_with(".partial")), "{left:?}");
    assert!(left.contains(&"model-q8_0.gguf".to_string()), "{left:?}");
    assert!(!left.contains(&"manifest.json".to_string()));
    let finished = left.len() - 1; // minus the progress file

    // A kill after that: one finished output lost, one damaged.
    std::fs::remove_file(out.join("config.json"))?;
    std::fs::write(out.join("tokenizer.model"), b"damaged")?;
    let report = import_release(&options(&release_layout(), &out), &mut |_| {})?;
    assert_eq!(report.kept.len(), finished - 2, "kept {:?}", report.kept);
    assert!(report.kept.contains(&"model-q8_0.gguf".to_string()));
    assert!(report.written.contains(&"config.json".to_string()));
    assert!(report.written.contains(&"tokenizer.model".to_string()));
    assert!(!report.written.contains(&"model-q8_0.gguf".to_string()));

    // The result equals a fresh import, file for file.
    let fresh = tmp.path().join("fresh");
    import_release(&options(&release_layout(), &fresh), &mut |_| {})?;
    let a = ImportManifest::read(&out)?.unwrap();
    let b = ImportManifest::read(&fresh)?.unwrap();
    let key = |m: &ImportManifest| {
        m.outputs
            .iter()
            .map(|o| (o.path.clone(), o.sha256.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(key(&a), key(&b));
    assert_eq!(listing(&out), listing(&fresh));
    // A finished folder is not imported into again.
    assert!(error_of(&options(&release_layout(), &out)).contains("already holds"));
    Ok(())
}

/// Each broken release fails before anything is written: MODELDIR is never created.
fn refused(release: &Path, out: &Path, expect: &str) {
    let err = error_of(&options(release, out));
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(!out.exists(), "{} was left behind", out.display());
}

#[test]
fn broken_releases_are_refused_with_one_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("m");

    let r = release_copy(&tmp.path().join("missing"));
    std::fs::remove_file(r.join(SHARD2))?;
    refused(&r, &out, SHARD2);

    let r = release_copy(&tmp.path().join("foreign"));
    let cfg = std::fs::read_to_string(r.join("config.json"))?;
    let cfg = cfg.replace("\"intermediate_size\": 172", "\"intermediate_size\": 176");
    std::fs::write(r.join("config.json"), cfg)?;
    refused(&r, &out, "shape");

    let r = release_copy(&tmp.path().join("truncated"));
    let bytes = std::fs::read(r.join(SHARD1))?;
    std::fs::write(r.join(SHARD1), &bytes[..bytes.len() / 2])?;
    refused(&r, &out, SHARD1);

    let r = release_copy(&tmp.path().join("hostile"));
    std::fs::copy(fixtures().join("pickle/malicious.pt"), r.join(SHARD2))?;
    refused(&r, &out, "posix.system");

    let r = release_copy(&tmp.path().join("no-added-tokens"));
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("tokenizer_config.json"))?)?;
    cfg.as_object_mut().unwrap().remove("added_tokens_decoder");
    std::fs::write(r.join("tokenizer_config.json"), cfg.to_string())?;
    let err = error_of(&options(&r, &out));
    assert!(err.contains("token"), "{err}");
    assert!(!out.exists());
    Ok(())
}

#[test]
fn too_little_disk_is_refused_up_front_and_a_full_disk_leaves_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("m");
    let opts = ImportOptions {
        free_space: Some(1 << 20),
        ..options(&release_layout(), &out)
    };
    let err = error_of(&opts);
    assert!(err.contains("needs") && err.contains("GiB free"), "{err}");
    assert!(!out.exists());

    // The disk fills inside the first output (the LM): nothing finished, nothing kept.
    let opts = ImportOptions {
        write_limit: Some(200_000),
        ..options(&release_layout(), &out)
    };
    let err = error_of(&opts);
    assert!(err.contains("no space left"), "{err}");
    assert!(!out.exists(), "{:?}", listing(&out));

    // An existing, empty MODELDIR is kept (empty) after such a failure.
    std::fs::create_dir(&out)?;
    error_of(&opts);
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    Ok(())
}

#[test]
fn a_cancelled_import_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = ImportOptions {
        cancel: Some(cancel),
        ..options(&release_layout(), &out)
    };
    let err = error_of(&opts);
    assert!(err.contains("cancelled"), "{err}");
    assert!(!out.exists());
}

/// A Hugging Face cache snapshot: LFS files are symlinks to `blobs/<sha256>`. A blob whose
/// bytes do not match its name is refused before anything is written; matching blobs are
/// recorded as verified. `--checksums` lines are checked the same way.
#[test]
fn hub_cache_blobs_and_checksum_files_are_verified() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let r = release_copy(&tmp.path().join("snap"));
    let blobs = tmp.path().join("snap/blobs");
    std::fs::create_dir_all(&blobs)?;
    let shard = std::fs::read(r.join(SHARD2))?;
    let sha = mio_runtime::import::sha256_file(&r.join(SHARD2), &mut |_| Ok(()))?;
    std::fs::write(blobs.join(&sha), &shard)?;
    std::fs::remove_file(r.join(SHARD2))?;
    std::os::unix::fs::symlink(blobs.join(&sha), r.join(SHARD2))?;
    let out = tmp.path().join("ok");
    let report = import_release(&options(&r, &out), &mut |_| {})?;
    let src = report
        .manifest
        .sources
        .iter()
        .find(|s| s.path == SHARD2)
        .unwrap();
    assert_eq!(src.verified_by.as_deref(), Some("huggingface-cache-blob"));
    assert!(!report.unverified.contains(&SHARD2.to_string()));

    // The same blob, damaged.
    let mut bad = shard.clone();
    let last = bad.len() - 100;
    bad[last] ^= 1;
    std::fs::write(blobs.join(&sha), &bad)?;
    let out = tmp.path().join("bad");
    let err = error_of(&options(&r, &out));
    assert!(err.contains("corrupt") && err.contains(&sha), "{err}");
    assert!(!out.exists());

    // A checksums file that disagrees with config.json.
    let sums = tmp.path().join("SHA256SUMS");
    std::fs::write(&sums, format!("{}  config.json\n", "0".repeat(64)))?;
    let opts = ImportOptions {
        checksums: Some(sums),
        ..options(&release_layout(), &out)
    };
    let err = error_of(&opts);
    assert!(
        err.contains("config.json") && err.contains("checksums-file"),
        "{err}"
    );
    assert!(!out.exists());
    Ok(())
}
