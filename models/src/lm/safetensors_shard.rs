//! One `.safetensors` file as a [`TensorSource`], read tensor by tensor.
//!
//! Format: 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`name -> {dtype, shape, data_offsets: [begin, end]}`, optional `__metadata__`), then the
//! data. The header is parsed and every tensor's byte range checked against its shape and
//! the file length when the shard is opened, so a truncated or corrupt shard fails there
//! with [`Error::Checkpoint`] naming the file. Tensors are then read with seek + read (no
//! mmap, no `unsafe`): peak memory while loading is the model plus one tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::weights::{TensorMeta, TensorSource};
use crate::{Error, Result};

/// Largest header we accept (the reference implementation's limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// A `.safetensors` shard.
pub struct SafetensorsShard {
    path: PathBuf,
    file: Mutex<File>,
    data_start: u64,
    metas: BTreeMap<String, TensorMeta>,
    ranges: BTreeMap<String, (u64, u64)>,
}

impl std::fmt::Debug for SafetensorsShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsShard")
            .field("path", &self.path)
            .field("tensors", &self.metas.len())
            .finish()
    }
}

fn parse_dtype(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "U32" => DType::U32,
        "U8" => DType::U8,
        _ => return None,
    })
}

/// One header entry, checked against its dtype, shape and the data length.
fn parse_entry(
    name: &str,
    value: serde_json::Value,
    data_len: u64,
) -> std::result::Result<(TensorMeta, (u64, u64)), String> {
    let e: HeaderEntry =
        serde_json::from_value(value).map_err(|e| format!("header entry {name}: {e}"))?;
    let dtype = parse_dtype(&e.dtype)
        .ok_or_else(|| format!("tensor {name} has unsupported dtype {}", e.dtype))?;
    let [begin, end] = e.data_offsets;
    let expected = e
        .shape
        .iter()
        .try_fold(dtype.size_in_bytes() as u64, |acc, &d| {
            acc.checked_mul(d as u64)
        });
    if end < begin || Some(end - begin) != expected {
        return Err(format!(
            "tensor {name}: byte range {begin}..{end} does not hold shape {:?} of {}",
            e.shape, e.dtype
        ));
    }
    if end > data_len {
        return Err(format!(
            "truncated: tensor {name} ends at data byte {end} but the file holds {data_len}"
        ));
    }
    Ok((
        TensorMeta {
            shape: e.shape,
            dtype,
        },
        (begin, end),
    ))
}

impl SafetensorsShard {
    /// Opens `path` and validates its header against the file length.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |m: String| Error::checkpoint(path, m);
        if !path.is_file() {
            return Err(Error::MissingFile(path.to_path_buf()));
        }
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(|_| {
            bad(format!(
                "file of {file_len} bytes is too short for a header"
            ))
        })?;
        let n = u64::from_le_bytes(len_bytes);
        if n > MAX_HEADER || n > file_len.saturating_sub(8) {
            return Err(bad(format!(
                "header of {n} bytes does not fit a {file_len}-byte file"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)
            .map_err(|e| Error::io(path, e))?;
        let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
        let data_start = 8 + n;
        let data_len = file_len - data_start;
        let mut metas = BTreeMap::new();
        let mut ranges = BTreeMap::new();
        for (name, value) in entries {
            if name == "__metadata__" {
                continue;
            }
            let (meta, range) = parse_entry(&name, value, data_len).map_err(bad)?;
            metas.insert(name.clone(), meta);
            ranges.insert(name, range);
        }
        Ok(SafetensorsShard {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            data_start,
            metas,
            ranges,
        })
    }

    fn read_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let (begin, end) = *self
            .ranges
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let mut file = self
            .file
            .lock()
            .map_err(|_| Error::checkpoint(&self.path, "file handle poisoned by a panic"))?;
        let mut bytes = vec![0u8; (end - begin) as usize];
        file.seek(SeekFrom::Start(self.data_start + begin))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| Error::checkpoint(&self.path, format!("reading tensor {name}: {e}")))?;
        Ok(bytes)
    }
}

impl TensorSource for SafetensorsShard {
    fn path(&self) -> &Path {
        &self.path
    }

    fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.metas
    }

    fn read(&self, name: &str, dev: &Device) -> Result<Tensor> {
        let meta = self
            .metas
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let bytes = self.read_bytes(name)?;
        Tensor::from_raw_buffer(&bytes, meta.dtype, &meta.shape, dev)
            .map_err(|e| Error::checkpoint(&self.path, format!("tensor {name}: {e}")))
    }
}
