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
use super::decode::{DecodeStream, Item, ItemKind};
use super::pystr::{is_py_space, py_lstrip, py_rstrip};
use super::template::ASSISTANT_STARTER;
use super::tokenizer::TextTokenizer;
use super::vocab::{MioVocab, SPEECH_LAYERS};
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

/// Where the parser is.
#[derive(Debug, Clone)]
enum State {
    Outside,
    Image(Vec<u32>),
    Speech(Vec<u32>),
}

/// Splits decode items into text and media blocks; shared by the batch and incremental
/// detokenizers. Feed items in order: [`BlockParser::added`] for added tokens,
/// [`BlockParser::run_text`] (possibly several deltas) then [`BlockParser::run_close`] for
/// runs, then [`BlockParser::finish`].
#[derive(Debug, Clone)]
pub(crate) struct BlockParser {
    vocab: MioVocab,
    state: State,
    current: Option<usize>,
    ws_run: Option<String>,
    events: Vec<DetokEvent>,
}

impl BlockParser {
    pub fn new(vocab: MioVocab) -> Self {
        Self {
            vocab,
            state: State::Outside,
            current: None,
            ws_run: None,
            events: Vec::new(),
        }
    }

    /// Events produced since the last call.
    pub fn take_events(&mut self) -> Vec<DetokEvent> {
        std::mem::take(&mut self.events)
    }

    /// Whether a block is open.
    pub fn in_block(&self) -> bool {
        !matches!(self.state, State::Outside)
    }

    fn text(&mut self, s: &str) {
        if !s.is_empty() {
            self.events.push(DetokEvent::Text(s.to_string()));
        }
    }

    fn is_media(&self, id: u32) -> bool {
        let v = &self.vocab;
        v.image_code(id).is_some()
            || v.speech_token(id).is_some()
            || id == v.image_end
            || id == v.speech_end
    }

    /// An added-token item (complete).
    pub fn added(&mut self, idx: usize, id: u32, text: &str) {
        self.run_close();
        self.current = Some(idx);
        let sep = if idx > 0 { " " } else { "" };
        let (image_code, speech_n) = (self.vocab.image_code(id), self.vocab.speech_token(id));
        let (image_end, speech_end) = (self.vocab.image_end, self.vocab.speech_end);
        let closes = match &mut self.state {
            State::Outside => None,
            State::Image(codes) => match image_code {
                Some(c) => return codes.push(c),
                None => Some(id != image_end),
            },
            State::Speech(tokens) => match speech_n {
                Some(n) => return tokens.push(n),
                None => Some(id != speech_end),
            },
        };
        match closes {
            Some(false) => return self.end_block(false),
            Some(true) => self.end_block(true),
            None => {}
        }
        if id == self.vocab.image_start || id == self.vocab.speech_start {
            self.text(sep);
            let (kind, state) = if id == self.vocab.image_start {
                (BlockKind::Image, State::Image(Vec::new()))
            } else {
                (BlockKind::Speech, State::Speech(Vec::new()))
            };
            self.events.push(DetokEvent::BlockStart(kind));
            self.state = state;
            return;
        }
        if self.is_media(id) {
            self.events.push(DetokEvent::Warning(BlockError::StrayToken(
                text.to_string(),
            )));
        }
        self.text(&format!("{sep}{text}"));
    }

    /// More text of the run item `idx` (the first call for an item adds its separator).
    pub fn run_text(&mut self, idx: usize, delta: &str) {
        let sep = if self.current != Some(idx) && idx > 0 {
            " "
        } else {
            ""
        };
        self.current = Some(idx);
        if !self.in_block() {
            return self.text(&format!("{sep}{delta}"));
        }
        let buf = self.ws_run.get_or_insert_with(String::new);
        buf.push_str(sep);
        buf.push_str(delta);
        if buf.chars().any(|c| !is_py_space(c)) {
            let buf = self.ws_run.take().unwrap_or_default();
            self.end_block(true);
            self.text(&buf);
        }
    }

    /// The current run item is complete; whitespace inside a block is absorbed.
    pub fn run_close(&mut self) {
        self.ws_run = None;
    }

    /// End of output: an open block is closed as unterminated.
    pub fn finish(&mut self) {
        self.run_close();
        if self.in_block() {
            self.end_block(true);
        }
    }

