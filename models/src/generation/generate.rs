//! The entry point: transformers 4.34 `GenerationMixin.generate` for a decoder-only LM,
//! restricted to the modes MIO uses (greedy, sampling, beam search, beam sampling).
//!
//! `generate` validates the request, resets the LM, left-pads the prompts (pad =
//! `pad_token_id`, attention mask 0 on padding, as the reference tokenizer does with
//! `padding_side="left"`), and dispatches: `num_beams == 1` → greedy / sampling,
//! otherwise beam search / beam sampling. `max_length` = padded prompt length +
//! `max_new_tokens`, as HF computes it.
//!
//! Errors: [`Error::EmptyPrompt`] (no prompt, or an empty one), [`Error::PromptTooLong`]
//! (padded prompt + `max_new_tokens` > `max_context()`; `len` is the padded prompt length),
//! [`Error::UnknownTokenId`] (ids outside the LM's vocabulary), [`Error::InvalidArgument`]
//! (bad config, constraints without a vocabulary or with one larger than the LM's).

use super::beam_search::beam_search;
use super::constraints::ModalityConstraints;
use super::output::{Controls, GenerationOutput};
use super::search::greedy_or_sample;
use super::{CausalLm, GenerationConfig};
use crate::text::MioVocab;
use crate::{Error, Result};

/// Left-padded prompts: equal-length rows and their attention masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Token rows, pads first.
    pub ids: Vec<Vec<u32>>,
    /// 0 on padding, 1 on prompt tokens.
    pub masks: Vec<Vec<u8>>,
    /// Length of every row.
    pub prompt_len: usize,
}

/// Left-pads `prompts` to the longest one with `pad`.
pub fn left_pad(prompts: &[Vec<u32>], pad: u32) -> Batch {
    let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut batch = Batch {
        ids: Vec::new(),
        masks: Vec::new(),
        prompt_len,
    };
    for p in prompts {
        let n_pad = prompt_len - p.len();
        let mut ids = vec![pad; n_pad];
        ids.extend_from_slice(p);
        let mut mask = vec![0u8; n_pad];
        mask.resize(prompt_len, 1);
        batch.ids.push(ids);
        batch.masks.push(mask);
    }
    batch
}

/// Generates a continuation of every prompt (unpadded token ids) with `lm`.
///
/// `vocab` is needed when `cfg.constraints` is on. `controls` carries the cancel flag and
/// the per-token callback (see [`Controls`]). The LM is reset first and its cache holds the
/// final rows afterwards (for beam search: in beam order).
pub fn generate<L: CausalLm + ?Sized>(
    lm: &mut L,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    vocab: Option<&MioVocab>,
    mut controls: Controls<'_>,
) -> Result<GenerationOutput> {
    cfg.validate()?;
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(Error::EmptyPrompt);
    }
    let vocab_size = lm.vocab_size();
    cfg.validate_ids(vocab_size)?;
    if let Some(&id) = prompts
        .iter()
        .flatten()
        .find(|&&id| id as usize >= vocab_size)
    {
        return Err(Error::UnknownTokenId { id, vocab_size });
    }
    let batch = left_pad(prompts, cfg.pad_token_id);
    let max = lm.max_context();
    if batch.prompt_len + cfg.max_new_tokens > max {
        return Err(Error::PromptTooLong {
            len: batch.prompt_len,
            max,
        });
    }
    let constraints = constraints_for(cfg, vocab, vocab_size)?;
    lm.reset();
    if cfg.num_beams == 1 {
        greedy_or_sample(lm, batch, cfg, constraints.as_ref(), &mut controls)
    } else {
        beam_search(lm, batch, cfg, constraints.as_ref(), &mut controls)
    }
}

/// The constraint processor `cfg` asks for, checked against the LM's vocabulary size.
fn constraints_for(
    cfg: &GenerationConfig,
    vocab: Option<&MioVocab>,
    vocab_size: usize,
) -> Result<Option<ModalityConstraints>> {
    if !cfg.constraints {
        return Ok(None);
    }
    let Some(vocab) = vocab else {
        return Err(Error::InvalidArgument(
            "modality constraints need the MIO vocabulary".into(),
        ));
    };
    if vocab.vocab_size as usize > vocab_size {
        return Err(Error::InvalidArgument(format!(
            "the MIO vocabulary has {} tokens but the LM only {vocab_size}",
            vocab.vocab_size
        )));
    }
    Ok(Some(ModalityConstraints::new(
        vocab.clone(),
        cfg.speech_timbre,
    )))
}

/// Checks that the LM returned `rows × vocab` logits.
pub(crate) fn check_logits(logits: &[Vec<f32>], rows: usize, vocab: usize) -> Result<()> {
    if logits.len() != rows || logits.iter().any(|l| l.len() != vocab) {
        let widths: Vec<usize> = logits.iter().map(Vec::len).collect();
        return Err(Error::Generation(format!(
            "the LM returned logits of widths {widths:?}, expected {rows} rows of {vocab}"
        )));
    }
    Ok(())
}
