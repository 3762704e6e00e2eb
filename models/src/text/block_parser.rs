//! The block parser of the detokenizer: splits the space-joined decode items
//! ([`super::decode`]) into text and media blocks, and classifies speech layers like the
//! reference `check_speech_completeness` (`tokenization_mio.py`). Shared by the batch
//! [`super::TextTokenizer::detokenize`] and the incremental detokenizer.
//!
//! Outside a block, text (with the separators between items) is emitted as is; `<image>` /
//! `<spch>` open a block (the separator before them stays text); inside, code tokens are
//! collected, whitespace-only runs are absorbed (the reference regex's `\s*`), the matching
//! end token closes the block, and anything else closes it as unterminated and is then
//! handled as outside. See [`super::detokenize`] for the deviations from the reference.

use super::block::BlockError;
use super::detokenize::{BlockKind, DetokEvent, Segment};
use super::pystr::is_py_space;
use super::vocab::{MioVocab, SPEECH_LAYERS};

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::text::detokenize::Detokenized;
    use crate::text::tiny_vocab;

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
