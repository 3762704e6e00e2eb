//! Finding and reading the LM weights of a release folder.
//!
//! Mirrors how transformers 4.34 `PreTrainedModel.from_pretrained` finds a checkpoint, in
//! this order: `model.safetensors.index.json` (every shard it names must exist),
//! `model-0000K-of-0000N.safetensors` found by name (all N must exist),
//! `model.safetensors`, then the PyTorch pickles (`pytorch_model.bin.index.json`,
//! `pytorch_model-0000K-of-0000N.bin` by name — the real MIO release has no index —,
//! `pytorch_model.bin`).
//!
//! Each shard is a [`TensorSource`]; a [`Checkpoint`] joins them by tensor name, checks
//! names and shapes against the config before anything is loaded, converts dtypes on read
//! and remembers which tensors were read (so tests can prove none was forgotten).
//! `.bin` shards are read through the safe pickle reader ([`crate::pickle`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::config::read_json;
use super::pth_shard::PthShard;
use super::safetensors_shard::SafetensorsShard;
use crate::{Error, Result};

/// Shape and stored dtype of one checkpoint tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Dtype as stored.
    pub dtype: DType,
}

/// One shard file of a checkpoint, whatever its format.
pub trait TensorSource: Send + Sync {
    /// The shard file (named in errors).
    fn path(&self) -> &Path;
    /// Every tensor of the shard.
    fn tensors(&self) -> &BTreeMap<String, TensorMeta>;
    /// Reads one tensor in its stored dtype; corrupt data is an [`Error::Checkpoint`].
    fn read(&self, name: &str, dev: &Device) -> Result<Tensor>;
}

/// File format of a set of shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardFormat {
    /// `.safetensors`.
    Safetensors,
    /// PyTorch `torch.save` zip-pickles (`.bin`).
    PytorchBin,
}

/// The shard files of a release folder's LM, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFiles {
    /// Their format.
    pub format: ShardFormat,
    /// Every shard, existing on disk.
    pub files: Vec<PathBuf>,
    /// The index file they came from, if any.
    pub index: Option<PathBuf>,
}

#[derive(serde::Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

/// Finds the LM shards of `dir` (see the module doc for the order).
pub fn find_shards(dir: &Path) -> Result<ShardFiles> {
    if !dir.is_dir() {
        return Err(Error::MissingFile(dir.to_path_buf()));
    }
    let kinds = [
        (
            "model.safetensors.index.json",
            "model",
            "safetensors",
            ShardFormat::Safetensors,
        ),
        (
            "pytorch_model.bin.index.json",
            "pytorch_model",
            "bin",
            ShardFormat::PytorchBin,
        ),
    ];
    for (index, stem, ext, format) in kinds {
        let index_path = dir.join(index);
        if index_path.is_file() {
            return from_index(dir, &index_path, format);
        }
        if let Some(files) = by_name(dir, stem, ext)? {
            return Ok(ShardFiles {
                format,
                files,
                index: None,
            });
        }
        let single = dir.join(format!("{stem}.{ext}"));
        if single.is_file() {
            return Ok(ShardFiles {
                format,
                files: vec![single],
                index: None,
            });
        }
    }
    Err(Error::checkpoint(
        dir,
        "no LM weights found (looked for model.safetensors.index.json, \
         model-0000K-of-0000N.safetensors, model.safetensors and the pytorch_model*.bin forms)",
    ))
}

fn from_index(dir: &Path, index: &Path, format: ShardFormat) -> Result<ShardFiles> {
    let parsed: IndexFile = read_json(index)?;
    let names: BTreeSet<&String> = parsed.weight_map.values().collect();
    if names.is_empty() {
        return Err(Error::checkpoint(index, "weight_map is empty"));
    }
    let mut files = Vec::new();
    for name in names {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::MissingFile(path));
        }
        files.push(path);
    }
    Ok(ShardFiles {
        format,
        files,
        index: Some(index.to_path_buf()),
    })
}

/// `{stem}-0000K-of-0000N.{ext}`: `Some((K, N))`.
fn shard_number(file_name: &str, stem: &str, ext: &str) -> Option<(usize, usize)> {
    let rest = file_name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(ext)?.strip_suffix('.')?;
    let (k, n) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(k) || !digits(n) {
        return None;
    }
    Some((k.parse().ok()?, n.parse().ok()?))
}

fn by_name(dir: &Path, stem: &str, ext: &str) -> Result<Option<Vec<PathBuf>>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut found: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let mut total = None;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((k, n)) = shard_number(&name, stem, ext) {
            if total.is_some_and(|t| t != n) {
                return Err(Error::checkpoint(
                    dir,
                    format!("shards disagree on their count: {name}"),
                ));
            }
            total = Some(n);
            found.insert(k, entry.path());
        }
    }
    let Some(n) = total else { return Ok(None) };
    let mut files = Vec::with_capacity(n);
    for k in 1..=n {
        match found.remove(&k) {
            Some(path) => files.push(path),
            None => {
                return Err(Error::MissingFile(
                    dir.join(format!("{stem}-{k:05}-of-{n:05}.{ext}")),
                ))
            }
        }
    }
    if let Some(extra) = found.into_values().next() {
        return Err(Error::checkpoint(
            extra,
            format!("shard number outside 1..={n}"),
        ));
    }
    Ok(Some(files))
}

