//! Beam search and beam sampling: transformers 4.34 `GenerationMixin.beam_search` and
//! `GenerationMixin.beam_sample` (`generation/utils.py`) over a [`CausalLm`].
//!
//! Per step: log-soft-max of each beam row's logits → repetition penalty → modality
//! constraints → + the beam's running score (f32). Beam search takes the top
//! `max(2, 1 + n_eos) · num_beams` candidates of each prompt over `num_beams × vocab`
//! (ties: lower beam, then lower token); beam sampling warps the summed scores (min 2
//! tokens kept), draws `2 · num_beams` candidates without replacement and sorts them.
//! `BeamScorer::process` picks the next beams, the LM cache is reordered, and the loop stops
//! when every prompt is done or after `max_new_tokens` steps; `finalize` picks the best
//! hypothesis. Beam search starts with scores `[0, -1e9, …]`, beam sampling with zeros.
//!
//! The prompt is run once per prompt (not once per beam) and its logits repeated; the first
//! reorder maps the `prompts` cache rows to `prompts × num_beams` beam rows. Streaming:
//! the final hypotheses, once search is over (see `output.rs`).

use super::beam::{BeamScorer, Candidate, Hypothesis};
use super::constraints::{BlockState, ModalityConstraints};
use super::generate::{check_logits, Batch};
use super::output::{Controls, FinishReason, GenerationOutput, TokenEvent};
use super::processors::{log_softmax, repetition_penalty, softmax, warp};
use super::rng::SeededRng;
use super::search::real_tokens;
use super::{CausalLm, GenerationConfig};
use crate::{Error, Result};

/// The running beams of every prompt (`prompts × num_beams` rows).
struct Beams {
    rows: Vec<Vec<u32>>,
    masks: Vec<Vec<u8>>,
    blocks: Vec<BlockState>,
    scores: Vec<f32>,
}

/// Runs beam search (or beam sampling when `do_sample`) over `batch`.
pub(crate) fn beam_search<L: CausalLm + ?Sized>(
    lm: &mut L,
    batch: Batch,
    cfg: &GenerationConfig,
    constraints: Option<&ModalityConstraints>,
    controls: &mut Controls<'_>,
) -> Result<GenerationOutput> {
    let (k, n_prompts, prompt_len) = (cfg.num_beams, batch.ids.len(), batch.prompt_len);
    let max_length = prompt_len + cfg.max_new_tokens;
    let mut beams = expand(&batch, k, cfg.do_sample, constraints);
    let mut scorer = BeamScorer::new(
        n_prompts,
        k,
        cfg.length_penalty,
        cfg.early_stopping,
        max_length,
    );
    let mut rng = SeededRng::new(cfg.seed);
    let mut scores_out = cfg.output_scores.then(Vec::new);
    let mut cancelled = false;
    for step in 0..cfg.max_new_tokens {
        if controls.cancelled() {
            cancelled = true;
            break;
        }
        if let Some(c) = constraints.filter(|_| lm.wants_allowed()) {
            hint_allowed(lm, c, &beams, step, k, cfg.max_new_tokens - step);
        }
        let logits = beam_logits(lm, &batch, &beams, step, k)?;
        let (summed, processed) =
            score_rows(&beams, logits, cfg, constraints, cfg.max_new_tokens - step);
        let candidates = if cfg.do_sample {
            sample_candidates(&summed, k, &mut rng)?
        } else {
            top_candidates(&summed, k, cfg.eos_token_ids.len())
        };
        if let Some(out) = scores_out.as_mut() {
            out.push(processed);
        }
        let next = scorer.process(
            &beams.rows,
            &candidates,
            &cfg.eos_token_ids,
            cfg.pad_token_id,
        )?;
        let sources: Vec<usize> = next
            .iter()
            .map(|c| if step == 0 { c.row / k } else { c.row })
            .collect();
        lm.reorder(&sources)?;
        beams = advance(beams, &next, constraints);
        if scorer.is_done() {
            break;
        }
    }
    let best = scorer.finalize(&beams.rows, &beams.scores);
    let out = assemble(best, cfg, prompt_len, cancelled, scores_out);
    stream(&out, controls);
    Ok(out)
}

