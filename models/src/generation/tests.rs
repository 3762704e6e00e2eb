//! Generation-level tests with fake LMs: hand-checked beam search, greedy and sampling
//! loops, batches with left padding, stop handling, streaming, cancellation, validation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::test_util::{tiny_vocab, FakeLm};
use super::*;
use crate::Error;

/// Logits = ln(p) per last token.
fn prob_table(rows: &[[f32; 4]]) -> FakeLm {
    FakeLm::table(
        rows.iter()
            .map(|r| r.iter().map(|p| p.ln()).collect())
            .collect(),
    )
}

fn beam_cfg(num_beams: usize, max_new_tokens: usize, eos: Vec<u32>) -> GenerationConfig {
    GenerationConfig {
        num_beams,
        max_new_tokens,
        eos_token_ids: eos,
        ..GenerationConfig::default()
    }
}

fn run(lm: &mut FakeLm, prompts: &[Vec<u32>], cfg: &GenerationConfig) -> GenerationOutput {
    generate(lm, prompts, cfg, None, Controls::none()).unwrap()
}

#[test]
fn beam_search_two_steps_by_hand() {
    // Step 1 from [1]: beam 0 only (beam 1 starts at -1e9). Top 4: 2 (.45), eos (.35, rank 1
    // → hypothesis [1] with score ln .35 / 1), 1 (.15), 0 (.05) → beams [1,2] and [1,1].
    // Step 2: [1,2]→1 .2475, [1,2]→eos .09 (hypothesis [1,2]: ln .09 / 2), [1,1]→2 .0675,
    // [1,2]→2 .0585. Max length reached: finalize adds [1,2,1] (ln .2475 / 3 = -0.465) and
    // [1,1,2] (-0.899), which push out both eos hypotheses (-1.05, -1.20).
    let mut lm = prob_table(&[
        [0.25; 4],
        [0.05, 0.15, 0.45, 0.35],
        [0.12, 0.55, 0.13, 0.2],
        [0.25; 4],
    ]);
    let out = run(&mut lm, &[vec![1]], &beam_cfg(2, 2, vec![3]));
    assert_eq!(out.sequences, vec![vec![1, 2, 1]]);
    assert_eq!(out.new_tokens, vec![vec![2, 1]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Length]);
    let want = (0.45f64 * 0.55).ln() / 3.0;
    assert!((f64::from(out.sequences_scores.unwrap()[0]) - want).abs() < 1e-6);
    // The prompt ran once, then one token per beam; the first reorder maps 1 row to 2 beams.
    assert_eq!(lm.calls, vec![1, 1]);
    assert_eq!(lm.reorders[0], vec![0, 0]);
    assert_eq!(lm.reorders[1], vec![0, 1]);
}

#[test]
fn beam_search_eos_hypothesis_wins_and_prompt_counts_in_length() {
    // From [2,1]: eos .9 at rank 0 → hypothesis [2,1], score ln .9 / 2 (the prompt counts).
    let table = [
        [0.25; 4],
        [0.01, 0.04, 0.05, 0.9],
        [0.1, 0.2, 0.3, 0.4],
        [0.25; 4],
    ];
    let mut lm = prob_table(&table);
    let out = run(&mut lm, &[vec![2, 1]], &beam_cfg(2, 2, vec![3]));
    assert_eq!(out.sequences, vec![vec![2, 1, 3]]);
    assert_eq!(out.new_tokens, vec![vec![3]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Eos]);
    let want = 0.9f64.ln() / 2.0;
    assert!((f64::from(out.sequences_scores.unwrap()[0]) - want).abs() < 1e-6);
    // With length_penalty 2 the divisor is len²: ln .9 / 4.
    let mut lm = prob_table(&table);
    let cfg = GenerationConfig {
        length_penalty: 2.0,
        ..beam_cfg(2, 2, vec![3])
    };
    let out = run(&mut lm, &[vec![2, 1]], &cfg);
    assert!((f64::from(out.sequences_scores.unwrap()[0]) - 0.9f64.ln() / 4.0).abs() < 1e-6);
}

#[test]
fn beam_search_ends_with_the_first_eos_id_like_hf() {
    // Token 0 is the second eos id and wins; HF's finalize appends eos_token_id[0] (3).
    let mut lm = prob_table(&[
        [0.25; 4],
        [0.9, 0.04, 0.05, 0.01],
        [0.1, 0.2, 0.3, 0.4],
        [0.25; 4],
    ]);
    let out = run(&mut lm, &[vec![2, 1]], &beam_cfg(2, 3, vec![3, 0]));
    assert_eq!(out.sequences, vec![vec![2, 1, 3]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Eos]);
}

