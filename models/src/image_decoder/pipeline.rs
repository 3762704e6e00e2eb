//! `UnclipDecoder`: SEED image codes → 768×768 RGB (tiny fixture: 64×64).
//!
//! Ports MIO's `ImageTokenizer.decode` (`image_tokenizer/models/seed_llama_tokenizer.py`) and
//! the `StableUnCLIPImg2ImgPipeline.__call__` it runs (`pipeline_stable_unclip_img2img.py`,
//! diffusers 0.20.2) with `image_embeds` given, `noise_level=0`, an empty prompt, no
//! negative image: decode head → `noise_image_embeddings` → PNDM loop with classifier-free
//! guidance (batch [uncond, cond] in one UNet call; the uncond class label is all zeros and
//! both text conditionings are the empty-prompt embedding) → VAE decode →
//! `(x/2+0.5).clamp(0,1)` → uint8 (round half to even, as numpy).
//! Deviations: the latents and the embedding noise are drawn from our own seeded normal
//! generator (the reference draws torch `randn` once at load); the empty-prompt embedding
//! comes from [`super::prompt_cache`] (precomputed file, cache folder, or the text encoder).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use super::noising::StableUnclipImageNormalizer;
use super::preview::latent_preview;
use super::prompt_cache::{load_prompt_embeds, PromptSource};
use super::scheduler::{DdpmNoising, PndmScheduler, SchedulerConfig};
use super::seed_decode_head::SeedDecodeHead;
use super::unet::UNet2DConditionModel;
use super::vae::AutoencoderKl;
use crate::{Error, Result};

/// Options of one decode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// PNDM inference steps (`num_inference_steps`, 20 in MIO; steps + 1 UNet calls).
    pub steps: usize,
    /// Classifier-free guidance scale (10 in MIO; ≤ 1 disables guidance).
    pub guidance: f64,
    /// Seed of the initial latents and of the embedding noise.
    pub seed: u64,
    /// Attach a latent preview ([`latent_preview`]) to every `preview_every`-th step and to
    /// the last one; 0 = no previews.
    pub preview_every: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            steps: 20,
            guidance: 10.0,
            seed: 0,
            preview_every: 0,
        }
    }
}

/// Progress of the denoising loop, reported after each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeStep {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in all (UNet calls: `steps + 1`).
    pub total: usize,
    /// UNet timestep of the step just done.
    pub timestep: usize,
    /// The latents as a low-resolution picture, on the steps
    /// [`DecodeOptions::preview_every`] asks for.
    pub preview: Option<RgbImage>,
}

/// An 8-bit RGB image, rows top to bottom, `width * height * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Interleaved RGB bytes.
    pub data: Vec<u8>,
}

/// Everything one decode produced (for parity checks and debugging).
#[derive(Debug, Clone)]
pub struct DecodeOutput {
    /// `noise_image_embeddings` output (1 × 2D).
    pub noised_image_embeds: Tensor,
    /// Latents after the last step (1 × 4 × h × w).
    pub final_latents: Tensor,
    /// VAE output before post-processing (1 × 3 × H × W, about [-1, 1]).
    pub vae_out: Tensor,
    /// Post-processed float image (1 × H × W × 3 in [0, 1]).
    pub image_float: Tensor,
    /// The 8-bit image.
    pub image: RgbImage,
}

/// The whole unCLIP image decoder.
#[derive(Debug)]
pub struct UnclipDecoder {
    head: SeedDecodeHead,
    normalizer: StableUnclipImageNormalizer,
    noising: DdpmNoising,
    scheduler: SchedulerConfig,
    unet: UNet2DConditionModel,
    vae: AutoencoderKl,
    prompt_embeds: Tensor,
    prompt_source: PromptSource,
    dev: Device,
}

/// Folder of the unCLIP pipeline inside a MIO release.
pub const UNCLIP_DIR: &str = "stable-diffusion-2-1-unclip";
/// The SEED quantizer checkpoint inside a MIO release.
pub const SEED_QUANTIZER: &str = "seed-tokenizer-2/seed_quantizer.pt";

impl UnclipDecoder {
    /// Loads the decoder from a MIO release folder (`seed-tokenizer-2/`,
    /// `stable-diffusion-2-1-unclip/`), float32 on `dev`, computing the empty-prompt
    /// embedding unless the folder holds it.
    pub fn load(model_dir: &Path, dev: &Device) -> Result<Self> {
        Self::load_with_cache(model_dir, dev, None)
    }