    fn end_block(&mut self, unterminated: bool) {
        self.ws_run = None;
        let (kind, segment, warnings) = match std::mem::replace(&mut self.state, State::Outside) {
            State::Outside => return,
            State::Image(codes) => {
                let (seg, w) = image_segment(codes);
                (BlockKind::Image, seg, w)
            }
            State::Speech(tokens) => {
                let (seg, w) = speech_segment(tokens, self.vocab.speech_codebook_size);
                (BlockKind::Speech, seg, w)
            }
        };
        if unterminated {
            self.events
                .push(DetokEvent::Warning(BlockError::Unterminated(kind.name())));
        }
        self.events
            .extend(warnings.into_iter().map(DetokEvent::Warning));
        self.events.push(DetokEvent::BlockEnd(segment));
    }
}

fn image_segment(codes: Vec<u32>) -> (Option<Segment>, Vec<BlockError>) {
    let expected = MioVocab::IMAGE_CODES_PER_BLOCK;
    if codes.len() == expected {
        (Some(Segment::Image { codes }), Vec::new())
    } else {
        (
            None,
            vec![BlockError::ImageCodeCount {
                got: codes.len(),
                expected,
            }],
        )
    }
}

/// `check_speech_completeness` as a classification: content only, or content + 3 timbre
/// layers of equal length; anything else keeps the leading content layer (if any) and warns.
fn speech_segment(tokens: Vec<u32>, codebook: u32) -> (Option<Segment>, Vec<BlockError>) {
    if tokens.is_empty() || codebook == 0 {
        return (None, vec![BlockError::EmptySpeech]);
    }
    let mut parts: Vec<(u32, Vec<u32>)> = Vec::new();
    for n in tokens {
        let (layer, code) = (n / codebook, n % codebook);
        match parts.last_mut() {
            Some((l, codes)) if *l == layer => codes.push(code),
            _ => parts.push((layer, vec![code])),
        }
    }
    let layers: Vec<u32> = parts.iter().map(|p| p.0).collect();
    let lengths: Vec<usize> = parts.iter().map(|p| p.1.len()).collect();
    let mut parts = parts.into_iter().map(|p| p.1);
    let first = parts.next().unwrap_or_default();
    if layers == [0] {
        return (
            Some(Segment::Speech {
                content: first,
                timbre: None,
            }),
            Vec::new(),
        );
    }
    let in_order = layers.iter().copied().eq(0..SPEECH_LAYERS);
    if in_order && lengths.iter().all(|l| *l == lengths[0]) {
        let (t0, t1, t2) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        return (
            Some(Segment::Speech {
                content: first,
                timbre: Some([t0, t1, t2]),
            }),
            Vec::new(),
        );
    }
    let warning = if in_order {
        BlockError::SpeechLayerLengths(lengths)
    } else {
        let names = ["content", "timbre0", "timbre1", "timbre2"];
        BlockError::SpeechLayerOrder(
            layers
                .iter()
                .map(|l| names.get(*l as usize).unwrap_or(&"invalid").to_string())
                .collect(),
        )
    };
    let content = (layers[0] == 0).then_some(Segment::Speech {
        content: first,
        timbre: None,
    });
    (content, vec![warning])
}

