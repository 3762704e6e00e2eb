//! Generation, separate from the networks: the [`CausalLm`] trait every LM backend
//! implements, greedy / sampling / beam search, modality constraints, stop handling and the
//! incremental detokenizer.

mod incremental;
mod lm_trait;

pub use incremental::IncrementalDetokenizer;
pub use lm_trait::CausalLm;
