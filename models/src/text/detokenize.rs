//! Model output → ordered segments (text, image codes, speech codes): `MIOTokenizer.detokenize`
//! and `check_speech_completeness` of the reference `tokenization_mio.py`, without the
//! decoding of media (the caller hands segments to the image / speech decoders).
//!
//! The reference decodes the ids (`batch_decode`), optionally keeps what follows the last
//! `<|im_start|>assistant\n` (dropping `<|im_end|>`, `<unk>` and surrounding whitespace), then
//! finds `<image>\s*<imgN>(\s*<imgN>)*\s*</image>` and the speech equivalent with regexes and
//! replaces them by `<image_placeholder_i>` / `<speech_placeholder_j>`. Here blocks are found
//! on the token items of the same decode ([`super::decode`]), so the text between blocks is
//! exactly the reference's. Deviations, for malformed output only (the reference raises or
//! leaves the text): a block interrupted by another token or left open is closed with a
//! [`BlockError::Unterminated`] warning and its usable part kept; image blocks without 32 codes
//! and unusable speech are dropped with a warning; speech with only the content layer is a
//! valid segment (the input format); media tokens outside blocks stay as text with a
//! [`BlockError::StrayToken`] warning; text spelling `<img12>` out of plain pieces is text.

use serde::Serialize;

use super::block::BlockError;
use super::block_parser::BlockParser;
use super::decode::{DecodeStream, Item, ItemKind};
use super::pystr::{py_lstrip, py_rstrip};
use super::template::ASSISTANT_STARTER;
use super::tokenizer::TextTokenizer;
use crate::Result;

/// One piece of model output, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Segment {
    /// Text (exactly as the reference decode renders it).
    Text(String),
    /// An image: 32 codes in `0..n_image_codes`.
    Image {
        /// SEED codes.
        codes: Vec<u32>,
    },
    /// Speech: content codes (`0..1024`) and, when present, the three timbre layers (same
    /// length, codes `0..1024` each, offsets removed).
    Speech {
        /// Layer 0 (content).
        content: Vec<u32>,
        /// Layers 1..3 (timbre).
        timbre: Option<[Vec<u32>; 3]>,
    },
}

/// Kind of media block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BlockKind {
    /// `<image>` … `</image>`.
    Image,
    /// `<spch>` … `</spch>`.
    Speech,
}

impl BlockKind {
    /// `"image"` or `"speech"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Speech => "speech",
        }
    }
}

/// What the block parser (and the incremental detokenizer) reports, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum DetokEvent {
    /// Text outside media blocks.
    Text(String),
    /// A media block opened.
    BlockStart(BlockKind),
    /// The open block closed: its segment, or `None` when nothing usable was in it.
    BlockEnd(Option<Segment>),
    /// A malformed block or stray media token.
    Warning(BlockError),
}

/// Result of detokenization: ordered segments plus warnings about malformed blocks.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Detokenized {
    /// Text, image and speech segments in output order (adjacent text merged).
    pub segments: Vec<Segment>,
    /// Problems found; the usable part of each block is in `segments`.
    pub warnings: Vec<BlockError>,
}

impl Detokenized {
    /// Replays parser / incremental events.
    pub fn from_events(events: impl IntoIterator<Item = DetokEvent>) -> Self {
        let mut d = Self::default();
        for e in events {
            match e {
                DetokEvent::Text(s) => d.push_text(&s),
                DetokEvent::BlockEnd(Some(seg)) => d.segments.push(seg),
                DetokEvent::BlockStart(_) | DetokEvent::BlockEnd(None) => {}
                DetokEvent::Warning(w) => d.warnings.push(w),
            }
        }
        d
    }

