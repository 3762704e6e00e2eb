//! Modality constraints end to end: a fake LM over the tiny model's vocabulary whose logits
//! favour rule-breaking tokens (bare media tokens, early closers, eos inside blocks, timbre
//! before content, ...). With constraints every output passes an independent block checker
//! under greedy, sampling and beam search; without them the same runs break a rule.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::test_util::{tiny_vocab, FakeLm};
use super::*;

const V: usize = 13294;
const IMG0: u32 = 1006;
const SPCH0: u32 = 9198;
const IMAGE: u32 = 1005;
const IMAGE_END: u32 = 1004;
const SPCH: u32 = 1003;
const SPCH_END: u32 = 1001;

/// Noise plus shifting boosts on the tokens that break the rules somewhere.
fn adversarial(real: &[u32]) -> Vec<f32> {
    let n = real.len() as u64;
    let last = u64::from(*real.last().unwrap());
    let mix = |salt: u64| {
        let x =
            n.wrapping_mul(2654435761) ^ last.wrapping_mul(40503) ^ salt.wrapping_mul(0x9E37_79B9);
        x ^ (x >> 15)
    };
    let mut l: Vec<f32> = (0..V as u64)
        .map(|t| (mix(t + 11) % 1000) as f32 / 1000.0)
        .collect();
    let boost = |i: u64| 3.0 + ((n * 3 + i * 7) % 5) as f32;
    let mut add = |t: u64, b: f32| l[t as usize] += b;
    add(u64::from(IMG0) + mix(1) % 8192, boost(0));
    add(u64::from(SPCH0) + mix(2) % 1024, boost(1));
    add(
        u64::from(SPCH0) + 1024 * (1 + mix(3) % 3) + mix(4) % 1024,
        boost(2),
    );
    add(u64::from(IMAGE_END), boost(3));
    add(u64::from(SPCH_END), boost(4));
    add(7, boost(5) - 2.0);
    add(u64::from(IMAGE), boost(6) - 1.0);
    add(u64::from(SPCH), boost(7) - 1.0);
    add(1000, boost(8));
    add(1002, boost(9));
    add(500, boost(10) - 0.5);
    l
}

/// Independent checker: `Err` names the first broken rule of `tokens`, generated after
/// a prompt ending in `start` (`None` = outside a block). Unterminated blocks are fine.
fn check(start: Option<u32>, tokens: &[u32], timbre: bool) -> Result<(), String> {
    let v = tiny_vocab();
    let (mut img, mut sp): (Option<u32>, Option<Vec<u32>>) = (None, None);
    match start {
        Some(IMAGE) => img = Some(0),
        Some(SPCH) => sp = Some(vec![]),
        _ => {}
    }
    for (i, &t) in tokens.iter().enumerate() {
        if let Some(c) = img {
            img = match (c < 32, v.image_code(t).is_some(), t == IMAGE_END) {
                (true, true, _) => Some(c + 1),
                (false, _, true) => None,
                _ => {
                    return Err(format!(
                        "token {i} ({t}) inside an image block after {c} codes"
                    ))
                }
            };
        } else if let Some(layers) = sp.as_mut() {
            if t == SPCH_END {
                let ok = if timbre {
                    layers.len() == 4 && layers.iter().all(|c| *c == layers[0])
                } else {
                    layers.len() == 1
                };
                if !ok || layers[0] == 0 {
                    return Err(format!("token {i}: </spch> after layers {layers:?}"));
                }
                sp = None;
                continue;
            }
            let Some(n) = v.speech_token(t) else {
                return Err(format!("token {i} ({t}) inside a speech block"));
            };
            let k = (n / 1024) as usize;
            if k + 1 == layers.len() {
                *layers.last_mut().unwrap() += 1;
            } else if k == layers.len()
                && (k == 0 || (timbre && (k == 1 || layers[k - 1] == layers[0])))
            {
                layers.push(1);
            } else {
                return Err(format!("token {i}: layer {k} after layers {layers:?}"));
            }
            if layers.iter().skip(1).any(|c| *c > layers[0]) {
                return Err(format!(
                    "token {i}: timbre layer longer than content {layers:?}"
                ));
            }
        } else if t == IMAGE {
            img = Some(0);
        } else if t == SPCH {
            sp = Some(vec![]);
        } else if t >= 1000 && t != 1003 && t != 1005 {
            return Err(format!("token {i} ({t}) outside a block"));
        }
    }
    Ok(())
}

fn configs(timbre: bool, constraints: bool) -> Vec<GenerationConfig> {
    let base = GenerationConfig {
        max_new_tokens: 120,
        eos_token_ids: vec![7],
        constraints,
        speech_timbre: timbre,
        top_k: 0,
        ..Default::default()
    };
    let mut out = vec![
        base.clone(),
        GenerationConfig {
            num_beams: 3,
            ..base.clone()
        },
    ];
    out.extend((0..3).map(|seed| GenerationConfig {
        do_sample: true,
        temperature: 0.5,
        seed,
        ..base.clone()
    }));
    out
}

const PROMPTS: [(&[u32], Option<u32>); 3] = [
    (&[6, 500, 501], None),
    (&[6, 500, IMAGE], Some(IMAGE)),
    (&[6, 500, SPCH], Some(SPCH)),
];

