//! MIO's modality constraints: a logits processor (no upstream counterpart; the reference
//! generates unconstrained) that keeps image and speech blocks well formed, driven by the
//! ids of [`MioVocab`].
//!
//! Rules, per row, from the state reached by the whole row (prompt included):
//! * outside blocks: bare `<imgN>` / `<spchN>`, the closers `</image>` / `</spch>` and the
//!   unused placeholders `[IMG]` / `[SPCH]` are masked; text, eos, `<image>`, `<spch>` pass;
//! * after `<image>`: only `<imgN>` until exactly [`IMAGE_BLOCK_LEN`] codes, then only
//!   `</image>`;
//! * inside `<spch>`: only speech tokens, content layer (`<spch0..1023>`) first. With timbre
//!   the block is content × L, timbre0 × L, timbre1 × L, timbre2 × L, then `</spch>`: L is
//!   fixed when the content layer ends (switch to timbre0 after ≥ 1 content token), each
//!   later layer must reach L before the next starts. Content-only: `</spch>` is allowed
//!   after ≥ 1 content token, timbre tokens never.
//!
//! * budget: `<image>` is masked when fewer than [`IMAGE_BLOCK_TOKENS`] new tokens remain, so
//!   every image block the model opens closes before `max_new_tokens` (a block's length is
//!   fixed, so opening it only when it fits is enough). Speech blocks have no fixed length
//!   and are not budgeted: a speech block can be cut by `max_new_tokens`.
//!
//! The processor runs after the repetition penalty (HF appends custom processors after its
//! own) and before the sampling warpers. Tokens that break a rule in the *prompt* are
//! tracked leniently (the block is considered left), never rejected.

use std::ops::Range;

use crate::text::MioVocab;

/// Image codes per image block (SEED's 32 causal queries).
pub const IMAGE_BLOCK_LEN: u32 = 32;

/// Tokens of a whole image block: `<image>`, the codes, `</image>`.
pub const IMAGE_BLOCK_TOKENS: usize = IMAGE_BLOCK_LEN as usize + 2;

/// Where a row stands with respect to media blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockState {
    /// Outside any block.
    #[default]
    Outside,
    /// Inside `<image>` with `codes` image codes so far.
    Image {
        /// Codes emitted in this block.
        codes: u32,
    },
    /// Inside `<spch>`.
    Speech {
        /// Current layer: 0 = content, 1..=3 = timbre0..2.
        layer: u32,
        /// Tokens of the current layer so far.
        count: u32,
        /// Length of every layer, known once the content layer has ended.
        layer_len: Option<u32>,
    },
}

/// The modality-constraint processor for one vocabulary.
#[derive(Debug, Clone)]
pub struct ModalityConstraints {
    vocab: MioVocab,
    speech_timbre: bool,
}

/// Which tokens a state lets through.
enum Rule {
    /// Only these ranges.
    Only(Vec<Range<u32>>),
    /// Everything but these ranges.
    Except(Vec<Range<u32>>),
}

fn one(id: u32) -> Range<u32> {
    id..id + 1
}

impl ModalityConstraints {
    /// Constraints over `vocab`; `speech_timbre` requests the three timbre layers in speech
    /// blocks.
    pub fn new(vocab: MioVocab, speech_timbre: bool) -> Self {
        Self {
            vocab,
            speech_timbre,
        }
    }

    /// The vocabulary the constraints use.
    pub fn vocab(&self) -> &MioVocab {
        &self.vocab
    }

    fn n_layers(&self) -> u32 {
        self.vocab.n_speech_tokens / self.vocab.speech_codebook_size.max(1)
    }

    fn image_range(&self) -> Range<u32> {
        self.vocab.img0..self.vocab.img0 + self.vocab.n_image_codes
    }

    fn layer_range(&self, layer: u32) -> Range<u32> {
        let cb = self.vocab.speech_codebook_size;
        let start = self.vocab.spch0 + layer * cb;
        start..start + cb
    }

    /// Speech layer of `token`, when it is a speech token.
    fn speech_layer(&self, token: u32) -> Option<u32> {
        let n = self.vocab.speech_token(token)?;
        Some(n / self.vocab.speech_codebook_size.max(1))
    }

    /// The state reached after `tokens`, starting outside any block.
    pub fn scan(&self, tokens: &[u32]) -> BlockState {
        let mut state = BlockState::Outside;
        for &t in tokens {
            self.advance(&mut state, t);
        }
        state
    }

    /// Moves `state` past `token` (lenient: a rule-breaking token leaves the block).
    pub fn advance(&self, state: &mut BlockState, token: u32) {
        if let Some(next) = self.step(*state, token) {
            *state = next;
            return;
        }
        // Rule broken (only possible in a prompt): leave the block, re-read the token.
        *state = self.step(BlockState::Outside, token).unwrap_or_default();
    }

