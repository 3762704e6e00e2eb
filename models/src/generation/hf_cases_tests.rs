//! Parity with transformers 4.34 `generate` on a fake LM: `testdata/hf_cases.json` holds
//! what HF produced (`testdata/make_hf_cases.py`) for greedy and beam search cases with
//! batches, left padding, repetition penalty, several eos ids, length penalties and every
//! `early_stopping` mode. The fake's logits ([`hf_logits`]) are the same function of the
//! row's real tokens in both languages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use super::test_util::FakeLm;
use super::{generate, Controls, EarlyStopping, GenerationConfig};

/// `fake_logits` of `make_hf_cases.py`.
pub fn hf_logits(real: &[u32], vocab: usize, salt: u64, boost: &[u32]) -> Vec<f32> {
    let a = real.last().copied().unwrap_or(0) as u64;
    let b = if real.len() > 1 {
        real[real.len() - 2] as u64
    } else {
        0
    };
    let n = real.len() as u64;
    (0..vocab as u64)
        .map(|t| {
            let x = a * 2654435761 + b * 40503 + n * 97 + t * 7919 + salt * 1000003;
            let h = (x ^ (x >> 13)) % 97;
            let mut v = h as f64 * 0.25 + t as f64 * 0.001;
            if boost.contains(&(t as u32)) && n.is_multiple_of(4) {
                v += 3.0;
            }
            v as f32
        })
        .collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn config_of(kwargs: &Value) -> GenerationConfig {
    let f = |k: &str, d: f64| kwargs.get(k).and_then(Value::as_f64).unwrap_or(d);
    let early = match kwargs.get("early_stopping") {
        Some(Value::Bool(true)) => EarlyStopping::OnFull,
        Some(Value::String(s)) if s == "never" => EarlyStopping::Never,
        _ => EarlyStopping::Heuristic,
    };
    GenerationConfig {
        max_new_tokens: kwargs["max_new_tokens"].as_u64().unwrap() as usize,
        num_beams: kwargs["num_beams"].as_u64().unwrap() as usize,
        do_sample: kwargs["do_sample"].as_bool().unwrap(),
        temperature: f("temperature", 1.0) as f32,
        top_k: f("top_k", 50.0) as usize,
        top_p: f("top_p", 1.0),
        repetition_penalty: f("repetition_penalty", 1.0) as f32,
        length_penalty: f("length_penalty", 1.0),
        early_stopping: early,
        eos_token_ids: u32s(&kwargs["eos_token_id"]),
        pad_token_id: 0,
        output_scores: true,
        ..GenerationConfig::default()
    }
}

/// Step-0 scores after the warpers; HF's `-inf` are `null` in the JSON.
fn check_warped_scores(name: &str, step0: &[f32], case: &Value) {
    let want = case["scores_step0_row0"].as_array().unwrap();
    assert_eq!(step0.len(), want.len());
    for (g, w) in step0.iter().zip(want) {
        match w.as_f64() {
            Some(w) => assert!((g - w as f32).abs() < 1e-5, "{name}: scores {g} vs {w}"),
            None => assert_eq!(*g, f32::NEG_INFINITY, "{name}: filtered token kept"),
        }
    }
}

#[test]
fn matches_transformers_4_34_on_a_fake_lm() {
    let cases: Value = serde_json::from_str(include_str!("testdata/hf_cases.json")).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let vocab = case["vocab"].as_u64().unwrap() as usize;
        let salt = case["salt"].as_u64().unwrap();
        let boost = u32s(&case["boost"]);
        let prompts: Vec<Vec<u32>> = case["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(u32s)
            .collect();
        let cfg = config_of(&case["kwargs"]);
        let mut lm = FakeLm::new(vocab, move |real| hf_logits(real, vocab, salt, &boost));
        let out = generate(&mut lm, &prompts, &cfg, None, Controls::none()).unwrap();
        if case["sampled"].as_bool().unwrap() {
            // torch's RNG is not reproduced: only the warped scores are compared.
            check_warped_scores(name, &out.scores.as_ref().unwrap()[0][0], case);
            continue;
        }
        let want: Vec<Vec<u32>> = case["sequences"]
            .as_array()
            .unwrap()
            .iter()
            .map(u32s)
            .collect();
        assert_eq!(out.sequences, want, "{name}: sequences");
        if let Some(scores) = case.get("sequences_scores") {
            let got = out.sequences_scores.clone().unwrap();
            for (g, w) in got.iter().zip(scores.as_array().unwrap()) {
                let w = w.as_f64().unwrap() as f32;
                assert!((g - w).abs() < 1e-5, "{name}: sequences_scores {g} vs {w}");
            }
        } else {
            assert!(out.sequences_scores.is_none());
        }
        let step0 = &out.scores.as_ref().unwrap()[0][0];
        for (g, w) in step0
            .iter()
            .zip(case["scores_step0_row0"].as_array().unwrap())
        {
            let w = w.as_f64().unwrap() as f32;
            assert!((g - w).abs() < 1e-5, "{name}: scores {g} vs {w}");
        }
        // new_tokens = the part after the prompt, without the right padding.
        let prompt_len = prompts.iter().map(Vec::len).max().unwrap();
        for (row, new) in out.sequences.iter().zip(&out.new_tokens) {
            assert_eq!(&row[prompt_len..prompt_len + new.len()], &new[..], "{name}");
            assert!(
                row[prompt_len + new.len()..].iter().all(|t| *t == 0),
                "{name}"
            );
        }
    }
}
