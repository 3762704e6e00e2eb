//! What `generate` returns and streams: finish reasons, per-token events, the output
//! (HF's `sequences`, `sequences_scores`, `scores`) and the caller's controls.
//!
//! Decisions (not in HF, which has no cancellation and streams greedy/sampling only):
//! * cancellation (the flag, or a callback returning `ControlFlow::Break`) is not an error:
//!   generation returns what it has so far with [`FinishReason::Cancelled`] on every row
//!   that had not finished, so the caller keeps the partial answer;
//! * greedy and sampling stream each token as it is chosen; beam search streams the final
//!   best hypothesis of each prompt once search is over (a running best beam can be
//!   overtaken, so tokens streamed early could be retracted).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced one of the eos tokens (kept as the last new token).
    Eos,
    /// It produced one of the stop sequences (kept at the end of the new tokens).
    Stop,
    /// It reached `max_new_tokens`.
    Length,
    /// The cancel flag was raised or the token callback returned `Break`.
    Cancelled,
}

/// One generated token, as streamed to the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenEvent {
    /// Prompt (row) the token belongs to.
    pub row: usize,
    /// Position among the row's new tokens (0 = first).
    pub index: usize,
    /// The token id.
    pub token: u32,
    /// Set when this token ends the row (eos or stop sequence; for beam search also the
    /// reason of the last token of the final hypothesis).
    pub finish: Option<FinishReason>,
}

/// The result of one `generate` call, one entry per prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOutput {
    /// HF `sequences`: the left-padded prompt followed by the new tokens; rows that
    /// finished early are right-padded with `pad_token_id` to a common length. Beam search
    /// ends a hypothesis that stopped on eos with the *first* eos id, as HF's finalize does.
    pub sequences: Vec<Vec<u32>>,
    /// The new tokens of each row: up to and including the eos / stop sequence, no padding.
    pub new_tokens: Vec<Vec<u32>>,
    /// Why each row stopped.
    pub finish_reasons: Vec<FinishReason>,
    /// Beam search only: HF `sequences_scores` (sum of log-probs / length^length_penalty).
    pub sequences_scores: Option<Vec<f32>>,
    /// With `output_scores`: HF `scores`, indexed `[step][row][token]`: the processed scores
    /// of each step (greedy: after processors; sampling: after warpers; beam search: the
    /// processed log-probs of each of the `prompts × num_beams` beam rows).
    pub scores: Option<Vec<Vec<Vec<f32>>>>,
}

/// The per-token callback: `ControlFlow::Break` stops generation.
pub type TokenCallback<'a> = dyn FnMut(&TokenEvent) -> ControlFlow<()> + 'a;

/// The caller's hooks into a running generation.
pub struct Controls<'a> {
    cancel: Option<&'a AtomicBool>,
    on_token: Option<&'a mut TokenCallback<'a>>,
}

impl<'a> Controls<'a> {
    /// No cancellation, no streaming.
    pub fn none() -> Self {
        Self {
            cancel: None,
            on_token: None,
        }
    }

    /// Checks `flag` between steps; when set, generation stops with
    /// [`FinishReason::Cancelled`].
    pub fn with_cancel(mut self, flag: &'a AtomicBool) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Calls `f` for every new token (see the module docs for beam search);
    /// `ControlFlow::Break` stops generation like the cancel flag.
    pub fn with_callback(mut self, f: &'a mut TokenCallback<'a>) -> Self {
        self.on_token = Some(f);
        self
    }

    /// True when the cancel flag is raised.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Streams `event`; true when the callback asks to stop.
    pub(crate) fn emit(&mut self, event: &TokenEvent) -> bool {
        match self.on_token.as_mut() {
            Some(f) => f(event).is_break(),
            None => false,
        }
    }
}

impl Default for Controls<'_> {
    fn default() -> Self {
        Self::none()
    }
}
