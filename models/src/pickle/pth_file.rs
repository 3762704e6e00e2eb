//! [`PthFile`]: a lazy, safe index of the tensors of one `torch.save` checkpoint.
//!
//! Ports what `torch.load(path, map_location="cpu", weights_only=True)` returns for a
//! state dict, minus the execution: the archive's `<prefix>/data.pkl` is run by the
//! restricted machine of [`super::vm`] and every tensor found in it is recorded by name
//! (nested dicts, lists and tuples flattened with dots: `{"model": {"w": t}}` gives
//! `model.w`; a bare tensor at the root is named `""`). Tensor bytes stay in the
//! memory-mapped file until [`PthFile::tensor`] or [`PthFile::tensor_bytes`] asks for one.
//! Every tensor's storage is checked against its zip entry when the file is opened.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::archive::Archive;
use super::tensor::{gather, swap_bytes, TensorInfo};
use super::value::{RawTensor, Value};
use super::vm::{self, PickleError};
use crate::{Error, Result};

/// Deepest container nesting walked when collecting tensor names.
const MAX_DEPTH: usize = 64;
/// Largest `data.pkl` accepted (a 10 GB LM shard's is well under 1 MB).
const MAX_PICKLE_BYTES: usize = 1 << 28;
/// Most containers and values visited when collecting tensor names.
const MAX_VISITS: usize = 1 << 22;

/// The tensors of one `torch.save` zip checkpoint, read on demand.
pub struct PthFile {
    archive: Archive,
    big_endian: bool,
    names: Vec<String>,
    tensors: HashMap<String, TensorInfo>,
}

impl std::fmt::Debug for PthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthFile")
            .field("path", &self.archive.path())
            .field("tensors", &self.names.len())
            .finish()
    }
}

