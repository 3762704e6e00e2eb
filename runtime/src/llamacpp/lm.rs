//! [`LlamaCppLm`]: a llama.cpp model and context as a [`CausalLm`].

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use mio_models::generation::CausalLm;
use mio_models::{Error, Result};

use super::rows::{Rows, SeqOp};

type Ctx<'a> = LlamaContext<'a>;

/// One token to decode: (row, position, token id).
type Entry = (usize, i32, u32);

self_cell::self_cell!(
    /// The model and the context that borrows it, owned together.
    pub(crate) struct ModelContext {
        owner: LlamaModel,
        #[covariant]
        dependent: Ctx,
    }
);

/// A MIO LM running in llama.cpp; one sequence per batch row in a unified KV cache.
pub struct LlamaCppLm {
    inner: ModelContext,
    rows: Rows,
    n_vocab: usize,
    n_ctx: usize,
    n_batch: usize,
    n_seq_max: usize,
}

fn backend_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!("llama.cpp {what} failed: {e}"))
}

impl LlamaCppLm {
    pub(crate) fn new(inner: ModelContext, n_seq_max: usize) -> Self {
        let n_vocab = usize::try_from(inner.borrow_owner().n_vocab()).unwrap_or(0);
        let (n_ctx, n_batch) = {
            let ctx = inner.borrow_dependent();
            (ctx.n_ctx() as usize, ctx.n_batch() as usize)
        };
        LlamaCppLm {
            inner,
            rows: Rows::default(),
            n_vocab,
            n_ctx,
            n_batch: n_batch.max(1),
            n_seq_max,
        }
    }

    /// The llama.cpp model (vocabulary, metadata).
    pub fn model(&self) -> &LlamaModel {
        self.inner.borrow_owner()
    }

    /// Ids of `text` as llama.cpp's own tokenizer (from the GGUF) splits it, special
    /// tokens parsed, with `<s>` first when `add_bos`.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Vec<u32> {
        self.model()
            .vocab()
            .tokenize(text.as_bytes(), add_bos, true)
            .iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    fn apply(&mut self, ops: &[SeqOp]) -> Result<()> {
        self.inner.with_dependent_mut(|_, ctx| {
            for op in ops {
                match *op {
                    SeqOp::Remove(s) => {
                        ctx.clear_kv_cache_seq(Some(s as u32), None, None)
                            .map_err(|e| backend_err("sequence removal", e))?;
                    }
                    SeqOp::Copy { src, dst } => ctx
                        .copy_kv_cache_seq(src, dst, None, None)
                        .map_err(|e| backend_err("sequence copy", e))?,
                }
            }
            Ok(())
        })
    }

    /// The (row, position, token) entries to decode and, per row, the index of its last
    /// entry (whose logits are returned).
    fn plan_batch(
        &mut self,
        tokens: &[Vec<u32>],
        mask: &[Vec<u8>],
    ) -> Result<(Vec<Entry>, Vec<usize>)> {
        if self.rows.seq.is_empty() {
            self.rows = Rows::fresh(tokens.len(), self.n_seq_max)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        if tokens.len() != self.rows.seq.len() || mask.len() != tokens.len() {
            return Err(Error::InvalidArgument(format!(
                "llama.cpp forward: {} rows of tokens and {} of masks for a batch of {}",
                tokens.len(),
                mask.len(),
                self.rows.seq.len()
            )));
        }
        let mut entries = vec![];
        let mut last = vec![];
        for (r, (toks, m)) in tokens.iter().zip(mask).enumerate() {
            let new_mask = m.len().checked_sub(toks.len()).and_then(|s| m.get(s..));
            let Some(new_mask) = new_mask else {
                return Err(Error::InvalidArgument(
                    "attention mask shorter than the new tokens".into(),
                ));
            };
            let mut last_of_row = None;
            for (&t, &keep) in toks.iter().zip(new_mask) {
                if keep == 0 {
                    continue;
                }
                if t as usize >= self.n_vocab {
                    return Err(Error::InvalidArgument(format!(
                        "token id {t} is outside the LM's vocabulary of {}",
                        self.n_vocab
                    )));
                }
                last_of_row = Some(entries.len());
                entries.push((r, self.rows.pos[r], t));
                self.rows.pos[r] += 1;
            }
            let Some(l) = last_of_row else {
                return Err(Error::InvalidArgument(format!(
                    "row {r} has no real token to run (all padding)"
                )));
            };
            last.push(l);
        }
        let used: usize = self.rows.pos.iter().map(|&p| p as usize).max().unwrap_or(0);
        if used > self.n_ctx {
            return Err(Error::InvalidArgument(format!(
                "the sequence needs {used} positions but the llama.cpp context holds {}",
                self.n_ctx
            )));
        }
        Ok((entries, last))
    }
}

impl CausalLm for LlamaCppLm {
    fn vocab_size(&self) -> usize {
        self.n_vocab
    }

    fn max_context(&self) -> usize {
        self.n_ctx
    }

    fn reset(&mut self) {
        self.inner.with_dependent_mut(|_, ctx| ctx.clear_kv_cache());
        self.rows = Rows::default();
    }

    fn forward(
        &mut self,
        tokens: &[Vec<u32>],
        attention_mask: &[Vec<u8>],
    ) -> Result<Vec<Vec<f32>>> {
        let (entries, last) = self.plan_batch(tokens, attention_mask)?;
        let seqs = self.rows.seq.clone();
        let n_batch = self.n_batch;
        let mut logits: Vec<Vec<f32>> = vec![vec![]; last.len()];
        self.inner.with_dependent_mut(|_, ctx| {
            for (c, chunk) in entries.chunks(n_batch).enumerate() {
                let base = c * n_batch;
                let mut batch = LlamaBatch::new(chunk.len(), 1);
                for (k, &(r, pos, t)) in chunk.iter().enumerate() {
                    let want = last.get(r) == Some(&(base + k));
                    batch
                        .add(LlamaToken(t as i32), pos, &[seqs[r]], want)
                        .map_err(|e| backend_err("batch", e))?;
                }
                ctx.decode(&mut batch)
                    .map_err(|e| backend_err("decode", e))?;
                for (k, &(r, _, _)) in chunk.iter().enumerate() {
                    if last.get(r) == Some(&(base + k)) {
                        logits[r] = ctx.get_logits_ith(k as i32).to_vec();
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        Ok(logits)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let (ops, new) = self
            .rows
            .plan_reorder(rows, self.n_seq_max)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.apply(&ops)?;
        self.rows = new;
        Ok(())
    }
}
