//! File checksums for `mio import`: sha256 of a file (streamed), and where the expected
//! hash of a release file comes from.
//!
//! Offline sources of the hash Hugging Face publishes: in a hub cache snapshot
//! (`models--org--name/snapshots/<rev>/…`) every LFS file is a symlink to
//! `blobs/<sha256>`, so the blob's name is the expected hash; and a `--checksums FILE` in
//! `sha256sum` format (`<hex>  <path>`, paths relative to the release).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Where an expected hash came from, and the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHash {
    /// Lower-case hex sha256.
    pub sha256: String,
    /// `huggingface-cache-blob` or `checksums-file`.
    pub source: &'static str,
}

/// The sha256 (hex) of `path`, read in 8 MiB blocks; `progress` gets the bytes read.
pub fn sha256_file(path: &Path, progress: &mut dyn FnMut(u64) -> Result<()>) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress(n as u64)?;
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The blob name of a hub-cache symlink, when it is a sha256 (LFS files; small files are
/// named by their git sha1 and give nothing).
fn blob_hash(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    let name = target.file_name()?.to_str()?;
    is_sha256(name).then(|| name.to_ascii_lowercase())
}

/// Parses a `sha256sum`-style file: `<hex>  <path>` or `<hex> *<path>` per line.
fn parse_checksums(text: &str, file: &Path) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((hash, name)) = line.split_once(char::is_whitespace) else {
            bail!(
                "{} line {}: expected `<sha256>  <path>`",
                file.display(),
                i + 1
            );
        };
        let name = name
            .trim_start()
            .trim_start_matches('*')
            .trim_start_matches("./");
        if !is_sha256(hash) || name.is_empty() {
            bail!(
                "{} line {}: expected `<sha256>  <path>`",
                file.display(),
                i + 1
            );
        }
        out.insert(name.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// The expected hash of each of `files` (paths relative to `release`) that has one.
pub fn expected_hashes(
    release: &Path,
    files: &[String],
    checksums: Option<&Path>,
) -> Result<BTreeMap<String, ExpectedHash>> {
    let listed = match checksums {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_checksums(&text, path)?
        }
        None => BTreeMap::new(),
    };
    let mut out = BTreeMap::new();
    for rel in files {
        let found = match listed.get(rel) {
            Some(h) => Some(ExpectedHash {
                sha256: h.clone(),
                source: "checksums-file",
            }),
            None => blob_hash(&release.join(rel)).map(|sha256| ExpectedHash {
                sha256,
                source: "huggingface-cache-blob",
            }),
        };
        if let Some(found) = found {
            out.insert(rel.clone(), found);
        }
    }
    Ok(out)
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_sha256sum_lines_and_hub_blobs() {
        let h = "a".repeat(64);
        let text = format!("{h}  config.json\n# comment\n{h} *sub/x.pt\n");
        let m = parse_checksums(&text, Path::new("S")).unwrap();
        assert_eq!(m.get("config.json"), Some(&h));
        assert_eq!(m.get("sub/x.pt"), Some(&h));
        assert!(parse_checksums("xyz  a\n", Path::new("S")).is_err());

        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blobs").join("b".repeat(64));
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"abc").unwrap();
        std::os::unix::fs::symlink(&blob, dir.path().join("w.bin")).unwrap();
        std::fs::write(dir.path().join("plain.json"), b"{}").unwrap();
        let files = vec!["w.bin".to_string(), "plain.json".to_string()];
        let e = expected_hashes(dir.path(), &files, None).unwrap();
        assert_eq!(e["w.bin"].sha256, "b".repeat(64));
        assert!(!e.contains_key("plain.json"));
        let sum = sha256_file(&blob, &mut |_| Ok(())).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
