//! Incremental detokenizer: model output fed one id at a time becomes a stream of
//! [`DetokEvent`]s (text deltas, media block open / close, warnings) that replays into the
//! same [`Detokenized`](crate::text::Detokenized) as the batch
//! [`TextTokenizer::detokenize`] (`extract_assistant = false`) of all the ids.
//!
//! It runs the batch decoder's own state machine (`text::decode::DecodeStream`, a streaming
//! port of transformers' `_decode`) and block parser, so the space-joining of added tokens,
//! the dropped leading `▁` of each run and byte-fallback sequences behave exactly as in the
//! batch decode; text is emitted only once final (bytes of an incomplete UTF-8 sequence wait
//! for the rest, a run's separator waits for the run's first text).
//!
//! Deviation: `LlamaTokenizer.convert_tokens_to_string` (legacy) puts a space *before* the text
//! decoded since the previous special token when `<unk>`, `<|startoftext|>` or `<|endoftext|>`
//! follows ordinary text inside a run. That text may already be streamed; the space is then
//! emitted where the special token arrives instead. Output that contains none of these
//! tokens after ordinary text (normal generation, which stops at `<|im_end|>` / eos) streams
//! exactly the batch result.

use crate::text::block_parser::BlockParser;
use crate::text::decode::{DecodeStream, ItemKind};
use crate::text::{DetokEvent, TextTokenizer};
use crate::Result;

/// Streaming detokenizer over one output sequence.
#[derive(Debug, Clone)]
pub struct IncrementalDetokenizer<'t> {
    tok: &'t TextTokenizer,
    stream: DecodeStream,
    parser: BlockParser,
    /// First decode item not completely handed to the parser.
    next_item: usize,
    /// Bytes of that item already handed over.
    fed: usize,
    /// Whether that item was handed over at all (a run may be empty).
    started: bool,
}

impl<'t> IncrementalDetokenizer<'t> {
    /// A detokenizer for a fresh output sequence.
    pub fn new(tok: &'t TextTokenizer) -> Self {
        let parser = BlockParser::new(tok.vocab().clone());
        Self {
            tok,
            stream: DecodeStream::default(),
            parser,
            next_item: 0,
            fed: 0,
            started: false,
        }
    }

    /// Feeds one id; returns what became final (text is coalesced into one event per call).
    /// An id outside the vocabulary is an error and leaves the state unchanged.
    pub fn push(&mut self, id: u32) -> Result<Vec<DetokEvent>> {
        self.stream.push(self.tok, id)?;
        Ok(self.sync())
    }

    /// Feeds several ids.
    pub fn extend(&mut self, ids: &[u32]) -> Result<Vec<DetokEvent>> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend(self.push(id)?);
        }
        Ok(coalesce(out))
    }

    /// Ends the sequence: flushes pending bytes and closes an open block (with an
    /// `Unterminated` warning).
    pub fn finish(&mut self) -> Vec<DetokEvent> {
        self.stream.finish();
        let mut events = self.sync();
        self.parser.finish();
        events.extend(self.parser.take_events());
        coalesce(events)
    }

    /// Whether a media block is open (its tokens are being collected).
    pub fn in_block(&self) -> bool {
        self.parser.in_block()
    }

    /// Hands the new decode items / text to the block parser.
    fn sync(&mut self) -> Vec<DetokEvent> {
        let open = self.stream.open_item();
        while let Some(item) = self.stream.items.get(self.next_item) {
            let idx = self.next_item;
            match item.kind {
                ItemKind::Added(id) => self.parser.added(idx, id, &item.text),
                ItemKind::Run => {
                    if !self.started || self.fed < item.text.len() {
                        self.parser.run_text(idx, &item.text[self.fed..]);
                        self.started = true;
                        self.fed = item.text.len();
                    }
                    if open == Some(idx) {
                        break;
                    }
                    self.parser.run_close();
                }
            }
            self.next_item += 1;
            self.fed = 0;
            self.started = false;
        }
        if open == Some(self.next_item) {
            self.stream.frozen = self.fed;
        }
        coalesce(self.parser.take_events())
    }
}

/// Merges consecutive text events.
fn coalesce(events: Vec<DetokEvent>) -> Vec<DetokEvent> {
    let mut out: Vec<DetokEvent> = Vec::with_capacity(events.len());
    for e in events {
        match (out.last_mut(), e) {
            (Some(DetokEvent::Text(a)), DetokEvent::Text(b)) => a.push_str(&b),
            (_, e) => out.push(e),
        }
    }
    out
}