/// Keeps what follows the last assistant starter (reference `extract_assistant`).
fn extract_assistant(items: Vec<Item>) -> Vec<Item> {
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
    pub fn detokenize(&self, ids: &[u32], extract: bool) -> Result<Detokenized> {
        let mut stream = DecodeStream::default();
        for &id in ids {
            stream.push(self, id)?;
        }
        stream.finish();
        let items = if extract {
            extract_assistant(stream.items)
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
        if extract {
            out.clean_assistant();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::text::media::tests::tiny_vocab;

    /// Items: `Err(id)` = added token, `Ok(text)` = run.
    fn parse(items: &[std::result::Result<&str, u32>]) -> Detokenized {
        let mut p = BlockParser::new(tiny_vocab());
        for (idx, it) in items.iter().enumerate() {
            match it {
                Err(id) => p.added(idx, *id, &format!("<{id}>")),
                Ok(text) => {
                    p.run_text(idx, text);
                    p.run_close();
                }
            }
        }
        p.finish();
        Detokenized::from_events(p.take_events())
    }

    const IMG: u32 = 1005;
    const IMG_END: u32 = 1004;
    const SP: u32 = 1003;
    const SP_END: u32 = 1001;
    fn img(c: u32) -> std::result::Result<&'static str, u32> {
        Err(1006 + c)
    }
    fn spch(n: u32) -> std::result::Result<&'static str, u32> {
        Err(9198 + n)
    }
    fn image(n: u32, close: bool) -> Vec<std::result::Result<&'static str, u32>> {
        let mut v = vec![Err(IMG)];
        v.extend((0..n).map(img));
        if close {
            v.push(Err(IMG_END));
        }
        v
    }

    #[test]
    fn well_formed_blocks_and_whitespace_inside() {
        let mut items = vec![Ok("look:")];
        items.extend(image(32, true));
        items.insert(3, Ok("\n "));
        items.extend([
            Ok("and"),
            Err(SP),
            spch(3),
            spch(1030),
            spch(2050),
            spch(4000),
            Err(SP_END),
        ]);
        let d = parse(&items);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(
            d.text_with_placeholders(),
            "look: <image_placeholder_0> and <speech_placeholder_0>"
        );
        let timbre = Some([vec![6], vec![2], vec![928]]);
        assert_eq!(
            d.segments[3],
            Segment::Speech {
                content: vec![3],
                timbre
            }
        );
        let content_only = parse(&[Err(SP), spch(5), spch(7), Err(SP_END)]);
        assert_eq!(
            content_only.segments,
            [Segment::Speech {
                content: vec![5, 7],
                timbre: None
            }]
        );
        assert!(content_only.warnings.is_empty());
    }

    #[test]
    fn malformed_image_blocks() {
        let d = parse(&image(31, true));
        assert_eq!(
            d.warnings,
            [BlockError::ImageCodeCount {
                got: 31,
                expected: 32
            }]
        );
        assert!(d.segments.is_empty());
        let d = parse(&image(32, false));
        assert_eq!(d.warnings, [BlockError::Unterminated("image")]);
        assert!(matches!(&d.segments[..], [Segment::Image { codes }] if codes.len() == 32));
        let mut items = image(32, false);
        items.push(Ok("oops"));
        let d = parse(&items);
        assert_eq!(d.warnings, [BlockError::Unterminated("image")]);
        assert_eq!(d.text_with_placeholders(), "<image_placeholder_0> oops");
        let d = parse(&[Ok("a"), img(5), Err(IMG_END), Ok("b")]);
        assert_eq!(d.text_with_placeholders(), "a <1011> <1004> b");
        assert_eq!(
            d.warnings,
            [
                BlockError::StrayToken("<1011>".into()),
                BlockError::StrayToken("<1004>".into())
            ]
        );
    }

    #[test]
    fn malformed_speech_blocks() {
        let d = parse(&[Err(SP), spch(1), spch(2), spch(2049), Err(SP_END)]);
        assert_eq!(
            d.warnings,
            [BlockError::SpeechLayerOrder(vec![
                "content".into(),
                "timbre1".into()
            ])]
        );
        assert_eq!(
            d.segments,
            [Segment::Speech {
                content: vec![1, 2],
                timbre: None
            }]
        );
        let d = parse(&[
            Err(SP),
            spch(1),
            spch(2),
            spch(1025),
            spch(2049),
            spch(3073),
            Err(SP_END),
        ]);
        assert_eq!(
            d.warnings,
            [BlockError::SpeechLayerLengths(vec![2, 1, 1, 1])]
        );
        assert_eq!(
            d.segments,
            [Segment::Speech {
                content: vec![1, 2],
                timbre: None
            }]
        );
        let d = parse(&[Err(SP), spch(1025), spch(1), Err(SP_END)]);
        assert_eq!(
            d.warnings,
            [BlockError::SpeechLayerOrder(vec![
                "timbre0".into(),
                "content".into()
            ])]
        );
        assert!(d.segments.is_empty());
        let d = parse(&[Ok("x"), Err(SP), Err(SP_END), Ok("y")]);
        assert_eq!(
            (d.warnings.as_slice(), d.text().as_str()),
            ([BlockError::EmptySpeech].as_slice(), "x  y")
        );
        let d = parse(&[Err(SP), spch(1), Err(IMG), img(1)]);
        let expected = [
            BlockError::Unterminated("speech"),
            BlockError::Unterminated("image"),
            BlockError::ImageCodeCount {
                got: 1,
                expected: 32,
            },
        ];
        assert_eq!(d.warnings, expected);
        // The separator before the interrupting `<image>` is text, as before any block.
        assert_eq!(
            d.segments,
            [
                Segment::Speech {
                    content: vec![1],
                    timbre: None
                },
                Segment::Text(" ".into())
            ]
        );
    }
}