    /// The state after `token` when the transition is legal under the rules.
    fn step(&self, state: BlockState, token: u32) -> Option<BlockState> {
        let v = &self.vocab;
        match state {
            BlockState::Outside if token == v.image_start => Some(BlockState::Image { codes: 0 }),
            BlockState::Outside if token == v.speech_start => Some(BlockState::Speech {
                layer: 0,
                count: 0,
                layer_len: None,
            }),
            BlockState::Outside => Some(BlockState::Outside),
            BlockState::Image { codes } if codes == IMAGE_BLOCK_LEN && token == v.image_end => {
                Some(BlockState::Outside)
            }
            BlockState::Image { codes }
                if codes < IMAGE_BLOCK_LEN && v.image_code(token).is_some() =>
            {
                Some(BlockState::Image { codes: codes + 1 })
            }
            BlockState::Image { .. } => None,
            BlockState::Speech {
                layer,
                count,
                layer_len,
            } => self.speech_step(layer, count, layer_len, token),
        }
    }

    fn speech_step(
        &self,
        layer: u32,
        count: u32,
        len: Option<u32>,
        token: u32,
    ) -> Option<BlockState> {
        let allowed = self.speech_rule(layer, count, len);
        if !allowed.iter().any(|r| r.contains(&token)) {
            return None;
        }
        if token == self.vocab.speech_end {
            return Some(BlockState::Outside);
        }
        let k = self.speech_layer(token)?;
        Some(if k == layer {
            BlockState::Speech {
                layer,
                count: count + 1,
                layer_len: len,
            }
        } else {
            BlockState::Speech {
                layer: k,
                count: 1,
                layer_len: len.or(Some(count)),
            }
        })
    }

    /// Allowed tokens inside a speech block.
    fn speech_rule(&self, layer: u32, count: u32, len: Option<u32>) -> Vec<Range<u32>> {
        let end = one(self.vocab.speech_end);
        let last = self.n_layers().saturating_sub(1);
        if layer == 0 {
            let mut r = vec![self.layer_range(0)];
            if count >= 1 {
                r.push(if self.speech_timbre && last > 0 {
                    self.layer_range(1)
                } else {
                    end
                });
            }
            return r;
        }
        let len = len.unwrap_or(count);
        if count < len {
            vec![self.layer_range(layer)]
        } else if layer < last {
            vec![self.layer_range(layer + 1)]
        } else {
            vec![end]
        }
    }

    fn rule(&self, state: &BlockState) -> Rule {
        let v = &self.vocab;
        match *state {
            BlockState::Outside => Rule::Except(vec![
                self.image_range(),
                v.spch0..v.spch0 + v.n_speech_tokens,
                one(v.image_end),
                one(v.speech_end),
                one(v.image_placeholder),
                one(v.speech_placeholder),
            ]),
            BlockState::Image { codes } if codes < IMAGE_BLOCK_LEN => {
                Rule::Only(vec![self.image_range()])
            }
            BlockState::Image { .. } => Rule::Only(vec![one(v.image_end)]),
            BlockState::Speech {
                layer,
                count,
                layer_len,
            } => Rule::Only(self.speech_rule(layer, count, layer_len)),
        }
    }

    /// True when `token` may follow `state`.
    pub fn is_allowed(&self, state: &BlockState, token: u32) -> bool {
        match self.rule(state) {
            Rule::Only(r) => r.iter().any(|r| r.contains(&token)),
            Rule::Except(r) => !r.iter().any(|r| r.contains(&token)),
        }
    }

    /// [`Self::apply`], then, with `remaining` new tokens left (this one included), masks
    /// `<image>` when a whole image block no longer fits.
    pub fn apply_with_budget(&self, state: &BlockState, remaining: usize, scores: &mut [f32]) {
        self.apply(state, scores);
        let start = self.vocab.image_start as usize;
        if *state == BlockState::Outside && remaining < IMAGE_BLOCK_TOKENS && start < scores.len() {
            scores[start] = f32::NEG_INFINITY;
        }
    }

    /// Which of `vocab_size` tokens may follow `state` with `remaining` new tokens left
    /// ([`Self::apply_with_budget`] as a mask).
    pub fn allowed_mask(
        &self,
        state: &BlockState,
        remaining: usize,
        vocab_size: usize,
    ) -> Vec<bool> {
        let mut scores = vec![0.0f32; vocab_size];
        self.apply_with_budget(state, remaining, &mut scores);
        scores.iter().map(|s| s.is_finite()).collect()
    }

    /// Sets the score of every token `state` forbids to `-inf`.
    pub fn apply(&self, state: &BlockState, scores: &mut [f32]) {
        let n = scores.len();
        let clip = |r: &Range<u32>| (r.start as usize).min(n)..(r.end as usize).min(n);
        match self.rule(state) {
            Rule::Except(ranges) => {
                for r in &ranges {
                    scores[clip(r)].fill(f32::NEG_INFINITY);
                }
            }
            Rule::Only(ranges) => {
                let kept: Vec<Vec<f32>> = ranges.iter().map(|r| scores[clip(r)].to_vec()).collect();
                scores.fill(f32::NEG_INFINITY);
                for (r, k) in ranges.iter().zip(kept) {
                    scores[clip(r)].copy_from_slice(&k);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "constraints_tests.rs"]
mod tests;