#[test]
fn greedy_takes_argmax_until_eos() {
    // 1 → 2 → 3 → eos(0).
    let mut lm = prob_table(&[
        [0.25; 4],
        [0.1, 0.2, 0.6, 0.1],
        [0.1, 0.2, 0.1, 0.6],
        [0.7, 0.1, 0.1, 0.1],
    ]);
    let cfg = GenerationConfig {
        eos_token_ids: vec![0],
        pad_token_id: 3,
        ..Default::default()
    };
    let out = run(&mut lm, &[vec![1, 1]], &cfg);
    assert_eq!(out.new_tokens, vec![vec![2, 3, 0]]);
    assert_eq!(out.sequences, vec![vec![1, 1, 2, 3, 0]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Eos]);
    assert_eq!(lm.calls, vec![2, 1, 1]);
    // Without eos it runs to max_new_tokens.
    let mut lm = prob_table(&[
        [0.25; 4],
        [0.1, 0.2, 0.6, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.25; 4],
    ]);
    let cfg = GenerationConfig {
        max_new_tokens: 5,
        ..Default::default()
    };
    let out = run(&mut lm, &[vec![1]], &cfg);
    assert_eq!(out.new_tokens, vec![vec![2, 1, 2, 1, 2]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Length]);
    assert!(out.sequences_scores.is_none() && out.scores.is_none());
}

#[test]
fn repetition_penalty_sees_the_prompt() {
    // After 3: token 1 (2.0, in the prompt) beats 2 (1.9) unless penalised: 2.0 / 1.5 < 1.9.
    let table = vec![
        vec![0.0; 4],
        vec![0.0; 4],
        vec![0.0; 4],
        vec![0.0, 2.0, 1.9, -1.0],
    ];
    let cfg = GenerationConfig {
        max_new_tokens: 1,
        ..Default::default()
    };
    assert_eq!(
        run(&mut FakeLm::table(table.clone()), &[vec![1, 3]], &cfg).new_tokens,
        vec![vec![1]]
    );
    let cfg = GenerationConfig {
        repetition_penalty: 1.5,
        ..cfg
    };
    assert_eq!(
        run(&mut FakeLm::table(table), &[vec![1, 3]], &cfg).new_tokens,
        vec![vec![2]]
    );
}

/// Logits that depend on the whole real row (so padding or cache mistakes show).
fn history_logits(real: &[u32], vocab: usize) -> Vec<f32> {
    let h = real
        .iter()
        .fold(17u64, |h, &t| h.wrapping_mul(31).wrapping_add(u64::from(t)));
    (0..vocab as u64)
        .map(|t| ((h ^ (t * 2654435761)) % 1000) as f32 / 100.0)
        .collect()
}

fn history_lm(vocab: usize) -> FakeLm {
    FakeLm::new(vocab, move |real| history_logits(real, vocab))
}

#[test]
fn left_padded_batch_matches_single_runs() {
    let cfg = GenerationConfig {
        max_new_tokens: 8,
        eos_token_ids: vec![4],
        pad_token_id: 0,
        ..Default::default()
    };
    let prompts = vec![vec![5, 6, 7, 8, 9], vec![10, 11], vec![12, 13, 14]];
    let batch = run(&mut history_lm(20), &prompts, &cfg);
    for (r, p) in prompts.iter().enumerate() {
        let single = run(&mut history_lm(20), std::slice::from_ref(p), &cfg);
        assert_eq!(batch.new_tokens[r], single.new_tokens[0], "row {r}");
        assert_eq!(batch.finish_reasons[r], single.finish_reasons[0]);
        let pads = 5 - p.len();
        assert!(batch.sequences[r][..pads].iter().all(|t| *t == 0));
        assert_eq!(&batch.sequences[r][pads..5], &p[..]);
    }
    let width = batch.sequences[0].len();
    assert!(batch.sequences.iter().all(|s| s.len() == width));
    let b = left_pad(&prompts, 0);
    assert_eq!(b.masks[1], vec![0, 0, 0, 1, 1]);
    assert_eq!(b.ids[1], vec![0, 0, 0, 10, 11]);
}

#[test]
fn stop_sequences_end_a_row() {
    // 1 → 2 → 3 → 1 → …; stop on [2, 3].
    let mut lm = prob_table(&[
        [0.25; 4],
        [0.1, 0.1, 0.7, 0.1],
        [0.1, 0.1, 0.1, 0.7],
        [0.1, 0.7, 0.1, 0.1],
    ]);
    let cfg = GenerationConfig {
        stop_sequences: vec![vec![2, 3]],
        ..Default::default()
    };
    let out = run(&mut lm, &[vec![3]], &cfg);
    assert_eq!(out.new_tokens, vec![vec![1, 2, 3]]);
    assert_eq!(out.finish_reasons, vec![FinishReason::Stop]);
}

