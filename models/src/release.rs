//! What a MIO release folder holds, found without loading any weights (`mio info`).
//!
//! Knows both layouts: the tiny/modern one (`model-0000K-of-0000N.safetensors` + index) and
//! the real release as it ships (`pytorch_model-0000K-of-0000N.bin`, no index).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::lm::{find_shards, ShardFormat};
use crate::pickle::PthFile;
use crate::{Error, Result};

/// One component of a release folder.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// Short name (`lm`, `tokenizer`, `seed-tokenizer`, `speech-tokenizer`, `unclip`).
    pub name: String,
    /// Folder or first file of the component.
    pub path: PathBuf,
    /// Files that make it up.
    pub files: Vec<PathBuf>,
    /// Bytes on disk.
    pub bytes: u64,
    /// Storage format (`safetensors`, `pytorch-pickle`, `sentencepiece`, `diffusers`).
    pub format: String,
    /// Element types found (from safetensors headers; pickles report `float32`/`float16` as
    /// the release documents them).
    pub dtypes: Vec<String>,
    /// Number of parameters, when the headers tell.
    pub parameters: Option<u64>,
}

/// Everything `mio info` reports about a folder.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInfo {
    /// The folder.
    pub root: PathBuf,
    /// Components found.
    pub components: Vec<Component>,
    /// Components the app needs that are missing (they disable a feature, not the app).
    pub missing: Vec<String>,
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = vec![];
    for entry in rd {
        out.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len())
}

/// Element types and parameter count from a safetensors header (reads the header only).
fn safetensors_summary(path: &Path) -> Result<(Vec<String>, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| Error::io(path, e))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 || len > file_size(path)? {
        return Err(Error::checkpoint(
            path,
            "safetensors header length is out of range",
        ));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| Error::checkpoint(path, format!("bad safetensors header: {e}")))?;
    let mut dtypes = vec![];
    let mut params = 0u64;
    for (name, t) in json.as_object().into_iter().flatten() {
        if name == "__metadata__" {
            continue;
        }
        if let Some(d) = t.get("dtype").and_then(|d| d.as_str()) {
            let d = d.to_ascii_lowercase();
            if !dtypes.contains(&d) {
                dtypes.push(d);
            }
        }
        let shape = t.get("shape").and_then(|s| s.as_array());
        params += shape.map_or(0, |s| s.iter().filter_map(|x| x.as_u64()).product::<u64>());
    }
    dtypes.sort();
    Ok((dtypes, params))
}

/// Element types and parameter count of pickled shards (reads their indexes, no data).
fn pickle_summary(files: &[PathBuf]) -> Result<(Vec<String>, u64)> {
    let mut dtypes: Vec<String> = vec![];
    let mut params = 0u64;
    for f in files {
        let pth = PthFile::open(f)?;
        for name in pth.names() {
            if let Some(info) = pth.info(name) {
                let d = format!("{:?}", info.dtype).to_ascii_lowercase();
                if !dtypes.contains(&d) {
                    dtypes.push(d);
                }
                params += info.elem_count() as u64;
            }
        }
    }
    dtypes.sort();
    Ok((dtypes, params))
}