impl PthFile {
    /// Opens `path`, unpickles its index safely and checks every tensor's storage.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let archive = Archive::open(path)?;
        let prefix = find_prefix(&archive)?;
        let pickle_name = format!("{prefix}data.pkl");
        if archive
            .size(&pickle_name)
            .is_some_and(|n| n > MAX_PICKLE_BYTES)
        {
            return Err(Error::checkpoint(path, "data.pkl is implausibly large"));
        }
        let pickle = archive.read(&pickle_name)?;
        let found = vm::load(&pickle, |root| {
            let mut found = Vec::new();
            collect(root, String::new(), 0, &mut 0, &mut found)?;
            Ok(found)
        })
        .map_err(|e| match e {
            PickleError::Unsafe(global) => Error::UnsafePickle {
                path: path.to_owned(),
                global,
            },
            PickleError::Malformed(message) => {
                Error::checkpoint(path, format!("data.pkl: {message}"))
            }
        })?;
        drop(pickle);
        let big_endian = byte_order(&archive, &prefix)?;
        let mut names = Vec::with_capacity(found.len());
        let mut tensors = HashMap::with_capacity(found.len());
        for (name, raw) in found {
            let info = raw.info(&prefix);
            check_storage(&archive, &name, &info)?;
            if tensors.insert(name.clone(), info).is_some() {
                return Err(Error::checkpoint(
                    path,
                    format!("tensor name {name} appears twice"),
                ));
            }
            names.push(name);
        }
        Ok(Self {
            archive,
            big_endian,
            names,
            tensors,
        })
    }

    /// Opens `path` keeping only the tensors under the top-level key `key` (e.g. `"model"`
    /// or `"state_dict"` of a training checkpoint), named relative to it.
    pub fn open_with_key(path: impl AsRef<Path>, key: &str) -> Result<Self> {
        let mut file = Self::open(path)?;
        let prefix = format!("{key}.");
        file.names.retain(|n| n.starts_with(&prefix));
        if file.names.is_empty() {
            return Err(Error::checkpoint(
                file.path(),
                format!("no tensors under the key {key}"),
            ));
        }
        let mut tensors = HashMap::with_capacity(file.names.len());
        for name in &mut file.names {
            if let Some(info) = file.tensors.remove(name.as_str()) {
                *name = name[prefix.len()..].to_owned();
                tensors.insert(name.clone(), info);
            }
        }
        file.tensors = tensors;
        Ok(file)
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        self.archive.path()
    }

    /// Tensor names in the order the checkpoint lists them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether a tensor called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Dtype, shape, strides and storage of the tensor `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The tensor's elements in row-major order as little-endian bytes. Borrowed straight
    /// from the memory map when the tensor is contiguous in a stored entry.
    pub fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_owned()))?;
        let es = info.dtype.size_in_bytes();
        let count = info.elem_count();
        if count == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        let storage = self.archive.read(&info.entry)?;
        let extent = info.storage_extent().and_then(|n| n.checked_mul(es));
        if extent.is_none_or(|n| n > storage.len()) {
            return Err(Error::checkpoint(
                self.path(),
                format!("tensor {name} lies outside its storage"),
            ));
        }
        if info.is_contiguous() && !self.big_endian {
            let range = info.storage_offset * es..(info.storage_offset + count) * es;
            return match storage {
                Cow::Borrowed(bytes) => Ok(Cow::Borrowed(&bytes[range])),
                Cow::Owned(bytes) => Ok(Cow::Owned(bytes[range].to_vec())),
            };
        }
        let mut out = gather(info, &storage);
        if self.big_endian {
            swap_bytes(&mut out, es);
        }
        Ok(Cow::Owned(out))
    }

    /// Drops the memory-mapped pages of `name` from the resident set (see
    /// `Archive::release`); call after its bytes were copied.
    pub fn release(&self, name: &str) {
        if let Some(info) = self.tensors.get(name) {
            self.archive.release(&info.entry);
        }
    }

    /// Loads the tensor `name` onto `device` in its stored dtype (`bool` as `u8`).
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_owned()))?;
        let Some(dtype) = info.dtype.to_candle() else {
            return Err(Error::Unsupported(format!(
                "tensor {name} is {:?}, which candle cannot hold",
                info.dtype
            )));
        };
        let bytes = self.tensor_bytes(name)?;
        let shape = info.shape.as_slice();
        let t = match (&bytes, dtype) {
            (Cow::Borrowed(b), DType::F32) => {
                Tensor::from_vec(self.stream(info, b, f32::from_le_bytes), shape, device)?
            }
            (Cow::Borrowed(b), DType::F16) => Tensor::from_vec(
                self.stream(info, b, half::f16::from_le_bytes),
                shape,
                device,
            )?,
            (Cow::Borrowed(b), DType::BF16) => Tensor::from_vec(
                self.stream(info, b, half::bf16::from_le_bytes),
                shape,
                device,
            )?,
            _ => Tensor::from_raw_buffer(&bytes, dtype, shape, device)?,
        };
        drop(bytes);
        self.release(name);
        Ok(t)
    }

    /// Decodes a tensor's mapped little-endian bytes into one vector, chunk by chunk,
    /// dropping each chunk's mapped pages once decoded: a tensor bigger than memory's slack
    /// costs its decoded size only (and one copy, whatever the entry's alignment).
    fn stream<T, const N: usize>(
        &self,
        info: &TensorInfo,
        bytes: &[u8],
        decode: impl Fn([u8; N]) -> T,
    ) -> Vec<T> {
        const CHUNK: usize = 64 << 20;
        let mut out = Vec::with_capacity(bytes.len() / N);
        let base = info.storage_offset * N;
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            out.extend(
                chunk
                    .chunks_exact(N)
                    .filter_map(|c| <[u8; N]>::try_from(c).ok())
                    .map(&decode),
            );
            self.archive
                .release_part(&info.entry, base + i * CHUNK, chunk.len());
        }
        out
    }
}