#[test]
fn sampling_is_deterministic_per_seed_and_top_k_1_is_greedy() {
    let cfg = |seed| GenerationConfig {
        do_sample: true,
        top_k: 0,
        seed,
        max_new_tokens: 12,
        ..Default::default()
    };
    let a = run(&mut history_lm(30), &[vec![1, 2]], &cfg(7));
    let b = run(&mut history_lm(30), &[vec![1, 2]], &cfg(7));
    assert_eq!(a, b);
    let others: Vec<_> = (8..12)
        .map(|s| run(&mut history_lm(30), &[vec![1, 2]], &cfg(s)).new_tokens)
        .collect();
    assert!(others.iter().any(|o| *o != a.new_tokens));
    let top1 = GenerationConfig { top_k: 1, ..cfg(3) };
    let greedy = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    assert_eq!(
        run(&mut history_lm(30), &[vec![1, 2]], &top1).new_tokens,
        run(&mut history_lm(30), &[vec![1, 2]], &greedy).new_tokens
    );
}

#[test]
fn sampling_never_leaves_the_nucleus() {
    // After any token: p = .05 .15 .3 .5; top_p 0.7 removes tokens 0 and 1.
    let row = [0.05, 0.15, 0.3, 0.5];
    for seed in 0..40 {
        let mut lm = prob_table(&[row; 4]);
        let cfg = GenerationConfig {
            do_sample: true,
            top_k: 0,
            top_p: 0.7,
            seed,
            max_new_tokens: 6,
            ..Default::default()
        };
        let out = run(&mut lm, &[vec![1]], &cfg);
        assert!(
            out.new_tokens[0].iter().all(|t| *t >= 2),
            "{:?}",
            out.new_tokens
        );
    }
}

#[test]
fn beam_sampling_runs_and_is_deterministic() {
    let cfg = GenerationConfig {
        num_beams: 3,
        do_sample: true,
        top_k: 0,
        top_p: 0.9,
        seed: 5,
        max_new_tokens: 6,
        eos_token_ids: vec![4],
        ..Default::default()
    };
    let a = run(&mut history_lm(30), &[vec![1, 2], vec![3]], &cfg);
    let b = run(&mut history_lm(30), &[vec![1, 2], vec![3]], &cfg);
    assert_eq!(a, b);
    assert_eq!(a.sequences_scores.as_ref().map(Vec::len), Some(2));
}

#[test]
fn streaming_reports_each_token_and_break_cancels() {
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        eos_token_ids: vec![4],
        ..Default::default()
    };
    let mut events = Vec::new();
    let mut cb = |e: &TokenEvent| {
        events.push(*e);
        ControlFlow::Continue(())
    };
    let out = generate(
        &mut history_lm(20),
        &[vec![1]],
        &cfg,
        None,
        Controls::none().with_callback(&mut cb),
    )
    .unwrap();
    let streamed: Vec<u32> = events.iter().map(|e| e.token).collect();
    assert_eq!(streamed, out.new_tokens[0]);
    assert!(events
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == i && e.row == 0));
    let last = events.last().unwrap().finish;
    assert_eq!(
        last,
        (out.finish_reasons[0] == FinishReason::Eos).then_some(FinishReason::Eos)
    );
    // Break after the third token.
    let mut n = 0;
    let mut stop = |_: &TokenEvent| {
        n += 1;
        if n == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let out = generate(
        &mut history_lm(20),
        &[vec![1]],
        &cfg,
        None,
        Controls::none().with_callback(&mut stop),
    )
    .unwrap();
    assert_eq!(out.new_tokens[0].len(), 3);
    assert_eq!(out.finish_reasons, vec![FinishReason::Cancelled]);
}

#[test]
fn beam_search_streams_the_final_hypothesis() {
    let cfg = GenerationConfig {
        num_beams: 3,
        max_new_tokens: 6,
        eos_token_ids: vec![4],
        ..Default::default()
    };
    let mut events = Vec::new();
    let mut cb = |e: &TokenEvent| {
        events.push(*e);
        ControlFlow::Continue(())
    };
    let prompts = [vec![1], vec![2, 3]];
    let out = generate(
        &mut history_lm(20),
        &prompts,
        &cfg,
        None,
        Controls::none().with_callback(&mut cb),
    )
    .unwrap();
    for (row, new) in out.new_tokens.iter().enumerate() {
        let got: Vec<u32> = events
            .iter()
            .filter(|e| e.row == row)
            .map(|e| e.token)
            .collect();
        assert_eq!(&got, new);
    }
}

