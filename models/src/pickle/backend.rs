//! Sharded checkpoints and the `candle_nn::VarBuilder` backends, so model code reads
//! `.bin`/`.pt`/`.pth` exactly as it reads safetensors.
//!
//! [`PthShards`] merges the `pytorch_model-0000K-of-0000N.bin` shards of the real release
//! (which has no index file) into one name space. Both it and [`PthFile`] implement
//! `candle_nn::var_builder::SimpleBackend`: tensors load lazily, are converted to the
//! requested dtype and moved to the requested device; `get` checks the shape.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::pth_file::PthFile;
use super::tensor::TensorInfo;
use crate::{Error, Result};

/// Several checkpoint shards seen as one set of uniquely named tensors.
#[derive(Debug)]
pub struct PthShards {
    files: Vec<PthFile>,
    index: HashMap<String, usize>,
}

impl PthShards {
    /// Opens every shard; a tensor name present in two shards is an error.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            let file = PthFile::open(path)?;
            for name in file.names() {
                if index.insert(name.to_owned(), i).is_some() {
                    return Err(Error::checkpoint(
                        file.path(),
                        format!("tensor {name} is also in an earlier shard"),
                    ));
                }
            }
            files.push(file);
        }
        Ok(Self { files, index })
    }

    /// The shards, in the order given.
    pub fn files(&self) -> &[PthFile] {
        &self.files
    }

    /// Every tensor name, shard by shard in checkpoint order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().flat_map(PthFile::names)
    }

    /// Total number of tensors.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no shard holds a tensor.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The shard holding `name`.
    pub fn file_of(&self, name: &str) -> Option<&PthFile> {
        self.index.get(name).and_then(|&i| self.files.get(i))
    }

    /// Dtype, shape, strides and storage of the tensor `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.file_of(name).and_then(|f| f.info(name))
    }

    /// Loads the tensor `name` onto `device` in its stored dtype.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        match self.file_of(name) {
            Some(file) => file.tensor(name, device),
            None => Err(Error::MissingTensor(name.to_owned())),
        }
    }

    /// A `VarBuilder` over these shards producing `dtype` tensors on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

impl PthFile {
    /// A `VarBuilder` over this checkpoint producing `dtype` tensors on `device`.
    pub fn into_var_builder(self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, device.clone())
    }
}

/// Our error as a candle error (candle's own errors pass through unchanged).
fn to_candle(error: Error, name: &str) -> candle_core::Error {
    match error {
        Error::Candle(e) => e,
        Error::MissingTensor(_) => candle_core::Error::CannotFindTensor {
            path: name.to_owned(),
        },
        other => candle_core::Error::wrap(other),
    }
}

/// The `VarBuilder` backend contract before any data is read: the tensor exists
/// (`stored` is its shape) and, when `expected` is given, has that shape.
pub(crate) fn check_stored_shape(
    name: &str,
    stored: Option<&[usize]>,
    expected: Option<Shape>,
) -> candle_core::Result<()> {
    let Some(stored) = stored else {
        return Err(candle_core::Error::CannotFindTensor {
            path: name.to_owned(),
        });
    };
    match expected {
        Some(expected) if stored != expected.dims() => Err(candle_core::Error::UnexpectedShape {
            msg: format!("shape mismatch for {name}"),
            expected,
            got: Shape::from(stored.to_vec()),
        }),
        _ => Ok(()),
    }
}

/// Loads `name` from `file`, checking the shape (when given) before reading any data,
/// then converts it to `dtype` as candle's own backends do.
fn load(
    file: Option<&PthFile>,
    name: &str,
    shape: Option<Shape>,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let found = file.and_then(|f| f.info(name).map(|i| (f, i)));
    check_stored_shape(name, found.map(|(_, i)| i.shape.as_slice()), shape)?;
    let Some((file, _)) = found else {
        return Err(candle_core::Error::CannotFindTensor {
            path: name.to_owned(),
        });
    };
    file.tensor(name, dev)
        .map_err(|e| to_candle(e, name))?
        .to_dtype(dtype)
}

impl SimpleBackend for PthFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        load(Some(self), name, Some(s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        load(Some(self), name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}

impl SimpleBackend for PthShards {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        load(self.file_of(name), name, Some(s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        load(self.file_of(name), name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}