    fn push_text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        match self.segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(s),
            _ => self.segments.push(Segment::Text(s.to_string())),
        }
    }

    /// All text segments concatenated.
    pub fn text(&self) -> String {
        self.segments
            .iter()
            .filter_map(|s| {
                if let Segment::Text(t) = s {
                    Some(t.as_str())
                } else {
                    None
                }
            })
            .collect()
    }

    /// The reference's `texts[i]`: text with `<image_placeholder_i>` / `<speech_placeholder_j>`.
    pub fn text_with_placeholders(&self) -> String {
        let (mut n_img, mut n_spch, mut out) = (0, 0, String::new());
        for s in &self.segments {
            match s {
                Segment::Text(t) => out.push_str(t),
                Segment::Image { .. } => {
                    out.push_str(&format!("<image_placeholder_{n_img}>"));
                    n_img += 1;
                }
                Segment::Speech { .. } => {
                    out.push_str(&format!("<speech_placeholder_{n_spch}>"));
                    n_spch += 1;
                }
            }
        }
        out
    }

    /// Image blocks as the reference decode renders them (`<image> <imgN> … </image>`).
    pub fn image_strings(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| {
                s.decoded_string(0)
                    .filter(|_| matches!(s, Segment::Image { .. }))
            })
            .collect()
    }

    /// Speech blocks as the reference decode renders them (`<spch> <spchN> … </spch>`).
    pub fn speech_strings(&self, codebook: u32) -> Vec<String> {
        let speech = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Speech { .. }));
        speech.filter_map(|s| s.decoded_string(codebook)).collect()
    }

    /// `extract_assistant` clean-up on the segments after the last assistant starter.
    fn clean_assistant(&mut self) {
        for s in &mut self.segments {
            if let Segment::Text(t) = s {
                *t = t.replace("<|im_end|>", "").replace("<unk>", "");
            }
        }
        if let Some(Segment::Text(t)) = self.segments.first_mut() {
            *t = py_lstrip(t).to_string();
        }
        if let Some(Segment::Text(t)) = self.segments.last_mut() {
            *t = py_rstrip(t).to_string();
        }
        self.segments
            .retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
    }
}

impl Segment {
    /// The space-joined token string of a media segment (`codebook` offsets speech layers).
    fn decoded_string(&self, codebook: u32) -> Option<String> {
        let (open, close, tokens): (&str, &str, Vec<String>) = match self {
            Segment::Text(_) => return None,
            Segment::Image { codes } => (
                "<image>",
                "</image>",
                codes.iter().map(|c| format!("<img{c}>")).collect(),
            ),
            Segment::Speech { content, timbre } => {
                let mut n: Vec<u32> = content.clone();
                for (k, layer) in (1u32..).zip(timbre.iter().flatten()) {
                    n.extend(layer.iter().map(|c| c + codebook * k));
                }
                (
                    "<spch>",
                    "</spch>",
                    n.iter().map(|c| format!("<spch{c}>")).collect(),
                )
            }
        };
        Some(format!("{open} {} {close}", tokens.join(" ")))
    }
}

/// Keeps what follows the last assistant starter (reference `extract_assistant`).
fn assistant_items(items: Vec<Item>) -> Vec<Item> {
    let found = items
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, item)| match item.kind {
            ItemKind::Run => item.text.rfind(ASSISTANT_STARTER).map(|p| (i, p)),
            ItemKind::Added(_) => None,
        });
    let Some((i, pos)) = found else { return items };
    let mut rest = items.into_iter().skip(i);
    let first = rest
        .next()
        .map(|it| it.text[pos + ASSISTANT_STARTER.len()..].to_string())
        .unwrap_or_default();
    std::iter::once(Item {
        kind: ItemKind::Run,
        text: first,
    })
    .chain(rest)
    .collect()
}

impl TextTokenizer {
    /// `MIOTokenizer.detokenize` of one output row: decode, optionally keep the assistant's
    /// answer, split into segments.
    pub fn detokenize(&self, ids: &[u32], extract_assistant: bool) -> Result<Detokenized> {
        let mut stream = DecodeStream::default();
        for &id in ids {
            stream.push(self, id)?;
        }
        stream.finish();
        let items = if extract_assistant {
            assistant_items(stream.items)
        } else {
            stream.items
        };
        let mut parser = BlockParser::new(self.vocab().clone());
        for (idx, item) in items.iter().enumerate() {
            match item.kind {
                ItemKind::Added(id) => parser.added(idx, id, &item.text),
                ItemKind::Run => {
                    parser.run_text(idx, &item.text);
                    parser.run_close();
                }
            }
        }
        parser.finish();
        let mut out = Detokenized::from_events(parser.take_events());
        if extract_assistant {
            out.clean_assistant();
        }
        Ok(out)
    }
}