#[test]
fn cancel_flag_stops_between_steps() {
    let flag = AtomicBool::new(true);
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let out = generate(
        &mut history_lm(20),
        &[vec![1]],
        &cfg,
        None,
        Controls::none().with_cancel(&flag),
    )
    .unwrap();
    assert!(out.new_tokens[0].is_empty());
    assert_eq!(out.finish_reasons, vec![FinishReason::Cancelled]);
    // Raised by the LM during its 4th forward: greedy keeps 4 tokens, beam search finalizes
    // the running beams (4 tokens each) as Cancelled.
    for num_beams in [1, 3] {
        let flag = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (f, c) = (flag.clone(), calls.clone());
        // Logits are computed per row: the 4th forward is call number 1 + 3 · num_beams.
        let mut lm = FakeLm::new(20, move |real| {
            if c.fetch_add(1, Ordering::SeqCst) + 1 > 3 * num_beams {
                f.store(true, Ordering::SeqCst);
            }
            history_logits(real, 20)
        });
        let cfg = GenerationConfig {
            num_beams,
            max_new_tokens: 10,
            ..Default::default()
        };
        let out = generate(
            &mut lm,
            &[vec![1]],
            &cfg,
            None,
            Controls::none().with_cancel(&flag),
        )
        .unwrap();
        assert_eq!(out.new_tokens[0].len(), 4, "beams {num_beams}");
        assert_eq!(out.finish_reasons, vec![FinishReason::Cancelled]);
    }
}

#[test]
fn invalid_requests_are_rejected() {
    let cfg = GenerationConfig {
        max_new_tokens: 10,
        ..Default::default()
    };
    let err = |prompts: &[Vec<u32>], cfg: &GenerationConfig, lm: &mut FakeLm| {
        generate(lm, prompts, cfg, None, Controls::none()).unwrap_err()
    };
    assert!(matches!(
        err(&[], &cfg, &mut history_lm(20)),
        Error::EmptyPrompt
    ));
    assert!(matches!(
        err(&[vec![1], vec![]], &cfg, &mut history_lm(20)),
        Error::EmptyPrompt
    ));
    let mut short = history_lm(20).with_max_context(12);
    assert!(matches!(
        err(&[vec![1, 2, 3]], &cfg, &mut short),
        Error::PromptTooLong { len: 3, max: 12 }
    ));
    let mut fits = history_lm(20).with_max_context(13);
    assert!(generate(&mut fits, &[vec![1, 2, 3]], &cfg, None, Controls::none()).is_ok());
    assert!(matches!(
        err(&[vec![20]], &cfg, &mut history_lm(20)),
        Error::UnknownTokenId { id: 20, .. }
    ));
    let bad_eos = GenerationConfig {
        eos_token_ids: vec![99],
        ..cfg.clone()
    };
    assert!(matches!(
        err(&[vec![1]], &bad_eos, &mut history_lm(20)),
        Error::UnknownTokenId { id: 99, .. }
    ));
    let bad = GenerationConfig {
        top_p: 2.0,
        ..cfg.clone()
    };
    assert!(matches!(
        err(&[vec![1]], &bad, &mut history_lm(20)),
        Error::InvalidArgument(_)
    ));
    let constrained = GenerationConfig {
        constraints: true,
        ..cfg.clone()
    };
    assert!(matches!(
        err(&[vec![1]], &constrained, &mut history_lm(20)),
        Error::InvalidArgument(_)
    ));
    // A vocabulary larger than the LM's.
    let v = tiny_vocab();
    let e = generate(
        &mut history_lm(20),
        &[vec![1]],
        &constrained,
        Some(&v),
        Controls::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
}

#[test]
fn wrong_logit_width_is_an_error() {
    struct Narrow;
    impl CausalLm for Narrow {
        fn vocab_size(&self) -> usize {
            10
        }
        fn max_context(&self) -> usize {
            100
        }
        fn reset(&mut self) {}
        fn forward(&mut self, tokens: &[Vec<u32>], _: &[Vec<u8>]) -> crate::Result<Vec<Vec<f32>>> {
            Ok(vec![vec![0.0; 9]; tokens.len()])
        }
        fn reorder(&mut self, _: &[usize]) -> crate::Result<()> {
            Ok(())
        }
    }
    let cfg = GenerationConfig {
        max_new_tokens: 3,
        ..Default::default()
    };
    let e = generate(&mut Narrow, &[vec![1]], &cfg, None, Controls::none()).unwrap_err();
    assert!(matches!(e, Error::Generation(_)));
}
