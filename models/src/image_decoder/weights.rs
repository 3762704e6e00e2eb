//! Finds and opens the weights of one diffusers component folder.
//!
//! The tiny fixture has `diffusion_pytorch_model.safetensors`; the real
//! `stable-diffusion-2-1-unclip` release carries `.safetensors`, `.bin` and `fp16` variants of
//! each. Preference: full-precision safetensors, full-precision `.bin` (through the safe pickle
//! reader), then the fp16 variants; tensors are converted to the requested dtype on load.
//! Safetensors are read tensor by tensor through the LM's [`SafetensorsShard`] (seek + read,
//! no mmap, no `unsafe`), so loading the 3.5 GB f32 UNet needs the model's memory only.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::lm::{SafetensorsShard, TensorSource};
use crate::pickle::PthFile;
use crate::{Error, Result};

const CANDIDATES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
];

/// The weights file of the component folder `dir`, by the preference above.
pub fn component_weights(dir: &Path) -> Result<PathBuf> {
    CANDIDATES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::MissingFile(dir.join(CANDIDATES[0])))
}

/// A `VarBuilder` over the component folder `dir` producing `dtype` tensors on `dev`.
pub fn component_var_builder(
    dir: &Path,
    dtype: DType,
    dev: &Device,
) -> Result<VarBuilder<'static>> {
    let path = component_weights(dir)?;
    open_var_builder(&path, dtype, dev)
}

/// A `VarBuilder` over one `.safetensors` or torch pickle file.
pub fn open_var_builder(path: &Path, dtype: DType, dev: &Device) -> Result<VarBuilder<'static>> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        let shard = ShardBackend(SafetensorsShard::open(path)?);
        Ok(VarBuilder::from_backend(
            Box::new(shard),
            dtype,
            dev.clone(),
        ))
    } else {
        Ok(PthFile::open(path)?.into_var_builder(dtype, dev))
    }
}

/// One safetensors file as a `VarBuilder` backend.
struct ShardBackend(SafetensorsShard);

impl ShardBackend {
    fn load(
        &self,
        name: &str,
        shape: Option<Shape>,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let stored = self.0.tensors().get(name).map(|m| m.shape.as_slice());
        crate::pickle::check_stored_shape(name, stored, shape)?;
        match self.0.read(name, dev) {
            Ok(t) => t.to_dtype(dtype),
            Err(Error::Candle(e)) => Err(e),
            Err(other) => Err(candle_core::Error::wrap(other)),
        }
    }
}

impl SimpleBackend for ShardBackend {
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
        self.0.tensors().contains_key(name)
    }
}
