//! The llama.cpp LM backend (through `llama-cpp-2`): loads a MIO GGUF and implements
//! [`mio_models::generation::CausalLm`], so generation, beam search, the modality
//! constraints, streaming and cancel are the same code as on the candle backend.
//!
//! Rows of a batch are llama.cpp sequences in one unified KV cache; beam search reorders
//! them with sequence copies and removals (no prompt is ever re-run). Files are validated
//! by [`mio_models::lm::validate_gguf`] before llama.cpp sees them, because llama.cpp
//! aborts the process on some malformed files.

mod lm;
mod load;
mod rows;

pub use lm::LlamaCppLm;
pub use load::{load_llamacpp, open_llamacpp, LlamaCppLoad, LlamaCppOptions};
