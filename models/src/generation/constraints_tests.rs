//! Unit tests of the modality-constraint state machine and mask.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::generation::test_util::tiny_vocab;

const IMG0: u32 = 1006;
const SPCH0: u32 = 9198;
const IMAGE: u32 = 1005;
const IMAGE_END: u32 = 1004;
const SPCH: u32 = 1003;
const SPCH_END: u32 = 1001;

fn allowed(c: &ModalityConstraints, state: &BlockState) -> Vec<u32> {
    let mut s = vec![0.0f32; 13294];
    c.apply(state, &mut s);
    (0..13294u32)
        .filter(|&t| s[t as usize].is_finite())
        .collect()
}

fn layer(k: u32) -> std::ops::Range<u32> {
    SPCH0 + 1024 * k..SPCH0 + 1024 * (k + 1)
}

#[test]
fn outside_masks_bare_media_tokens_and_closers() {
    let c = ModalityConstraints::new(tiny_vocab(), false);
    let a = allowed(&c, &BlockState::Outside);
    for t in [0, 2, 7, 500, 999, IMAGE, SPCH] {
        assert!(a.contains(&t), "{t}");
    }
    for t in [
        IMG0,
        IMG0 + 8191,
        SPCH0,
        SPCH0 + 4095,
        IMAGE_END,
        SPCH_END,
        1000,
        1002,
    ] {
        assert!(!a.contains(&t), "{t}");
    }
    assert_eq!(a.len(), 1000 + 2);
    // apply agrees with is_allowed.
    assert!((0..13294).all(|t| a.contains(&t) == c.is_allowed(&BlockState::Outside, t)));
}

#[test]
fn image_block_is_exactly_32_codes_then_closer() {
    let c = ModalityConstraints::new(tiny_vocab(), false);
    let mut state = c.scan(&[5, IMAGE]);
    assert_eq!(state, BlockState::Image { codes: 0 });
    for i in 0..IMAGE_BLOCK_LEN {
        let a = allowed(&c, &state);
        assert_eq!(a, (IMG0..IMG0 + 8192).collect::<Vec<_>>(), "code {i}");
        c.advance(&mut state, IMG0 + i * 7);
    }
    assert_eq!(allowed(&c, &state), vec![IMAGE_END]);
    c.advance(&mut state, IMAGE_END);
    assert_eq!(state, BlockState::Outside);
}

#[test]
fn speech_with_timbre_has_four_equal_layers() {
    let c = ModalityConstraints::new(tiny_vocab(), true);
    let mut state = c.scan(&[SPCH]);
    // content layer: first token content only.
    assert_eq!(allowed(&c, &state), layer(0).collect::<Vec<_>>());
    for code in [3, 4, 5] {
        c.advance(&mut state, SPCH0 + code);
    }
    // after 3 content tokens: more content or the first timbre token; no </spch>.
    let a = allowed(&c, &state);
    assert_eq!(a, layer(0).chain(layer(1)).collect::<Vec<_>>());
    c.advance(&mut state, layer(1).start + 9);
    assert_eq!(
        state,
        BlockState::Speech {
            layer: 1,
            count: 1,
            layer_len: Some(3)
        }
    );
    for k in 1..=3u32 {
        while let BlockState::Speech {
            layer: l, count, ..
        } = state
        {
            if l != k || count == 3 {
                break;
            }
            assert_eq!(allowed(&c, &state), layer(k).collect::<Vec<_>>());
            c.advance(&mut state, layer(k).start + 1);
        }
        let next: Vec<u32> = if k < 3 {
            layer(k + 1).collect()
        } else {
            vec![SPCH_END]
        };
        assert_eq!(allowed(&c, &state), next, "after layer {k}");
        c.advance(&mut state, next[0]);
    }
    assert_eq!(state, BlockState::Outside);
}

#[test]
fn content_only_speech_ends_after_one_token() {
    let c = ModalityConstraints::new(tiny_vocab(), false);
    let mut state = c.scan(&[SPCH]);
    assert_eq!(allowed(&c, &state), layer(0).collect::<Vec<_>>());
    c.advance(&mut state, SPCH0 + 1023);
    let mut want: Vec<u32> = vec![SPCH_END];
    want.extend(layer(0));
    assert_eq!(allowed(&c, &state), want);
    c.advance(&mut state, SPCH_END);
    assert_eq!(state, BlockState::Outside);
}

#[test]
fn prompt_scanning_is_lenient() {
    let c = ModalityConstraints::new(tiny_vocab(), true);
    // A user image (complete), then text: outside.
    let mut prompt = vec![IMAGE];
    prompt.extend((0..32).map(|i| IMG0 + i));
    prompt.extend([IMAGE_END, 42]);
    assert_eq!(c.scan(&prompt), BlockState::Outside);
    // A truncated image followed by text leaves the block; `<spch>` inside an image opens speech.
    assert_eq!(c.scan(&[IMAGE, IMG0, 42]), BlockState::Outside);
    assert_eq!(
        c.scan(&[IMAGE, IMG0, SPCH]),
        BlockState::Speech {
            layer: 0,
            count: 0,
            layer_len: None
        }
    );
    // Bare media tokens outside are ignored.
    assert_eq!(c.scan(&[IMG0, SPCH0]), BlockState::Outside);
    // A content-only user speech block (input speech) closes fine under timbre rules? No:
    // timbre needs all layers, so `</spch>` after content breaks the rule and leaves the block.
    assert_eq!(c.scan(&[SPCH, SPCH0, SPCH_END, 42]), BlockState::Outside);
}

#[test]
fn tokens_beyond_the_scores_are_ignored() {
    let c = ModalityConstraints::new(tiny_vocab(), false);
    let mut small = vec![1.0f32; 1010];
    c.apply(&BlockState::Image { codes: 0 }, &mut small);
    assert!(small[..IMG0 as usize]
        .iter()
        .all(|x| *x == f32::NEG_INFINITY));
    assert!(small[IMG0 as usize..].iter().all(|x| *x == 1.0));
}
