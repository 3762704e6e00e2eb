//! The incremental detokenizer streams exactly what the batch detokenizer (and decode)
//! produce: on the golden output ids and on random id sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mio_models::generation::IncrementalDetokenizer;
use mio_models::text::{DetokEvent, Detokenized, Segment, TextTokenizer};

fn tokenizer() -> TextTokenizer {
    TextTokenizer::load(&mio_tests::tiny_model()).expect("tokenizer")
}

/// Feeds ids one by one; returns all events.
fn stream(tok: &TextTokenizer, ids: &[u32]) -> Vec<DetokEvent> {
    let mut inc = IncrementalDetokenizer::new(tok);
    let mut events = Vec::new();
    for &id in ids {
        events.extend(inc.push(id).unwrap());
    }
    events.extend(inc.finish());
    events
}

fn streamed_text(events: &[DetokEvent]) -> String {
    events
        .iter()
        .filter_map(|e| {
            if let DetokEvent::Text(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

fn golden_output_ids() -> Vec<u32> {
    let g = mio_tests::golden_json("text.json").unwrap();
    g["detokenize"]["output_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn golden_output_streams_like_batch_until_stop() {
    let tok = tokenizer();
    let ids = golden_output_ids();
    // Generation stops at the assistant's `<|im_end|>`; the golden row then has 2 pads.
    let stop = ids
        .iter()
        .rposition(|&id| id == tok.vocab().im_end)
        .unwrap()
        + 1;
    for n in [stop, stop - 1, stop - 40, 200, 1] {
        let events = stream(&tok, &ids[..n]);
        let batch = tok.detokenize(&ids[..n], false).unwrap();
        assert_eq!(
            Detokenized::from_events(events.clone()),
            batch,
            "prefix {n}"
        );
        assert_eq!(streamed_text(&events), batch.text(), "prefix {n}");
    }
    let events = stream(&tok, &ids[..stop]);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            DetokEvent::BlockStart(_) => Some("start"),
            DetokEvent::BlockEnd(Some(Segment::Image { .. })) => Some("image"),
            DetokEvent::BlockEnd(Some(Segment::Speech { .. })) => Some("speech"),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        ["start", "image", "start", "image", "start", "speech"]
    );
}

#[test]
fn golden_output_with_pads_shows_the_documented_deviation() {
    let tok = tokenizer();
    let ids = golden_output_ids();
    let batch = tok.detokenize(&ids, false).unwrap();
    let streamed = Detokenized::from_events(stream(&tok, &ids));
    // The reference puts the legacy space before "Done.<|im_end|>" once `<unk>` arrives;
    // the stream has already emitted that text and puts the space before `<unk>`.
    let (Some(Segment::Text(b)), Some(Segment::Text(s))) =
        (batch.segments.last(), streamed.segments.last())
    else {
        panic!("text last");
    };
    assert_eq!(b, "  Done.<|im_end|><unk><unk>");
    assert_eq!(s, " Done.<|im_end|> <unk><unk>");
    let n = batch.segments.len();
    assert_eq!(batch.segments[..n - 1], streamed.segments[..n - 1]);
}

/// xorshift64*, enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random output: text pieces, byte pieces, specials, media tokens and (mostly well
/// formed) media blocks.
fn random_ids(rng: &mut Rng, tok: &TextTokenizer, with_in_run_specials: bool) -> Vec<u32> {
    let v = tok.vocab();
    let len = rng.below(40);
    let mut ids = Vec::new();
    while (ids.len() as u64) < len {
        match rng.below(12) {
            0 => ids.push(9 + rng.below(256) as u32),
            1 if with_in_run_specials => ids.push(rng.below(3) as u32),
            2 => ids.push(v.text_vocab_size + rng.below(6) as u32),
            3 => ids.push(v.img0 + rng.below(v.n_image_codes as u64) as u32),
            4 => ids.push(v.spch0 + rng.below(v.n_speech_tokens as u64) as u32),
            5 => {
                ids.push(v.image_start);
                let n = if rng.below(4) == 0 { rng.below(40) } else { 32 };
                for _ in 0..n {
                    ids.push(v.img0 + rng.below(v.n_image_codes as u64) as u32);
                    if rng.below(20) == 0 {
                        ids.push(903); // "▁" inside the block
                    }
                }
                if rng.below(5) != 0 {
                    ids.push(v.image_end);
                }
            }
            6 => {
                ids.push(v.speech_start);
                let t = 1 + rng.below(6) as u32;
                let layers = if rng.below(2) == 0 { 1 } else { 4 };
                for k in 0..layers {
                    for _ in 0..t {
                        ids.push(v.spch0 + k * 1024 + rng.below(1024) as u32);
                    }
                }
                if rng.below(5) != 0 {
                    ids.push(v.speech_end);
                }
            }
            7 => ids.extend([239, 160, 174]), // a 3-byte character
            _ => ids.push(3 + rng.below(u64::from(v.text_vocab_size) - 3) as u32),
        }
    }
    ids
}

/// Whether `<unk>`/bos/eos follows ordinary text inside a run (the documented deviation).
fn has_late_space(ids: &[u32], text_vocab: u32) -> bool {
    let (mut run_len, mut prev_special) = (0, false);
    for &id in ids {
        if id >= text_vocab {
            (run_len, prev_special) = (0, false);
        } else if id <= 2 {
            if !prev_special && run_len > 0 {
                return true;
            }
            (run_len, prev_special) = (run_len + 1, true);
        } else {
            (run_len, prev_special) = (run_len + 1, false);
        }
    }
    false
}

fn sorted_chars(s: &str) -> Vec<char> {
    let mut c: Vec<char> = s.chars().collect();
    c.sort_unstable();
    c
}

#[test]
fn random_sequences_stream_like_batch() {
    let tok = tokenizer();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut exact, mut deviating) = (0, 0);
    for i in 0..3000 {
        let ids = random_ids(&mut rng, &tok, i % 2 == 1);
        let events = stream(&tok, &ids);
        let streamed = Detokenized::from_events(events.clone());
        let batch = tok.detokenize(&ids, false).unwrap();
        let text = streamed_text(&events);
        let media = |d: &Detokenized| {
            d.segments
                .iter()
                .filter(|s| !matches!(s, Segment::Text(_)))
                .cloned()
                .collect::<Vec<_>>()
        };
        if has_late_space(&ids, tok.vocab().text_vocab_size) {
            deviating += 1;
            assert_eq!(media(&streamed), media(&batch), "{ids:?}");
            assert_eq!(streamed.warnings, batch.warnings, "{ids:?}");
            assert_eq!(sorted_chars(&text), sorted_chars(&batch.text()), "{ids:?}");
        } else {
            exact += 1;
            assert_eq!(streamed, batch, "{ids:?}");
            assert_eq!(text, batch.text(), "{ids:?}");
            let plain = ids.iter().all(|&id| {
                id < tok.vocab().text_vocab_size
                    || tok.vocab().image_code(id).is_none()
                        && tok.vocab().speech_token(id).is_none()
                        && ![
                            tok.vocab().image_start,
                            tok.vocab().speech_start,
                            tok.vocab().image_end,
                            tok.vocab().speech_end,
                        ]
                        .contains(&id)
            });
            if plain {
                assert_eq!(text, tok.decode(&ids).unwrap(), "{ids:?}");
            }
        }
    }
    assert!(
        exact > 1500 && deviating > 100,
        "{exact} exact, {deviating} deviating"
    );
}

#[test]
fn split_characters_wait_for_their_bytes() {
    let tok = tokenizer();
    let mut inc = IncrementalDetokenizer::new(&tok);
    // "日" = E6 97 A5 as byte pieces, then "▁".
    assert!(inc.push(239).unwrap().is_empty());
    assert!(inc.push(160).unwrap().is_empty());
    assert_eq!(inc.push(174).unwrap(), [DetokEvent::Text("日".into())]);
    assert_eq!(inc.push(903).unwrap(), [DetokEvent::Text(" ".into())]);
    // An incomplete sequence at the end becomes U+FFFD per byte, as in the batch decode.
    assert!(inc.push(239).unwrap().is_empty());
    assert_eq!(inc.finish(), [DetokEvent::Text("\u{fffd}".into())]);
    assert!(IncrementalDetokenizer::new(&tok)
        .push(tok.vocab_size() as u32)
        .is_err());
}
