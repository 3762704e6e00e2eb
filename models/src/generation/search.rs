//! Greedy search and multinomial sampling: transformers 4.34 `GenerationMixin.greedy_search`
//! and `GenerationMixin.sample` (`generation/utils.py`) over a [`CausalLm`].
//!
//! Per step and row: logits → repetition penalty → modality constraints → (sampling:
//! temperature, top-k, top-p, soft-max, draw) or arg-max. Rows that finished get
//! `pad_token_id` with attention-mask 1, as HF's `unfinished_sequences` arithmetic does;
//! the loop ends when every row finished or after `max_new_tokens` steps.
//!
//! Additions: stop sequences (a row whose new tokens end with one finishes like on eos),
//! per-token streaming, cancellation between steps. Deviation: the draw uses our seeded RNG
//! (see `rng.rs`), not torch's.

use super::constraints::{BlockState, ModalityConstraints};
use super::generate::{check_logits, Batch};
use super::output::{Controls, FinishReason, GenerationOutput, TokenEvent};
use super::processors::{argmax, repetition_penalty, softmax, warp};
use super::rng::SeededRng;
use super::{CausalLm, GenerationConfig};
use crate::{Error, Result};

/// One row in flight.
struct Row {
    ids: Vec<u32>,
    mask: Vec<u8>,
    new: Vec<u32>,
    finish: Option<FinishReason>,
    block: BlockState,
}

/// Runs greedy search (`do_sample` false) or sampling over `batch`.
pub(crate) fn greedy_or_sample<L: CausalLm + ?Sized>(
    lm: &mut L,
    batch: Batch,
    cfg: &GenerationConfig,
    constraints: Option<&ModalityConstraints>,
    controls: &mut Controls<'_>,
) -> Result<GenerationOutput> {
    let mut rows = init_rows(batch, constraints);
    let mut rng = SeededRng::new(cfg.seed);
    let mut scores_out = cfg.output_scores.then(Vec::new);
    let mut stopped = false;
    for step in 0..cfg.max_new_tokens {
        if controls.cancelled() {
            stopped = true;
            break;
        }
        if let Some(c) = constraints.filter(|_| lm.wants_allowed()) {
            let remaining = cfg.max_new_tokens - step;
            let n = lm.vocab_size();
            lm.set_allowed(
                rows.iter()
                    .map(|r| Some(c.allowed_mask(&r.block, remaining, n)))
                    .collect(),
            );
        }
        let logits = forward_rows(lm, &rows, step)?;
        let mut step_scores = Vec::new();
        for (r, (row, mut scores)) in rows.iter_mut().zip(logits).enumerate() {
            let picked = pick(
                row,
                &mut scores,
                cfg,
                constraints,
                &mut rng,
                cfg.max_new_tokens - step,
            )?;
            if let Some(out) = scores_out.as_ref().map(|_| scores) {
                step_scores.push(out);
            }
            if push_token(row, picked, cfg, constraints) {
                let event = TokenEvent {
                    row: r,
                    index: row.new.len() - 1,
                    token: picked,
                    finish: row.finish,
                };
                stopped |= controls.emit(&event);
            }
        }
        if let Some(out) = scores_out.as_mut() {
            out.push(step_scores);
        }
        if stopped || rows.iter().all(|r| r.finish.is_some()) {
            break;
        }
    }
    let end = if stopped {
        FinishReason::Cancelled
    } else {
        FinishReason::Length
    };
    Ok(GenerationOutput {
        finish_reasons: rows.iter().map(|r| r.finish.unwrap_or(end)).collect(),
        sequences: rows.iter().map(|r| r.ids.clone()).collect(),
        new_tokens: rows.into_iter().map(|r| r.new).collect(),
        sequences_scores: None,
        scores: scores_out,
    })
}

/// The rows of `batch`, with the block state each prompt leaves.
fn init_rows(batch: Batch, constraints: Option<&ModalityConstraints>) -> Vec<Row> {
    let rows = batch.ids.into_iter().zip(batch.masks);
    rows.map(|(ids, mask)| {
        let block = constraints
            .map(|c| c.scan(&real_tokens(&ids, &mask)))
            .unwrap_or_default();
        Row {
            ids,
            mask,
            new: Vec::new(),
            finish: None,
            block,
        }
    })
    .collect()
}

/// Runs the LM on the prompts (step 0) or on each row's last token.
fn forward_rows<L: CausalLm + ?Sized>(
    lm: &mut L,
    rows: &[Row],
    step: usize,
) -> Result<Vec<Vec<f32>>> {
    let tokens: Vec<Vec<u32>> = if step == 0 {
        rows.iter().map(|r| r.ids.clone()).collect()
    } else {
        rows.iter()
            .map(|r| r.ids[r.ids.len() - 1..].to_vec())
            .collect()
    };
    let masks: Vec<Vec<u8>> = rows.iter().map(|r| r.mask.clone()).collect();
    let logits = lm.forward(&tokens, &masks)?;
    check_logits(&logits, rows.len(), lm.vocab_size())?;
    Ok(logits)
}

/// The tokens of a row that the mask keeps (its prompt without left padding).
pub(crate) fn real_tokens(ids: &[u32], mask: &[u8]) -> Vec<u32> {
    ids.iter()
        .zip(mask)
        .filter(|(_, m)| **m != 0)
        .map(|(t, _)| *t)
        .collect()
}

/// Processes one row's scores in place and chooses its next token (pad when finished).
fn pick(
    row: &Row,
    scores: &mut [f32],
    cfg: &GenerationConfig,
    constraints: Option<&ModalityConstraints>,
    rng: &mut SeededRng,
    remaining: usize,
) -> Result<u32> {
    repetition_penalty(scores, &row.ids, cfg.repetition_penalty);
    if let Some(c) = constraints {
        c.apply_with_budget(&row.block, remaining, scores);
    }
    if cfg.do_sample {
        warp(scores, cfg, 1);
    }
    if row.finish.is_some() {
        return Ok(cfg.pad_token_id);
    }
    let index = if cfg.do_sample {
        rng.multinomial(&softmax(scores))
            .ok_or_else(|| Error::Generation("no token has a positive probability".into()))?
    } else {
        argmax(scores)
    };
    Ok(index as u32)
}

/// Appends `token` to `row`; true when the row was still running (the token is new).
fn push_token(
    row: &mut Row,
    token: u32,
    cfg: &GenerationConfig,
    constraints: Option<&ModalityConstraints>,
) -> bool {
    row.ids.push(token);
    row.mask.push(1);
    if row.finish.is_some() {
        return false;
    }
    row.new.push(token);
    if let Some(c) = constraints {
        c.advance(&mut row.block, token);
    }
    if cfg.is_eos(token) {
        row.finish = Some(FinishReason::Eos);
    } else if cfg.stop_sequences.iter().any(|s| row.new.ends_with(s)) {
        row.finish = Some(FinishReason::Stop);
    }
    true
}
