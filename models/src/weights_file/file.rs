//! [`WeightFile`]: a torch pickle (through the safe reader) or a `.safetensors` file.
//!
//! Ports nothing upstream. The SEED and SpeechTokenizer loaders read their checkpoints
//! through it, so an imported folder's safetensors copy (`X.safetensors` beside or instead
//! of `X.pt`) is read whenever present: [`preferred_weights`] picks it.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::lm::{SafetensorsShard, TensorSource};
use crate::pickle::{check_stored_shape, PthFile};
use crate::{Error, Result};

/// One weights file of either format.
pub enum WeightFile {
    /// A `torch.save` zip-pickle.
    Pth(PthFile),
    /// A `.safetensors` file.
    Safetensors(SafetensorsShard),
}

impl std::fmt::Debug for WeightFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WeightFile({})", self.path().display())
    }
}

/// `path` with its extension replaced by `.safetensors` when that file exists, else `path`.
pub fn preferred_weights(path: &Path) -> PathBuf {
    let st = path.with_extension("safetensors");
    if st.is_file() {
        st
    } else {
        path.to_path_buf()
    }
}

impl WeightFile {
    /// Opens `path` by its extension (`.safetensors`, else a torch pickle).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile(path.to_path_buf()));
        }
        if path.extension().is_some_and(|e| e == "safetensors") {
            Ok(Self::Safetensors(SafetensorsShard::open(path)?))
        } else {
            Ok(Self::Pth(PthFile::open(path)?))
        }
    }

    /// Opens the preferred copy of `path` (see [`preferred_weights`]).
    pub fn open_preferred(path: &Path) -> Result<Self> {
        Self::open(&preferred_weights(path))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Pth(p) => p.path(),
            Self::Safetensors(s) => s.path(),
        }
    }

    /// Every tensor name (unsorted).
    pub fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Self::Pth(p) => Box::new(p.names()),
            Self::Safetensors(s) => Box::new(s.tensors().keys().map(String::as_str)),
        }
    }

    /// Whether `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// The stored shape of `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        match self {
            Self::Pth(p) => p.info(name).map(|i| i.shape.as_slice()),
            Self::Safetensors(s) => s.tensors().get(name).map(|m| m.shape.as_slice()),
        }
    }

    /// Reads `name` in its stored dtype.
    pub fn tensor(&self, name: &str, dev: &Device) -> Result<Tensor> {
        match self {
            Self::Pth(p) => p.tensor(name, dev),
            Self::Safetensors(s) => s.read(name, dev),
        }
    }

    /// A `VarBuilder` over this file producing `dtype` tensors on `dev`.
    pub fn into_var_builder(self, dtype: DType, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, dev.clone())
    }

    fn load(
        &self,
        name: &str,
        shape: Option<Shape>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        check_stored_shape(name, self.shape(name), shape)?;
        match self.tensor(name, dev) {
            Ok(t) => t.to_dtype(dtype),
            Err(Error::Candle(e)) => Err(e),
            Err(other) => Err(candle_core::Error::wrap(other)),
        }
    }
}

impl SimpleBackend for WeightFile {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.load(name, Some(s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}