    /// [`Self::load`], with the empty-prompt embedding cached in `cache_dir` (keyed by the
    /// text encoder's sha256) when the folder does not hold it.
    pub fn load_with_cache(
        model_dir: &Path,
        dev: &Device,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        check_components(model_dir)?;
        let head = SeedDecodeHead::load(&model_dir.join(SEED_QUANTIZER), dev)?;
        let sd = model_dir.join(UNCLIP_DIR);
        let dim = head.config().image_features_dim;
        let normalizer = StableUnclipImageNormalizer::load(&sd.join("image_normalizer"), dim, dev)?;
        let noising_cfg =
            SchedulerConfig::load(&sd.join("image_noising_scheduler/scheduler_config.json"))?;
        let scheduler = SchedulerConfig::load(&sd.join("scheduler/scheduler_config.json"))?;
        PndmScheduler::new(scheduler.clone())?;
        let unet = UNet2DConditionModel::load(&sd.join("unet"), DType::F32, dev)?;
        let vae = AutoencoderKl::load(&sd.join("vae"), DType::F32, dev)?;
        let (prompt_embeds, prompt_source) = load_prompt_embeds(&sd, dev, cache_dir)?;
        Ok(Self {
            head,
            normalizer,
            noising: DdpmNoising::new(&noising_cfg)?,
            scheduler,
            unet,
            vae,
            prompt_embeds,
            prompt_source,
            dev: dev.clone(),
        })
    }

    /// Where the empty-prompt embedding came from at load.
    pub fn prompt_source(&self) -> PromptSource {
        self.prompt_source
    }

    /// The device the decoder runs on.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Shape of the initial latents (1 × C × s × s).
    pub fn latent_shape(&self) -> (usize, usize, usize, usize) {
        let c = self.unet.config();
        (1, c.in_channels, c.sample_size, c.sample_size)
    }

    /// Size of the decoded image, `(width, height)`.
    pub fn image_size(&self) -> (usize, usize) {
        let s = self.unet.config().sample_size * self.vae.config().scale_factor();
        (s, s)
    }

    /// The decode head alone: codes → image embedding (1 × D).
    pub fn image_embedding(&self, codes: &[u32]) -> Result<Tensor> {
        let want = self.head.config().num_query_token;
        if codes.len() != want {
            return Err(Error::InvalidArgument(format!(
                "an image takes {want} codes, got {}",
                codes.len()
            )));
        }
        let n = self.head.config().n_embed;
        if let Some(bad) = codes.iter().find(|&&c| c as usize >= n) {
            return Err(Error::InvalidArgument(format!(
                "image code {bad} is out of range: codes are 0..{n}"
            )));
        }
        let codes = Tensor::from_slice(codes, (1, codes.len()), &self.dev)?;
        let embeds = self.head.forward(&codes)?;
        check_finite(&embeds, "the image embedding (SEED decode head)")?;
        Ok(embeds)
    }

    /// Decodes `codes` into an image, drawing latents and noise from `opts.seed`.
    /// `progress` is called after each denoising step; `cancel` is checked before each.
    pub fn decode(
        &self,
        codes: &[u32],
        opts: &DecodeOptions,
        progress: &mut dyn FnMut(DecodeStep),
        cancel: &AtomicBool,
    ) -> Result<RgbImage> {
        let embeds = self.image_embedding(codes)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let latents = randn(&mut rng, self.latent_shape(), &self.dev)?;
        let noise = randn(&mut rng, embeds.dims2()?, &self.dev)?;
        Ok(self
            .decode_pinned(&embeds, &latents, &noise, opts, progress, cancel)?
            .image)
    }

    /// Decodes an image embedding with given initial latents and embedding noise.
    pub fn decode_pinned(
        &self,
        image_embeds: &Tensor,
        latents: &Tensor,
        noise: &Tensor,
        opts: &DecodeOptions,
        progress: &mut dyn FnMut(DecodeStep),
        cancel: &AtomicBool,
    ) -> Result<DecodeOutput> {
        let noised =
            self.normalizer
                .noise_image_embeddings(&self.noising, image_embeds, noise, 0)?;
        let final_latents = self.denoise(&noised, latents, opts, progress, cancel)?;
        let vae_out = self.vae.decode(&final_latents)?;
        check_finite(&vae_out, "the decoded picture (VAE)")?;
        let image_float = ((vae_out.affine(0.5, 0.5)?).clamp(0f32, 1f32)?).permute((0, 2, 3, 1))?;
        let image = to_rgb8(&image_float)?;
        Ok(DecodeOutput {
            noised_image_embeds: noised,
            final_latents,
            vae_out,
            image_float,
            image,
        })
    }

