//! [`LmSession`]: a shared [`LlamaForCausalLm`] plus its own KV cache, driven by the
//! generation loop through [`CausalLm`]. HF `generate` keeps the same state as
//! `past_key_values` and reorders it with `_reorder_cache` (index_select on the batch dim).

use std::sync::Arc;

use super::cache::KvCache;
use super::model::LlamaForCausalLm;
use crate::generation::CausalLm;
use crate::Result;

/// One generation's state over a shared model.
#[derive(Debug, Clone)]
pub struct LmSession {
    model: Arc<LlamaForCausalLm>,
    cache: KvCache,
}

impl LmSession {
    /// A session with an empty cache.
    pub fn new(model: Arc<LlamaForCausalLm>) -> Self {
        let cache = model.new_cache();
        LmSession { model, cache }
    }

    /// The model.
    pub fn model(&self) -> &Arc<LlamaForCausalLm> {
        &self.model
    }

    /// The KV cache.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
}

impl CausalLm for LmSession {
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn max_context(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    fn reset(&mut self) {
        self.cache.reset();
    }

    fn forward(
        &mut self,
        tokens: &[Vec<u32>],
        attention_mask: &[Vec<u8>],
    ) -> Result<Vec<Vec<f32>>> {
        let logits = self
            .model
            .forward_last(tokens, Some(attention_mask), &mut self.cache)?;
        Ok(logits.to_vec2::<f32>()?)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        self.cache.reorder(rows)
    }
}
