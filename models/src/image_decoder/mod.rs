//! The unCLIP image decoder: SEED codes → decode head → Stable Diffusion 2.1 unCLIP → RGB.

mod seed_decode_head;

pub use seed_decode_head::{SeedDecodeHead, SeedDecodeHeadConfig, BLOCK_HEADS};
