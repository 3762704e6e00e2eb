//! Finds and opens the weights of one diffusers component folder.
//!
//! The tiny fixture has `diffusion_pytorch_model.safetensors`; the real
//! `stable-diffusion-2-1-unclip` release carries `.safetensors`, `.bin` and `fp16` variants of
//! each. Preference: full-precision safetensors, full-precision `.bin` (through the safe pickle
//! reader), then the fp16 variants; tensors are converted to the requested dtype on load.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

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
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, dev)
            .map_err(|e| Error::checkpoint(path, e.to_string()))?;
        Ok(VarBuilder::from_tensors(tensors, dtype, dev))
    } else {
        Ok(PthFile::open(path)?.into_var_builder(dtype, dev))
    }
}
