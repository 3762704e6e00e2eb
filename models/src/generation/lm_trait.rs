//! The contract between generation and an LM backend (candle today, llama.cpp later).

use crate::Result;

/// A causal LM with its own KV cache, driven step by step by the generation loop.
///
/// Rows of a batch are sequences (prompts, or beams). Every call appends `tokens[r]` to
/// row `r`'s cache; all rows get the same number of new tokens per call.
pub trait CausalLm {
    /// Size of the output vocabulary (logit width).
    fn vocab_size(&self) -> usize;

    /// Longest sequence (prompt + generated) the model accepts.
    fn max_context(&self) -> usize;

    /// Drops every cached sequence.
    fn reset(&mut self);

    /// Runs the new `tokens` of each row (equal lengths) on top of the cache.
    ///
    /// `attention_mask[r]` covers the whole row so far (cached + new tokens): 1 for real
    /// tokens, 0 for left padding. Position ids are derived from it as
    /// `cumsum(mask) - 1` (the reference's rule for left-padded batches).
    /// Returns the f32 logits of the last new position of each row (`rows × vocab`).
    fn forward(&mut self, tokens: &[Vec<u32>], attention_mask: &[Vec<u8>])
        -> Result<Vec<Vec<f32>>>;

    /// Reorders (and possibly duplicates) cached rows: new row `i` = old row `rows[i]`.
    /// Beam search uses it after every step; the batch size may change (1 → beams).
    fn reorder(&mut self, rows: &[usize]) -> Result<()>;

    /// True for LMs that return exact scores only for their best tokens (a remote server's
    /// top-k log-probabilities): generation then tells them, before each
    /// [`forward`](CausalLm::forward), which tokens the modality constraints allow.
    fn wants_allowed(&self) -> bool {
        false
    }

    /// Which tokens may follow in each row of the next [`forward`](CausalLm::forward)
    /// (`None`: any; `Some(mask)`: `mask[id]`, vocabulary-wide). An LM that
    /// [`wants_allowed`](CausalLm::wants_allowed) must then score each row's best allowed
    /// token exactly, even when it is not among its best tokens overall.
    fn set_allowed(&mut self, _allowed: Vec<Option<Vec<bool>>>) {}
}
