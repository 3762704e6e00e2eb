//! The unCLIP image decoder: SEED codes → decode head → Stable Diffusion 2.1 unCLIP → RGB.

mod clip_text;
mod noising;
mod pipeline;
mod preview;
mod prompt_cache;
mod resnet;
mod scheduler;
mod seed_decode_head;
mod transformer;
mod unet;
mod unet_blocks;
mod vae;
mod weights;

pub use clip_text::{
    empty_prompt_ids, encode_empty_prompt, text_encoder_weights, ClipTextConfig, ClipTextModel,
};
pub use noising::{timestep_embedding, StableUnclipImageNormalizer};
pub use pipeline::{
    DecodeOptions, DecodeOutput, DecodeStep, RgbImage, UnclipDecoder, SEED_QUANTIZER, UNCLIP_DIR,
};
pub use preview::latent_preview;
pub use prompt_cache::{
    load_prompt_embeds, weights_sha256, PromptSource, EMPTY_PROMPT_EMBEDS, PROMPT_CACHE_DIR,
};
pub use scheduler::{DdpmNoising, PndmScheduler, SchedulerConfig};
pub use seed_decode_head::{SeedDecodeHead, SeedDecodeHeadConfig, BLOCK_HEADS};
pub use transformer::attention_rows;
pub use unet::{PerBlock, UNet2DConditionConfig, UNet2DConditionModel};
pub use vae::{AutoencoderKl, AutoencoderKlConfig};
pub use weights::{component_var_builder, component_weights, open_var_builder};
