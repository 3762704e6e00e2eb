//! Generation, separate from the networks: the [`CausalLm`] trait every LM backend
//! implements, greedy / sampling / beam search with transformers 4.34 semantics, MIO's
//! modality constraints, stop handling, streaming and cancellation.

mod beam;
mod beam_search;
mod config;
#[cfg(test)]
mod constrained_tests;
mod constraints;
mod generate;
#[cfg(test)]
mod hf_cases_tests;
mod incremental;
mod lm_trait;
mod output;
mod processors;
mod rng;
mod search;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use config::{EarlyStopping, GenerationConfig, Task};
pub use constraints::{BlockState, ModalityConstraints, IMAGE_BLOCK_LEN, IMAGE_BLOCK_TOKENS};
pub use generate::{generate, left_pad, Batch};
pub use incremental::IncrementalDetokenizer;
pub use lm_trait::CausalLm;
pub use output::{Controls, FinishReason, GenerationOutput, TokenCallback, TokenEvent};
pub use processors::{log_softmax, repetition_penalty, softmax, temperature, top_k, top_p};
pub use rng::SeededRng;
