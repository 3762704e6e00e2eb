//! Golden parity of generation on the tiny LM: the transformers 4.34 `generate` runs of
//! `fixtures/golden/lm.json` and `lm.safetensors` (float32 CPU), reproduced with
//! `mio_models::generation::generate` over the candle LM.
//!
//! Runs: `greedy`, `beam5` (infer.py's text config), `beam5_rep1.15` and
//! `batch_greedy_left_padded`; common kwargs eos 7, pad 0, max_new_tokens 20. Sequences
//! are compared exactly, beam `sequences_scores` and the greedy step scores within 1e-4.
//! Constraints are off: the reference generates unconstrained.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use mio_models::generation::{generate, Controls, GenerationConfig, GenerationOutput};
use mio_models::lm::{LlamaForCausalLm, LmSession};
use mio_tests::{golden, golden_json, tiny_model};
use serde_json::Value;

fn session() -> Result<LmSession> {
    let lm = LlamaForCausalLm::load(&tiny_model(), DType::F32, &mio_tests::device()?)
        .context("loading the tiny LM")?;
    Ok(LmSession::new(Arc::new(lm)))
}

fn tensors() -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        golden("lm.safetensors"),
        &Device::Cpu,
    )?)
}

fn rows(t: &Tensor) -> Result<Vec<Vec<u32>>> {
    let v = t.to_dtype(DType::I64)?.to_vec2::<i64>()?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(|x| x as u32).collect())
        .collect())
}

fn json_rows(v: &Value) -> Vec<Vec<u32>> {
    let row = |r: &Value| {
        r.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    v.as_array().unwrap().iter().map(row).collect()
}

/// The config of one golden run: `generation_kwargs_common` + the run's kwargs.
fn config(lm_json: &Value, run: &str) -> GenerationConfig {
    let common = &lm_json["generation_kwargs_common"];
    let kw = &lm_json["runs"][run]["kwargs"];
    let f = |k: &str, d: f64| kw.get(k).and_then(Value::as_f64).unwrap_or(d);
    GenerationConfig {
        max_new_tokens: common["max_new_tokens"].as_u64().unwrap() as usize,
        num_beams: kw["num_beams"].as_u64().unwrap() as usize,
        do_sample: kw["do_sample"].as_bool().unwrap(),
        temperature: f("temperature", 1.0) as f32,
        top_k: f("top_k", 50.0) as usize,
        top_p: f("top_p", 1.0),
        repetition_penalty: f("repetition_penalty", 1.0) as f32,
        length_penalty: f("length_penalty", 1.0),
        eos_token_ids: vec![common["eos_token_id"].as_u64().unwrap() as u32],
        pad_token_id: common["pad_token_id"].as_u64().unwrap() as u32,
        output_scores: true,
        ..GenerationConfig::default()
    }
}

fn run(lm_json: &Value, name: &str, prompts: &[Vec<u32>]) -> Result<GenerationOutput> {
    let cfg = config(lm_json, name);
    let mut lm = session()?;
    Ok(generate(&mut lm, prompts, &cfg, None, Controls::none())?)
}

fn close(got: f32, want: f32) -> bool {
    (got - want).abs() <= 1e-4 + 1e-4 * want.abs()
}

/// Checks one single-prompt run on `mm.input_ids` against both golden files.
fn check_mm_run(name: &str) -> Result<GenerationOutput> {
    let lm_json = golden_json("lm.json")?;
    let t = tensors()?;
    let prompt = rows(&t["mm.input_ids"])?;
    let out = run(&lm_json, name, &prompt)?;
    let golden_run = &lm_json["runs"][name];
    let want = json_rows(&golden_run["sequences"]);
    assert_eq!(out.sequences, want, "{name}: sequences (lm.json)");
    assert_eq!(
        out.sequences,
        rows(&t[&format!("mm.{name}.sequences")])?,
        "{name}: sequences (safetensors)"
    );
    let new = json_rows(&Value::Array(vec![golden_run["new_tokens"].clone()]));
    assert_eq!(out.new_tokens, new, "{name}: new tokens");
    if let Some(scores) = golden_run.get("sequences_scores") {
        let want = scores[0].as_f64().unwrap() as f32;
        let got = out.sequences_scores.as_ref().unwrap()[0];
        assert!(close(got, want), "{name}: sequences_scores {got} vs {want}");
        let st: Vec<f32> = t[&format!("mm.{name}.sequences_scores")].to_vec1()?;
        assert!(
            close(got, st[0]),
            "{name}: sequences_scores {got} vs {} (safetensors)",
            st[0]
        );
    }
    Ok(out)
}

#[test]
fn greedy_matches_reference() -> Result<()> {
    let out = check_mm_run("greedy")?;
    // Step scores: generate(...).scores stacked, (1, steps, vocab).
    let want: Vec<Vec<Vec<f32>>> = tensors()?["mm.greedy.step_scores"].to_vec3()?;
    let got = out.scores.as_ref().unwrap();
    assert_eq!(got.len(), want[0].len());
    for (step, (g, w)) in got.iter().zip(&want[0]).enumerate() {
        assert_eq!(g[0].len(), w.len());
        let worst = g[0]
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            g[0].iter().zip(w).all(|(a, b)| close(*a, *b)),
            "step {step}: max diff {worst}"
        );
    }
    Ok(())
}

#[test]
fn beam5_matches_reference() -> Result<()> {
    check_mm_run("beam5").map(|_| ())
}

#[test]
fn beam5_repetition_penalty_matches_reference() -> Result<()> {
    check_mm_run("beam5_rep1.15").map(|_| ())
}

#[test]
fn left_padded_batch_greedy_matches_reference() -> Result<()> {
    let lm_json = golden_json("lm.json")?;
    let t = tensors()?;
    let ids = rows(&t["batch.input_ids"])?;
    let mask = rows(&t["batch.attention_mask"])?;
    // generate takes unpadded prompts and left-pads them itself with pad 0.
    let prompts: Vec<Vec<u32>> = ids
        .iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, m)| **m == 1)
                .map(|(t, _)| *t)
                .collect()
        })
        .collect();
    let out = run(&lm_json, "batch_greedy_left_padded", &prompts)?;
    let want = json_rows(&lm_json["runs"]["batch_greedy_left_padded"]["sequences"]);
    assert_eq!(out.sequences, want, "sequences (lm.json)");
    assert_eq!(
        out.sequences,
        rows(&t["batch.greedy.sequences"])?,
        "sequences (safetensors)"
    );
    assert_eq!(
        &out.sequences[0][..ids[0].len()],
        &ids[0][..],
        "left padding as the reference"
    );
    Ok(())
}
