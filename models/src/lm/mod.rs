//! The MIO language model: Llama architecture (Yi-6B sizes for MIO-7B) on candle.

mod attention;
mod cache;
mod config;
mod gguf;
mod gguf_check;
mod gguf_write;
mod linear;
mod loader;
mod masks;
mod model;
mod pth_shard;
pub mod qgemv;
mod rotary;
mod safetensors_shard;
mod session;
mod weights;

pub use attention::{LlamaAttention, LlamaMlp};
pub use cache::KvCache;
pub use config::{Config, GenerationConfigFile, LlamaConfigFile, MioTokenConfig, TokenIds};
pub use gguf::{config_from_gguf, gguf_name, GgufWeights};
pub use gguf_check::{validate_gguf, GgufSummary};
pub use gguf_write::{
    gguf_data_size, gguf_metadata, write_gguf, write_gguf_from, GgufProgress, GgufType,
};
pub use linear::{Linear, LlamaRmsNorm};
pub use loader::{expected_tensors, CheckpointWeights, LoadWeights};
pub use masks::{additive_mask, position_ids};
pub use model::{HiddenStates, LlamaDecoderLayer, LlamaForCausalLm};
pub use pth_shard::PthShard;
pub use rotary::{apply_rotary_emb, LlamaRotaryEmbedding};
pub use safetensors_shard::SafetensorsShard;
pub use session::LmSession;
pub use weights::{
    find_shards, open_source, Checkpoint, ShardFiles, ShardFormat, TensorMeta, TensorSource,
};
