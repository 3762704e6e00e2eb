//! [`SeedImageEncoder`]: the SEED image tokenizer's encode path, file to 32 codes.
//!
//! Ports `seed_llama_tokenizer.py::ImageTokenizer.encode` / `SeedLlamaTokenizer.encode_image`
//! as `MIOTokenizer.tokenize_images` drives them: preprocess ([`super::preprocess`]) →
//! `Blip2QformerQuantizer.get_codebook_indices` ([`super::quantizer`]), in f32 (upstream
//! runs fp16 on GPU; the goldens are f32 on CPU). Loads `eva_vit_g.pth` and
//! `seed_quantizer.pt` from `seed-tokenizer-2/` (sizes: real ViT-g / bert-base unless a
//! `tiny_hparams.json` sits beside them). Output: 32 codes in `0..8192` per image.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::checkpoint::{seed_dir, LoadReport, TrackedPth, QUANTIZER_FILE, VIT_FILE};
use super::config::SeedConfig;
use super::preprocess::{load_rgb, ImageTransform};
use super::quantizer::{Blip2QformerQuantizer, EncodeTrace};
use crate::{Error, Result};

/// The SEED encoder: image → 32 codes.
#[derive(Debug, Clone)]
pub struct SeedImageEncoder {
    model: Blip2QformerQuantizer,
    cfg: SeedConfig,
    transform: ImageTransform,
    dev: Device,
    report: LoadReport,
}

impl SeedImageEncoder {
    /// Loads from a release root (its `seed-tokenizer-2/`) or from that folder itself.
    pub fn load(model_dir: &Path, dev: &Device) -> Result<Self> {
        let dir = seed_dir(model_dir)?;
        let cfg = SeedConfig::from_dir(&dir)?;
        let vit_path = crate::weights_file::preferred_weights(&dir.join(VIT_FILE));
        if !vit_path.is_file() {
            return Err(Error::MissingFile(vit_path));
        }
        let vit = TrackedPth::open(&vit_path)?;
        let quantizer = TrackedPth::open(&dir.join(QUANTIZER_FILE))?;
        let model =
            Blip2QformerQuantizer::new(&cfg, vit.var_builder(dev), quantizer.var_builder(dev))?;
        let report = LoadReport {
            vit_unread: vit.unread(),
            quantizer_unread: quantizer.unread(),
        };
        Ok(Self {
            model,
            transform: ImageTransform {
                size: cfg.vit.img_size as u32,
            },
            cfg,
            dev: dev.clone(),
            report,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SeedConfig {
        &self.cfg
    }

    /// Which checkpoint tensors were not read (decoder side and dropped ones).
    pub fn load_report(&self) -> &LoadReport {
        &self.report
    }

    /// The network.
    pub fn model(&self) -> &Blip2QformerQuantizer {
        &self.model
    }

    /// The preprocessing.
    pub fn transform(&self) -> &ImageTransform {
        &self.transform
    }

    /// Codes of an image file (JPEG, PNG, WebP, GIF first frame, BMP).
    pub fn encode_file(&self, path: &Path) -> Result<Vec<u32>> {
        self.encode_rgb(&load_rgb(path)?)
    }

    /// Codes of a decoded RGB image of any size.
    pub fn encode_rgb(&self, img: &RgbImage) -> Result<Vec<u32>> {
        let pixels = self.pixel_values(img)?;
        let codes = self.encode_pixels(&pixels)?.codes;
        Ok(codes.squeeze(0)?.to_vec1::<u32>()?)
    }

    /// `pixel_values` `(3, S, S)` of an RGB image (S = 224).
    pub fn pixel_values(&self, img: &RgbImage) -> Result<Tensor> {
        if img.width() == 0 || img.height() == 0 {
            return Err(Error::EmptyImage {
                width: img.width(),
                height: img.height(),
            });
        }
        self.transform.pixel_values(img, &self.dev)
    }

    /// Every intermediate for `pixel_values` `(3, S, S)` or `(B, 3, S, S)`.
    pub fn encode_pixels(&self, pixel_values: &Tensor) -> Result<EncodeTrace> {
        let s = self.cfg.vit.img_size;
        let pixels = match pixel_values.dims() {
            [3, h, w] if *h == s && *w == s => pixel_values.unsqueeze(0)?,
            [_, 3, h, w] if *h == s && *w == s => pixel_values.clone(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "pixel_values must be (3, {s}, {s}) or (B, 3, {s}, {s}), got {other:?}"
                )))
            }
        };
        let pixels = pixels
            .to_device(&self.dev)?
            .to_dtype(candle_core::DType::F32)?;
        self.model.encode_trace(&pixels)
    }
}