#[test]
fn constrained_outputs_never_break_the_rules() {
    let v = tiny_vocab();
    let mut closed_blocks = 0;
    for timbre in [false, true] {
        for cfg in configs(timbre, true) {
            for (prompt, start) in PROMPTS {
                let out = generate(
                    &mut FakeLm::new(V, adversarial),
                    &[prompt.to_vec()],
                    &cfg,
                    Some(&v),
                    Controls::none(),
                )
                .unwrap();
                let new = &out.new_tokens[0];
                if let Err(e) = check(start, new, timbre) {
                    panic!(
                        "timbre {timbre}, beams {}, seed {}: {e}\n{new:?}",
                        cfg.num_beams, cfg.seed
                    );
                }
                closed_blocks += new
                    .iter()
                    .filter(|t| **t == IMAGE_END || **t == SPCH_END)
                    .count();
            }
        }
    }
    // The runs do get through whole blocks, not just their start.
    assert!(closed_blocks >= 10, "{closed_blocks}");
}

#[test]
fn unconstrained_outputs_do_break_them() {
    for timbre in [false, true] {
        for cfg in configs(timbre, false) {
            for (prompt, start) in PROMPTS {
                let out = generate(
                    &mut FakeLm::new(V, adversarial),
                    &[prompt.to_vec()],
                    &cfg,
                    None,
                    Controls::none(),
                )
                .unwrap();
                assert!(
                    check(start, &out.new_tokens[0], timbre).is_err(),
                    "beams {} {:?} {:?}",
                    cfg.num_beams,
                    prompt,
                    out.new_tokens
                );
            }
        }
    }
}

#[test]
fn constrained_speech_with_timbre_has_equal_layers() {
    let v = tiny_vocab();
    let cfg = GenerationConfig {
        max_new_tokens: 200,
        constraints: true,
        speech_timbre: true,
        ..Default::default()
    };
    let out = generate(
        &mut FakeLm::new(V, adversarial),
        &[vec![6, SPCH]],
        &cfg,
        Some(&v),
        Controls::none(),
    )
    .unwrap();
    let new = &out.new_tokens[0];
    let end = new
        .iter()
        .position(|t| *t == SPCH_END)
        .expect("block closed");
    let layers: Vec<usize> = (0..4)
        .map(|k| {
            new[..end]
                .iter()
                .filter(|t| (**t - SPCH0) / 1024 == k)
                .count()
        })
        .collect();
    assert!(
        layers[0] >= 1 && layers.iter().all(|c| *c == layers[0]),
        "{layers:?}"
    );
}

/// Logits that always want a new picture: `<image>` best, then codes, then `</image>`.
fn picture_hungry(real: &[u32]) -> Vec<f32> {
    let mut l = vec![0f32; V];
    l[IMAGE as usize] = 9.0;
    l[(IMG0 + real.len() as u32 % 8192) as usize] = 5.0;
    l[IMAGE_END as usize] = 3.0;
    l[7] = 1.0;
    l
}

/// Every `<image>` of `new` is followed by 32 codes and `</image>`.
fn images_complete(new: &[u32]) -> bool {
    let v = tiny_vocab();
    let mut i = 0;
    while i < new.len() {
        if new[i] == IMAGE {
            let block = &new[i + 1..];
            if block.len() < 33
                || !block[..32].iter().all(|t| v.image_code(*t).is_some())
                || block[32] != IMAGE_END
            {
                return false;
            }
            i += 34;
        } else {
            i += 1;
        }
    }
    true
}

#[test]
fn image_blocks_always_close_before_max_new_tokens() {
    let v = tiny_vocab();
    let mut images = 0;
    for max_new_tokens in [1, 20, 33, 34, 35, 50, 67, 68, 69, 101] {
        let base = GenerationConfig {
            max_new_tokens,
            eos_token_ids: vec![7],
            constraints: true,
            top_k: 0,
            ..Default::default()
        };
        let cfgs = [
            base.clone(),
            GenerationConfig {
                num_beams: 3,
                ..base.clone()
            },
            GenerationConfig {
                do_sample: true,
                temperature: 0.1,
                ..base.clone()
            },
        ];
        for cfg in cfgs {
            let out = generate(
                &mut FakeLm::new(V, picture_hungry),
                &[vec![6, 500]],
                &cfg,
                Some(&v),
                Controls::none(),
            )
            .unwrap();
            let new = &out.new_tokens[0];
            assert!(images_complete(new), "max {max_new_tokens}: {new:?}");
            images += new.iter().filter(|t| **t == IMAGE_END).count();
        }
    }
    // The budget cuts pictures only where they cannot fit: 68 tokens hold two.
    assert!(images >= 10, "{images}");
    // Without the budget the same LM leaves a block open.
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        eos_token_ids: vec![7],
        top_k: 0,
        ..Default::default()
    };
    let out = generate(
        &mut FakeLm::new(V, picture_hungry),
        &[vec![6, 500]],
        &cfg,
        None,
        Controls::none(),
    )
    .unwrap();
    assert!(!images_complete(&out.new_tokens[0]));
}