/// Opens one shard as a tensor source.
///
/// `.bin` pickles are refused with [`Error::Unsupported`] until the safe pickle reader is
/// wired in here (it only has to implement [`TensorSource`]).
pub fn open_source(format: ShardFormat, path: &Path) -> Result<Box<dyn TensorSource>> {
    match format {
        ShardFormat::Safetensors => Ok(Box::new(SafetensorsShard::open(path)?)),
        ShardFormat::PytorchBin => Ok(Box::new(PthShard::open(path)?)),
    }
}

/// The tensors of all shards of a checkpoint, by name.
pub struct Checkpoint {
    sources: Vec<Box<dyn TensorSource>>,
    by_name: HashMap<String, usize>,
    read: BTreeSet<String>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("files", &self.files())
            .field("tensors", &self.by_name.len())
            .finish()
    }
}

impl Checkpoint {
    /// Finds and opens the LM shards of a release folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let shards = find_shards(dir)?;
        let sources = shards
            .files
            .iter()
            .map(|p| open_source(shards.format, p))
            .collect::<Result<Vec<_>>>()?;
        let ckpt = Checkpoint::from_sources(sources)?;
        if let Some(index) = &shards.index {
            ckpt.check_index(dir, index)?;
        }
        Ok(ckpt)
    }

    /// Joins opened shards; a tensor name in two shards is an error.
    pub fn from_sources(sources: Vec<Box<dyn TensorSource>>) -> Result<Self> {
        let mut by_name = HashMap::new();
        for (i, src) in sources.iter().enumerate() {
            for name in src.tensors().keys() {
                if by_name.insert(name.clone(), i).is_some() {
                    return Err(Error::checkpoint(
                        src.path(),
                        format!("tensor {name} is also in another shard"),
                    ));
                }
            }
        }
        Ok(Checkpoint {
            sources,
            by_name,
            read: BTreeSet::new(),
        })
    }

    /// Every tensor the index maps to a shard must be in that shard.
    fn check_index(&self, dir: &Path, index: &Path) -> Result<()> {
        let parsed: IndexFile = read_json(index)?;
        for (name, file) in &parsed.weight_map {
            let path = dir.join(file);
            let here = self.by_name.get(name).and_then(|&i| self.sources.get(i));
            if here.is_none_or(|s| s.path() != path) {
                return Err(Error::checkpoint(
                    &path,
                    format!("the index places tensor {name} here but the shard lacks it"),
                ));
            }
        }
        Ok(())
    }

    /// The shard files.
    pub fn files(&self) -> Vec<&Path> {
        self.sources.iter().map(|s| s.path()).collect()
    }

    /// Shape and stored dtype of `name`.
    pub fn meta(&self, name: &str) -> Option<&TensorMeta> {
        let src = self.sources.get(*self.by_name.get(name)?)?;
        src.tensors().get(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Checks that every `(name, shape)` exists with that shape.
    pub fn check_shapes(&self, expected: &[(String, Vec<usize>)]) -> Result<()> {
        for (name, shape) in expected {
            let meta = self
                .meta(name)
                .ok_or_else(|| Error::MissingTensor(name.clone()))?;
            if &meta.shape != shape {
                return Err(Error::ShapeMismatch {
                    name: name.clone(),
                    expected: shape.clone(),
                    got: meta.shape.clone(),
                });
            }
        }
        Ok(())
    }

    /// Reads `name` onto `dev` as `dtype`, marking it read.
    pub fn read(&mut self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        let i = *self
            .by_name
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let src = self
            .sources
            .get(i)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let t = src.read(name, dev)?.to_dtype(dtype)?;
        self.read.insert(name.to_string());
        Ok(t)
    }

    /// Tensors never read so far, sorted.
    pub fn unread(&self) -> Vec<&str> {
        self.names()
            .into_iter()
            .filter(|n| !self.read.contains(*n))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_shard_names() {
        let n = |s| shard_number(s, "model", "safetensors");
        assert_eq!(n("model-00001-of-00002.safetensors"), Some((1, 2)));
        assert_eq!(n("model-00002-of-00002.safetensors"), Some((2, 2)));
        assert_eq!(n("model.safetensors"), None);
        assert_eq!(n("model-1-of-x.safetensors"), None);
        assert_eq!(
            shard_number("pytorch_model-00003-of-00006.bin", "pytorch_model", "bin"),
            Some((3, 6))
        );
        assert_eq!(
            shard_number("pytorch_model-00003-of-00006.bin", "model", "bin"),
            None
        );
    }
}