/// Element types and parameter count of the weights a codec's loader reads: every pickle of
/// the SEED and SpeechTokenizer folders; of unCLIP the UNet, VAE, image normalizer and text
/// encoder files the loaders pick (not the release's unused image encoder, nor the `.bin`
/// and fp16 copies of the same weights).
fn codec_summary(c: &Component) -> Result<(Vec<String>, u64)> {
    let weights: Vec<PathBuf> = if c.format == "diffusers" {
        let mut picked: Vec<PathBuf> = ["unet", "vae", "image_normalizer"]
            .iter()
            .filter_map(|sub| crate::image_decoder::component_weights(&c.path.join(sub)).ok())
            .collect();
        picked.extend(crate::image_decoder::text_encoder_weights(&c.path).ok());
        picked
    } else {
        c.files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "pth" || e == "pt"))
            .cloned()
            .collect()
    };
    let mut dtypes: Vec<String> = vec![];
    let mut params = 0u64;
    for f in &weights {
        let (d, p) = if f.extension().is_some_and(|e| e == "safetensors") {
            safetensors_summary(f)?
        } else {
            pickle_summary(std::slice::from_ref(f))?
        };
        for d in d {
            if !dtypes.contains(&d) {
                dtypes.push(d);
            }
        }
        params += p;
    }
    dtypes.sort();
    Ok((dtypes, params))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in list_dir(dir)? {
        if p.is_dir() {
            files_under(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn component(name: &str, path: PathBuf, files: Vec<PathBuf>, format: &str) -> Result<Component> {
    let mut bytes = 0;
    let mut dtypes: Vec<String> = vec![];
    let mut params = 0u64;
    let mut counted = false;
    for f in &files {
        bytes += file_size(f)?;
        if f.extension().is_some_and(|e| e == "safetensors") {
            let (d, p) = safetensors_summary(f)?;
            d.into_iter().for_each(|d| {
                if !dtypes.contains(&d) {
                    dtypes.push(d)
                }
            });
            params += p;
            counted = true;
        }
    }
    let parameters = counted.then_some(params);
    Ok(Component {
        name: name.into(),
        path,
        files,
        bytes,
        format: format.into(),
        dtypes,
        parameters,
    })
}

impl ReleaseInfo {
    /// Scans `root` (a MIO release folder) without reading any weights.
    pub fn scan(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::MissingFile(root.to_path_buf()));
        }
        let mut components = vec![];
        let mut missing = vec![];
        match find_shards(root) {
            Ok(found) => {
                let format = match found.format {
                    ShardFormat::Safetensors => "safetensors",
                    ShardFormat::PytorchBin => "pytorch-pickle",
                };
                let mut c = component("lm", root.to_path_buf(), found.files, format)?;
                if format == "pytorch-pickle" {
                    let (dtypes, params) = pickle_summary(&c.files)?;
                    c.dtypes = dtypes;
                    c.parameters = Some(params);
                }
                components.push(c);
            }
            Err(e) => match crate::imported::imported_lm(root)? {
                Some(gguf) => components.push(component("lm", gguf.clone(), vec![gguf], "gguf")?),
                None => missing.push(format!("lm ({e})")),
            },
        }
        let tok = root.join("tokenizer.model");
        if tok.is_file() {
            let mut files = vec![tok.clone()];
            for extra in [
                "tokenizer_config.json",
                "special_tokens_map.json",
                "added_tokens.json",
            ] {
                let p = root.join(extra);
                if p.is_file() {
                    files.push(p);
                }
            }
            components.push(component("tokenizer", tok, files, "sentencepiece")?);
        } else {
            missing.push("tokenizer (tokenizer.model)".into());
        }
        for (name, sub, format) in [
            ("seed-tokenizer", "seed-tokenizer-2", "pytorch-pickle"),
            ("speech-tokenizer", "SpeechTokenizer", "pytorch-pickle"),
            ("unclip", "stable-diffusion-2-1-unclip", "diffusers"),
        ] {
            let dir = root.join(sub);
            if dir.is_dir() {
                let mut files = vec![];
                files_under(&dir, &mut files)?;
                let mut c = component(name, dir, files, format)?;
                let (dtypes, params) = codec_summary(&c)?;
                c.dtypes = dtypes;
                c.parameters = Some(params);
                components.push(c);
            } else {
                missing.push(format!("{name} ({sub}/)"));
            }
        }
        Ok(ReleaseInfo {
            root: root.to_path_buf(),
            components,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scans_the_tiny_model_and_reports_missing_parts() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model");
        let info = ReleaseInfo::scan(&root).unwrap();
        let lm = info.components.iter().find(|c| c.name == "lm").unwrap();
        assert_eq!(lm.files.len(), 2);
        assert_eq!(lm.dtypes, vec!["f32".to_string()]);
        assert!(lm.parameters.unwrap() > 1_000_000);
        assert!(info.missing.is_empty(), "{:?}", info.missing);

        for name in ["seed-tokenizer", "speech-tokenizer", "unclip"] {
            let c = info.components.iter().find(|c| c.name == name).unwrap();
            assert!(
                c.parameters.unwrap() > 100_000,
                "{name}: {:?}",
                c.parameters
            );
            assert!(
                c.dtypes.contains(&"f32".to_string()),
                "{name}: {:?}",
                c.dtypes
            );
        }

        let empty = tempfile::tempdir().unwrap();
        let info = ReleaseInfo::scan(empty.path()).unwrap();
        assert_eq!(info.components.len(), 0);
        assert_eq!(info.missing.len(), 5);
    }

    /// unCLIP's parameters are those of the files its loaders read: an fp16 copy of the
    /// UNet beside the full-precision file (as the real release ships) does not count twice.
    #[cfg(unix)]
    #[test]
    fn unclip_counts_the_weights_its_loaders_read_once() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/model");
        let unclip = |info: &ReleaseInfo| {
            let c = info.components.iter().find(|c| c.name == "unclip").unwrap();
            (c.parameters.unwrap(), c.bytes)
        };
        let (params, bytes) = unclip(&ReleaseInfo::scan(&root).unwrap());
        let tmp = tempfile::tempdir().unwrap();
        for entry in list_dir(&root).unwrap() {
            let name = entry.file_name().unwrap();
            if name != "stable-diffusion-2-1-unclip" {
                std::os::unix::fs::symlink(&entry, tmp.path().join(name)).unwrap();
            }
        }
        let sd = tmp.path().join("stable-diffusion-2-1-unclip");
        std::fs::create_dir(&sd).unwrap();
        for entry in list_dir(&root.join("stable-diffusion-2-1-unclip")).unwrap() {
            let name = entry.file_name().unwrap();
            if name != "unet" {
                std::os::unix::fs::symlink(&entry, sd.join(name)).unwrap();
            }
        }
        let unet = sd.join("unet");
        std::fs::create_dir(&unet).unwrap();
        for entry in list_dir(&root.join("stable-diffusion-2-1-unclip/unet")).unwrap() {
            std::fs::copy(&entry, unet.join(entry.file_name().unwrap())).unwrap();
        }
        let weights = unet.join("diffusion_pytorch_model.safetensors");
        let copy = unet.join("diffusion_pytorch_model.fp16.safetensors");
        std::fs::copy(&weights, &copy).unwrap();
        let (params2, bytes2) = unclip(&ReleaseInfo::scan(tmp.path()).unwrap());
        assert_eq!(params2, params);
        assert_eq!(bytes2, bytes + std::fs::metadata(&copy).unwrap().len());
    }
}