/// Tells `lm` which tokens each row of the next forward may pick (at step 0 the rows are
/// the prompts, whose `k` beams share one state).
fn hint_allowed<L: CausalLm + ?Sized>(
    lm: &mut L,
    c: &ModalityConstraints,
    beams: &Beams,
    step: usize,
    k: usize,
    remaining: usize,
) {
    let n = lm.vocab_size();
    let stride = if step == 0 { k } else { 1 };
    let masks = beams.blocks.iter().step_by(stride);
    lm.set_allowed(
        masks
            .map(|b| Some(c.allowed_mask(b, remaining, n)))
            .collect(),
    );
}

/// The logits of every beam row: at step 0 the prompts' (run once each) repeated `k`
/// times, later the beams' last tokens.
fn beam_logits<L: CausalLm + ?Sized>(
    lm: &mut L,
    batch: &Batch,
    beams: &Beams,
    step: usize,
    k: usize,
) -> Result<Vec<Vec<f32>>> {
    if step == 0 {
        let prompt_logits = lm.forward(&batch.ids, &batch.masks)?;
        check_logits(&prompt_logits, batch.ids.len(), lm.vocab_size())?;
        return Ok(prompt_logits
            .iter()
            .flat_map(|l| std::iter::repeat_n(l.clone(), k))
            .collect());
    }
    let last: Vec<Vec<u32>> = beams
        .rows
        .iter()
        .map(|r| r[r.len() - 1..].to_vec())
        .collect();
    let logits = lm.forward(&last, &beams.masks)?;
    check_logits(&logits, beams.rows.len(), lm.vocab_size())?;
    Ok(logits)
}

/// Repeats each prompt `k` times (HF `_expand_inputs_for_generation`) with the initial
/// beam scores.
fn expand(
    batch: &Batch,
    k: usize,
    sampling: bool,
    constraints: Option<&ModalityConstraints>,
) -> Beams {
    let mut beams = Beams {
        rows: Vec::new(),
        masks: Vec::new(),
        blocks: Vec::new(),
        scores: Vec::new(),
    };
    for (ids, mask) in batch.ids.iter().zip(&batch.masks) {
        let block = constraints
            .map(|c| c.scan(&real_tokens(ids, mask)))
            .unwrap_or_default();
        for j in 0..k {
            beams.rows.push(ids.clone());
            beams.masks.push(mask.clone());
            beams.blocks.push(block);
            beams
                .scores
                .push(if j == 0 || sampling { 0.0 } else { -1e9 });
        }
    }
    beams
}

/// Per beam row: the processed log-probs (HF `scores` entry) and, for candidate selection,
/// those plus the beam score (beam sampling: warped as well).
fn score_rows(
    beams: &Beams,
    logits: Vec<Vec<f32>>,
    cfg: &GenerationConfig,
    constraints: Option<&ModalityConstraints>,
    remaining: usize,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut summed = Vec::with_capacity(logits.len());
    let mut processed = Vec::new();
    for (r, mut s) in logits.into_iter().enumerate() {
        log_softmax(&mut s);
        repetition_penalty(&mut s, &beams.rows[r], cfg.repetition_penalty);
        if let Some(c) = constraints {
            c.apply_with_budget(&beams.blocks[r], remaining, &mut s);
        }
        if cfg.output_scores {
            let mut p = s.clone();
            if cfg.do_sample {
                warp(&mut p, cfg, 2);
            }
            processed.push(p);
        }
        let beam_score = beams.scores[r];
        s.iter_mut().for_each(|x| *x += beam_score);
        if cfg.do_sample {
            warp(&mut s, cfg, 2);
        }
        summed.push(s);
    }
    (summed, processed)
}

/// `torch.topk` over each prompt's `k × vocab` scores, `max(2, 1 + n_eos) · k` best.
fn top_candidates(summed: &[Vec<f32>], k: usize, n_eos: usize) -> Vec<Vec<Candidate>> {
    let want = 2.max(1 + n_eos) * k;
    summed
        .chunks(k)
        .enumerate()
        .map(|(p, rows)| {
            let mut all: Vec<(f32, usize, u32)> = rows
                .iter()
                .enumerate()
                .flat_map(|(j, s)| s.iter().enumerate().map(move |(t, &x)| (x, j, t as u32)))
                .collect();
            let order = |a: &(f32, usize, u32), b: &(f32, usize, u32)| {
                b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
            };
            let n = want.min(all.len());
            if n > 0 && n < all.len() {
                all.select_nth_unstable_by(n - 1, order);
                all.truncate(n);
            }
            all.sort_by(order);
            all.into_iter()
                .map(|(score, j, token)| Candidate {
                    score,
                    token,
                    row: p * k + j,
                })
                .collect()
        })
        .collect()
}

