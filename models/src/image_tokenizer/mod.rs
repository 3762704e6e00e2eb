//! The SEED image tokenizer, encoder side: image → 32 codes of an 8192-entry codebook.
//!
//! Ports `image_tokenizer/` of the MIO reference (`seed_llama_tokenizer.py`,
//! `seed_qformer/{eva_vit,qformer_causual,qformer_quantizer,blip2}.py`, `transforms.py`).
//! [`SeedImageEncoder`] is the entry point; the image block strings are
//! [`crate::text::image_block`] / [`crate::text::image_block_ids`] of its codes.

mod checkpoint;
mod config;
mod encoder;
mod eva_vit;
mod jpeg;
mod jpeg_color;
mod preprocess;
mod qformer;
mod quantizer;

pub use checkpoint::{
    is_decoder_side, is_dropped_upstream, seed_dir, LoadReport, TrackedPth, DECODER_SIDE_PREFIXES,
    QUANTIZER_FILE, SEED_DIR, VIT_FILE,
};
pub use config::{
    CodebookHparams, QformerConfig, QformerHparams, SeedConfig, SeedHparams, VitConfig, VitHparams,
    HPARAMS_FILE,
};
pub use encoder::SeedImageEncoder;
pub use eva_vit::{Attention, Block, Mlp, PatchEmbed, VisionTransformer};
pub use image::RgbImage;
pub use preprocess::{
    decode_rgb, load_rgb, normalize_clip, pil_resize_bilinear, ImageTransform, CLIP_MEAN, CLIP_STD,
};
pub use qformer::{
    causal_mask, BertAttention, BertIntermediate, BertLayer, BertModel, BertOutput,
    BertSelfAttention,
};
pub use quantizer::{Blip2QformerQuantizer, EncodeTaskLayer, EncodeTrace, VectorQuantizer2};
