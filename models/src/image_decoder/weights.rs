//! Finds and opens the weights of one diffusers component folder.
//!
//! The tiny fixture has `diffusion_pytorch_model.safetensors`; the real
//! `stable-diffusion-2-1-unclip` release carries `.safetensors`, `.bin` and `fp16` variants of
//! each. Preference: full-precision safetensors, full-precision `.bin` (through the safe pickle
//! reader), then the fp16 variants; tensors are converted to the requested dtype on load.
//! Safetensors are read tensor by tensor through [`WeightFile`] (the LM's `SafetensorsShard`) (seek + read,
//! no mmap, no `unsafe`), so loading the 3.5 GB f32 UNet needs the model's memory only.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::weights_file::WeightFile;
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

/// A `VarBuilder` over one `.safetensors` or torch pickle file ([`WeightFile`]).
pub fn open_var_builder(path: &Path, dtype: DType, dev: &Device) -> Result<VarBuilder<'static>> {
    Ok(WeightFile::open(path)?.into_var_builder(dtype, dev))
}