    /// The denoising loop from `latents` conditioned on the noised embedding (1 × 2D).
    pub fn denoise(
        &self,
        noised_embeds: &Tensor,
        latents: &Tensor,
        opts: &DecodeOptions,
        progress: &mut dyn FnMut(DecodeStep),
        cancel: &AtomicBool,
    ) -> Result<Tensor> {
        let mut scheduler = PndmScheduler::new(self.scheduler.clone())?;
        scheduler.set_timesteps(opts.steps)?;
        let cfg = opts.guidance > 1.0;
        let (context, labels) = if cfg {
            let uncond = noised_embeds.zeros_like()?;
            (
                Tensor::cat(&[&self.prompt_embeds, &self.prompt_embeds], 0)?,
                Tensor::cat(&[&uncond, noised_embeds], 0)?,
            )
        } else {
            (self.prompt_embeds.clone(), noised_embeds.clone())
        };
        let mut latents = (latents * scheduler.init_noise_sigma())?;
        let timesteps = scheduler.timesteps().to_vec();
        for (i, &t) in timesteps.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let input = if cfg {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let out = self.unet.forward(&input, t, &context, &labels)?;
            let guided = if cfg {
                let (uncond, cond) = (out.narrow(0, 0, 1)?, out.narrow(0, 1, 1)?);
                (&uncond + ((cond - &uncond)? * opts.guidance)?)?
            } else {
                out
            };
            latents = scheduler.step(&guided, t, &latents)?;
            let (step, total) = (i + 1, timesteps.len());
            let due = opts.preview_every > 0 && (step % opts.preview_every == 0 || step == total);
            progress(DecodeStep {
                step,
                total,
                timestep: t,
                preview: if due {
                    Some(latent_preview(&latents)?)
                } else {
                    None
                },
            });
        }
        check_finite(&latents, "the denoised latents (UNet)")?;
        Ok(latents)
    }
}

/// [`Error::MissingComponent`] for the first component file of the pipeline that is absent
/// (the text encoder is checked where it is needed).
fn check_components(model_dir: &Path) -> Result<()> {
    let sd = model_dir.join(UNCLIP_DIR);
    let files = [
        (
            "SEED quantizer",
            crate::weights_file::preferred_weights(&model_dir.join(SEED_QUANTIZER)),
        ),
        ("image_normalizer", sd.join("image_normalizer/config.json")),
        (
            "image_noising_scheduler",
            sd.join("image_noising_scheduler/scheduler_config.json"),
        ),
        ("scheduler", sd.join("scheduler/scheduler_config.json")),
        ("unet", sd.join("unet/config.json")),
        ("vae", sd.join("vae/config.json")),
    ];
    for (component, path) in files {
        if !path.is_file() {
            return Err(Error::MissingComponent {
                component: component.into(),
                path,
            });
        }
    }
    for component in ["image_normalizer", "unet", "vae"] {
        if let Err(Error::MissingFile(path)) =
            super::weights::component_weights(&sd.join(component))
        {
            return Err(Error::MissingComponent {
                component: format!("{component} weights"),
                path,
            });
        }
    }
    Ok(())
}

/// [`Error::NonFinite`] when `t` holds a NaN or an infinity (a broken checkpoint).
fn check_finite(t: &Tensor, what: &str) -> Result<()> {
    let sum = t
        .abs()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    if sum.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite(format!(
            "NaN or infinite values in {what}: the weights are broken"
        )))
    }
}

/// Standard normal f32 samples (Box–Muller) in `shape`.
fn randn(
    rng: &mut rand::rngs::StdRng,
    shape: impl Into<candle_core::Shape>,
    dev: &Device,
) -> Result<Tensor> {
    let shape = shape.into();
    let n = shape.elem_count();
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    Ok(Tensor::from_vec(out, shape, dev)?)
}

/// `numpy_to_pil`: (1 × H × W × 3) in [0, 1] → bytes `round(x · 255)`.
fn to_rgb8(image: &Tensor) -> Result<RgbImage> {
    let (_, height, width, _) = image.dims4()?;
    let data = image
        .flatten_all()?
        .to_vec1::<f32>()?
        .into_iter()
        .map(|v| (v * 255.0).round_ties_even().clamp(0.0, 255.0) as u8)
        .collect();
    Ok(RgbImage {
        width,
        height,
        data,
    })
}
