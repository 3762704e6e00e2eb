//! Decoding of ids to text as transformers 4.34 does for the slow `LlamaTokenizer`
//! (`PreTrainedTokenizer._decode` with `spaces_between_special_tokens=True`,
//! `skip_special_tokens=False`, no clean-up; `LlamaTokenizer.convert_tokens_to_string` with
//! `legacy=True`), written as a stream so that the batch decode and the incremental
//! detokenizer share one implementation.
//!
//! The text is a list of *items* joined by single spaces: each "legacy added" token (an added
//! token that is not a bos/eos/unk/pad-like special of the sentencepiece vocabulary) is an
//! item, and each maximal run of other tokens between them is an item made by
//! `convert_tokens_to_string`: the run's first token loses a leading `▁`; special tokens
//! inside the run are copied verbatim and the pieces between them go through sentencepiece
//! decoding; a special token that follows a non-special one puts a space *before* the text
//! decoded since the previous special (the reference's legacy quirk). A run that decodes to
//! nothing is dropped, except at the very end.
//!
//! Deviation (streaming only): a consumer may freeze the text it has already handed out
//! ([`DecodeStream::frozen`]); that quirk space then goes at the first unfrozen position.

use super::sentencepiece::{PieceDecoder, SPACE_SYMBOL};
use super::tokenizer::TextTokenizer;
use crate::Result;

/// What produced an item of the decoded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A legacy added token (its id).
    Added(u32),
    /// A run of sentencepiece tokens (and bos/eos/unk specials).
    Run,
}

/// One space-joined item of the decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub kind: ItemKind,
    pub text: String,
}

/// Incremental `_decode`: push ids, then [`DecodeStream::finish`]; the text is the items
/// joined with spaces.
#[derive(Debug, Clone, Default)]
pub(crate) struct DecodeStream {
    /// Items so far; the last one may be the open run.
    pub items: Vec<Item>,
    /// Bytes of the open run item already handed out by a streaming consumer.
    pub frozen: usize,
    run_len: usize,
    run_item: Option<usize>,
    prev_is_special: bool,
    chunk: PieceDecoder,
    chunk_start: Option<usize>,
}

impl DecodeStream {
    /// Adds one id; unknown ids are an [`crate::Error::UnknownTokenId`].
    pub fn push(&mut self, tok: &TextTokenizer, id: u32) -> Result<()> {
        let token = tok.id_to_token_checked(id)?;
        if tok.is_legacy_added(token) {
            self.close_run();
            self.items.push(Item {
                kind: ItemKind::Added(id),
                text: token.to_string(),
            });
            return Ok(());
        }
        let piece = if self.run_len == 0 {
            token.strip_prefix(SPACE_SYMBOL).unwrap_or(token)
        } else {
            token
        };
        if tok.is_special(piece) {
            if !self.prev_is_special && self.run_len != 0 {
                self.quirk_space();
            }
            self.flush_chunk();
            self.commit(piece);
            self.prev_is_special = true;
            self.chunk = PieceDecoder::default();
            self.chunk_start = None;
        } else {
            let mut out = String::new();
            self.chunk.push(tok.sentencepiece(), piece, &mut out);
            self.commit(&out);
            self.prev_is_special = false;
        }
        self.run_len += 1;
        Ok(())
    }

    /// Ends the sequence: flushes pending bytes; a trailing run that decoded to nothing
    /// still counts as an (empty) item, as in the reference.
    pub fn finish(&mut self) {
        self.flush_chunk();
        if self.run_len > 0 && self.run_item.is_none() {
            self.items.push(Item {
                kind: ItemKind::Run,
                text: String::new(),
            });
        }
        self.reset_run();
    }

    /// Index of the run item still open (it may grow), if any.
    pub fn open_item(&self) -> Option<usize> {
        self.run_item
    }

    /// The decoded text so far (items joined with spaces).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(&item.text);
        }
        out
    }

    fn quirk_space(&mut self) {
        match (self.chunk_start, self.run_item) {
            (Some(p), Some(idx)) => {
                let text = &mut self.items[idx].text;
                let at = p.max(self.frozen).min(text.len());
                text.insert(at, ' ');
            }
            _ => self.commit(" "),
        }
    }

    fn commit(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        let idx = match self.run_item {
            Some(i) => i,
            None => {
                self.items.push(Item {
                    kind: ItemKind::Run,
                    text: String::new(),
                });
                self.frozen = 0;
                let i = self.items.len() - 1;
                self.run_item = Some(i);
                i
            }
        };
        let text = &mut self.items[idx].text;
        if self.chunk_start.is_none() {
            self.chunk_start = Some(text.len());
        }
        text.push_str(s);
    }

    fn flush_chunk(&mut self) {
        let mut out = String::new();
        self.chunk.finish(&mut out);
        self.commit(&out);
    }

    fn close_run(&mut self) {
        self.flush_chunk();
        self.reset_run();
    }

    fn reset_run(&mut self) {
        self.run_len = 0;
        self.run_item = None;
        self.prev_is_special = false;
        self.chunk = PieceDecoder::default();
        self.chunk_start = None;
        self.frozen = 0;
    }
}