/// Beam sampling: `2k` draws without replacement from the soft-max over each prompt's
/// `k × vocab` warped scores, sorted by score (stable).
fn sample_candidates(
    summed: &[Vec<f32>],
    k: usize,
    rng: &mut SeededRng,
) -> Result<Vec<Vec<Candidate>>> {
    summed
        .chunks(k)
        .enumerate()
        .map(|(p, rows)| {
            let vocab = rows.first().map_or(0, Vec::len);
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            let drawn = rng
                .multinomial_without_replacement(&softmax(&flat), 2 * k)
                .ok_or_else(|| {
                    Error::Generation(format!("fewer than {} tokens can be sampled", 2 * k))
                })?;
            let mut cands: Vec<Candidate> = drawn
                .into_iter()
                .map(|i| Candidate {
                    score: flat[i],
                    token: (i % vocab) as u32,
                    row: p * k + i / vocab,
                })
                .collect();
            cands.sort_by(|a, b| b.score.total_cmp(&a.score));
            Ok(cands)
        })
        .collect()
}

/// The beams after a step: rows reordered and extended, scores replaced.
fn advance(beams: Beams, next: &[Candidate], constraints: Option<&ModalityConstraints>) -> Beams {
    let mut out = Beams {
        rows: Vec::new(),
        masks: beams.masks,
        blocks: Vec::new(),
        scores: Vec::new(),
    };
    for c in next {
        let mut row = beams.rows[c.row].clone();
        row.push(c.token);
        out.rows.push(row);
        let mut block = beams.blocks[c.row];
        if let Some(cons) = constraints {
            cons.advance(&mut block, c.token);
        }
        out.blocks.push(block);
        out.scores.push(c.score);
    }
    // HF extends the attention mask with ones and never reorders it (rows of one prompt
    // share their mask).
    out.masks.iter_mut().for_each(|m| m.push(1));
    out
}

/// HF finalize's output rows: hypothesis + first eos when it ended on eos, right-padded.
fn assemble(
    best: Vec<Hypothesis>,
    cfg: &GenerationConfig,
    prompt_len: usize,
    cancelled: bool,
    scores: Option<Vec<Vec<Vec<f32>>>>,
) -> GenerationOutput {
    let mut out = GenerationOutput {
        sequences: Vec::new(),
        new_tokens: Vec::new(),
        finish_reasons: Vec::new(),
        sequences_scores: Some(best.iter().map(|h| h.score as f32).collect()),
        scores,
    };
    for h in best {
        let mut seq = h.tokens;
        let first_eos = cfg.eos_token_ids.first().copied();
        let reason = match (h.eos, first_eos) {
            (true, Some(eos)) => {
                seq.push(eos);
                FinishReason::Eos
            }
            _ if cancelled => FinishReason::Cancelled,
            _ => FinishReason::Length,
        };
        out.new_tokens
            .push(seq.get(prompt_len..).unwrap_or_default().to_vec());
        out.sequences.push(seq);
        out.finish_reasons.push(reason);
    }
    let width = out.sequences.iter().map(Vec::len).max().unwrap_or(0);
    out.sequences
        .iter_mut()
        .for_each(|s| s.resize(width, cfg.pad_token_id));
    out
}

/// Streams each prompt's final new tokens, stopping when the callback breaks.
fn stream(out: &GenerationOutput, controls: &mut Controls<'_>) {
    for (row, tokens) in out.new_tokens.iter().enumerate() {
        for (index, &token) in tokens.iter().enumerate() {
            let finish = (index + 1 == tokens.len()).then_some(out.finish_reasons[row]);
            if controls.emit(&TokenEvent {
                row,
                index,
                token,
                finish,
            }) {
                return;
            }
        }
    }
}
