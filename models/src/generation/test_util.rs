//! Test doubles: the tiny model's vocabulary (re-exported) and a fake [`CausalLm`] whose logits are a
//! deterministic function of each row's real tokens (padding removed), with a cache that
//! checks the `forward` / `reorder` protocol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::CausalLm;
pub(crate) use crate::text::tiny_vocab;
use crate::Result;

type LogitsFn = Box<dyn Fn(&[u32]) -> Vec<f32>>;

/// A fake LM: `logits(real tokens of the row)` at every step.
pub struct FakeLm {
    vocab: usize,
    max_context: usize,
    logits: LogitsFn,
    rows: Vec<Vec<u32>>,
    masks: Vec<Vec<u8>>,
    /// Number of tokens per row of every `forward` call.
    pub calls: Vec<usize>,
    /// Rows of every `reorder` call.
    pub reorders: Vec<Vec<usize>>,
}

impl FakeLm {
    pub fn new(vocab: usize, logits: impl Fn(&[u32]) -> Vec<f32> + 'static) -> Self {
        Self {
            vocab,
            max_context: 100_000,
            logits: Box::new(logits),
            rows: Vec::new(),
            masks: Vec::new(),
            calls: Vec::new(),
            reorders: Vec::new(),
        }
    }

    pub fn with_max_context(mut self, n: usize) -> Self {
        self.max_context = n;
        self
    }

    /// A fake whose logits depend only on the last real token, from `table[last]`.
    pub fn table(table: Vec<Vec<f32>>) -> Self {
        let vocab = table[0].len();
        Self::new(vocab, move |toks| {
            table[*toks.last().unwrap() as usize].clone()
        })
    }
}

impl CausalLm for FakeLm {
    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn max_context(&self) -> usize {
        self.max_context
    }

    fn reset(&mut self) {
        self.rows.clear();
        self.masks.clear();
    }

    fn forward(
        &mut self,
        tokens: &[Vec<u32>],
        attention_mask: &[Vec<u8>],
    ) -> Result<Vec<Vec<f32>>> {
        if self.rows.is_empty() {
            self.rows = vec![Vec::new(); tokens.len()];
        }
        assert_eq!(
            tokens.len(),
            self.rows.len(),
            "row count changed without reorder"
        );
        assert_eq!(attention_mask.len(), tokens.len());
        let n = tokens[0].len();
        assert!(
            tokens.iter().all(|t| t.len() == n),
            "rows of unequal length"
        );
        self.calls.push(n);
        self.masks = attention_mask.to_vec();
        let mut out = Vec::new();
        for (r, t) in tokens.iter().enumerate() {
            self.rows[r].extend_from_slice(t);
            assert_eq!(
                self.masks[r].len(),
                self.rows[r].len(),
                "mask must cover the whole row"
            );
            let real: Vec<u32> = self.rows[r]
                .iter()
                .zip(&self.masks[r])
                .filter(|(_, m)| **m == 1)
                .map(|(t, _)| *t)
                .collect();
            let l = (self.logits)(&real);
            assert_eq!(l.len(), self.vocab);
            out.push(l);
        }
        Ok(out)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        self.reorders.push(rows.to_vec());
        self.rows = rows.iter().map(|&r| self.rows[r].clone()).collect();
        self.masks = rows.iter().map(|&r| self.masks[r].clone()).collect();
        Ok(())
    }
}
