//! A [`CausalLm`] wrapper that splits the time spent into prefill (the first forward after a
//! reset) and decode (every later forward), for benchmarks and reports.

use std::time::{Duration, Instant};

use crate::generation::CausalLm;
use crate::Result;

/// Times the calls it forwards to `inner`.
pub(crate) struct Timed<'a, L: CausalLm + ?Sized> {
    inner: &'a mut L,
    prefill: Duration,
    decode: Duration,
    prefill_tokens: usize,
    decode_steps: usize,
    fresh: bool,
}

impl<'a, L: CausalLm + ?Sized> Timed<'a, L> {
    pub(crate) fn new(inner: &'a mut L) -> Self {
        Self {
            inner,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            prefill_tokens: 0,
            decode_steps: 0,
            fresh: true,
        }
    }

    /// (prefill seconds, decode seconds, prompt tokens × rows, decode steps).
    pub(crate) fn totals(&self) -> (f64, f64, usize, usize) {
        (
            self.prefill.as_secs_f64(),
            self.decode.as_secs_f64(),
            self.prefill_tokens,
            self.decode_steps,
        )
    }
}

impl<L: CausalLm + ?Sized> CausalLm for Timed<'_, L> {
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    fn max_context(&self) -> usize {
        self.inner.max_context()
    }

    fn reset(&mut self) {
        self.fresh = true;
        self.inner.reset()
    }

    fn forward(
        &mut self,
        tokens: &[Vec<u32>],
        attention_mask: &[Vec<u8>],
    ) -> Result<Vec<Vec<f32>>> {
        let start = Instant::now();
        let out = self.inner.forward(tokens, attention_mask)?;
        let spent = start.elapsed();
        if self.fresh {
            self.prefill += spent;
            self.prefill_tokens += tokens.iter().map(Vec::len).sum::<usize>();
            self.fresh = false;
        } else {
            self.decode += spent;
            self.decode_steps += 1;
        }
        Ok(out)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let start = Instant::now();
        let out = self.inner.reorder(rows);
        self.decode += start.elapsed();
        out
    }

    fn wants_allowed(&self) -> bool {
        self.inner.wants_allowed()
    }

    fn set_allowed(&mut self, allowed: Vec<Option<Vec<bool>>>) {
        self.inner.set_allowed(allowed);
    }
}