/// The archive's record prefix: the folder holding `data.pkl` (`torch.save` uses the
/// file stem, e.g. `pytorch_model-00001-of-00002/`).
fn find_prefix(archive: &Archive) -> Result<String> {
    let candidates = archive.names().filter_map(|n| n.strip_suffix("data.pkl"));
    let top_level = candidates.filter(|p| p.is_empty() || p.find('/') == Some(p.len() - 1));
    match top_level.min_by_key(|p| (p.len(), p.to_string())) {
        Some(prefix) => Ok(prefix.to_owned()),
        None => Err(Error::checkpoint(
            archive.path(),
            "no data.pkl: not a torch.save zip checkpoint",
        )),
    }
}

/// Whether the storages are big-endian (`<prefix>byteorder` says so; absent means little).
fn byte_order(archive: &Archive, prefix: &str) -> Result<bool> {
    let name = format!("{prefix}byteorder");
    if archive.size(&name).is_none() {
        return Ok(false);
    }
    match archive.read(&name)?.as_ref() {
        b"little" => Ok(false),
        b"big" => Ok(true),
        _ => Err(Error::checkpoint(
            archive.path(),
            "byteorder entry is neither little nor big",
        )),
    }
}

/// Checks that `info`'s storage entry exists, holds `numel` elements, and that the view
/// stays inside it.
fn check_storage(archive: &Archive, name: &str, info: &TensorInfo) -> Result<()> {
    let fail = |message: String| {
        Err(Error::checkpoint(
            archive.path(),
            format!("tensor {name}: {message}"),
        ))
    };
    let Some(size) = archive.size(&info.entry) else {
        return fail(format!("storage entry {} is missing", info.entry));
    };
    match info.storage_bytes() {
        Some(need) if need <= size => {}
        _ => {
            return fail(format!(
                "storage {} declares {} {:?} elements but the entry holds only {size} bytes",
                info.entry, info.storage_numel, info.dtype
            ))
        }
    }
    let bytes = info
        .checked_elem_count()
        .and_then(|n| n.checked_mul(info.dtype.size_in_bytes()));
    if bytes.is_none() {
        return fail(format!("shape {:?} has too many elements", info.shape));
    }
    match info.storage_extent() {
        Some(extent) if extent <= info.storage_numel => Ok(()),
        _ => fail(format!(
            "the view (shape {:?}, strides {:?}, offset {}) reaches past its storage of {} elements",
            info.shape, info.strides, info.storage_offset, info.storage_numel
        )),
    }
}

/// Records every tensor reachable from `value` through dicts, lists and tuples.
fn collect(
    value: &Value,
    name: String,
    depth: usize,
    visits: &mut usize,
    out: &mut Vec<(String, RawTensor)>,
) -> std::result::Result<(), PickleError> {
    *visits += 1;
    if depth > MAX_DEPTH || *visits > MAX_VISITS {
        return Err(PickleError::Malformed(
            "the checkpoint is nested too deeply or too large".into(),
        ));
    }
    let child = |key: &str| {
        if name.is_empty() {
            key.to_owned()
        } else {
            format!("{name}.{key}")
        }
    };
    match value {
        Value::Tensor(t) => out.push((name, (**t).clone())),
        Value::Dict(items) => {
            let items = items
                .try_borrow()
                .map_err(|_| PickleError::Malformed("dict in use".into()))?;
            for (key, item) in items.iter() {
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                collect(item, child(&key), depth + 1, visits, out)?;
            }
        }
        Value::List(items) => {
            let items = items
                .try_borrow()
                .map_err(|_| PickleError::Malformed("list in use".into()))?;
            for (i, item) in items.iter().enumerate() {
                collect(item, child(&i.to_string()), depth + 1, visits, out)?;
            }
        }
        Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                collect(item, child(&i.to_string()), depth + 1, visits, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "pth_file_tests.rs"]
mod tests;
