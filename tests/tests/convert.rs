//! `convert_release`: the release as it ships (`.bin` pickles) to one GGUF with the whole
//! tokenizer; the LM read back from it reproduces the golden greedy ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use anyhow::{ensure, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use mio_models::convert::convert_release;
use mio_models::generation::{generate, Controls, GenerationConfig};
use mio_models::lm::{GgufType, LlamaForCausalLm, LmSession};
use mio_models::text::TextTokenizer;
use mio_tests::{golden_json, release_layout};

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn q8_0_gguf_carries_the_tokenizer_and_reproduces_greedy() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("mio-q8_0.gguf");
    convert_release(&release_layout(), &out, GgufType::Q8_0, false, &mut |_| {
        Ok(())
    })?;

    let mut file = std::fs::File::open(&out)?;
    let content = Content::read(&mut file)?;
    let tok = TextTokenizer::load(&release_layout())?;
    let tokens = match content.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array(v)) => v.clone(),
        other => anyhow::bail!("no token list: {other:?}"),
    };
    ensure!(tokens.len() == tok.vocab_size(), "{} tokens", tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        let Value::String(s) = t else {
            anyhow::bail!("token {id} is not a string")
        };
        ensure!(
            Some(s.as_str()) == tok.id_to_token(id as u32),
            "token {id}: {s:?}"
        );
    }
    let types = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(v)) => v.clone(),
        _ => anyhow::bail!("no token types"),
    };
    let image_start = tok.vocab().image_start as usize;
    ensure!(
        matches!(types[image_start], Value::I32(3)),
        "<image> is a control token"
    );
    ensure!(matches!(
        content.metadata.get("tokenizer.ggml.eot_token_id"),
        Some(Value::U32(7))
    ));

    // Q8_0 agreement measured on the golden prompt: the 20 greedy ids equal the f32 golden.
    let lm = golden_json("lm.json")?;
    let text = golden_json("text.json")?;
    let prompt = ids(&text["modes"]["std"]["per_conversation"][0]["input_ids"]);
    let model = LlamaForCausalLm::load_gguf(&out, &candle_core::Device::Cpu)?;
    let mut session = LmSession::new(Arc::new(model));
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        eos_token_ids: vec![7],
        pad_token_id: 0,
        ..GenerationConfig::default()
    };
    let got = generate(&mut session, &[prompt], &cfg, None, Controls::none())?;
    ensure!(got.new_tokens[0] == ids(&lm["runs"]["greedy"]["new_tokens"]));
    Ok(())
}

#[test]
fn convert_refuses_to_overwrite_and_reports_bad_folders() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("x.gguf");
    std::fs::write(&out, b"keep me")?;
    let err = convert_release(&release_layout(), &out, GgufType::F16, false, &mut |_| {
        Ok(())
    });
    ensure!(err.unwrap_err().to_string().contains("--force"));
    ensure!(std::fs::read(&out)? == b"keep me");
    let err = convert_release(
        tmp.path(),
        &tmp.path().join("y.gguf"),
        GgufType::F16,
        false,
        &mut |_| Ok(()),
    );
    ensure!(err.is_err());
    ensure!(!tmp.path().join("y.gguf").exists() && !tmp.path().join("y.gguf.partial").exists());
    convert_release(
        &release_layout(),
        &out,
        GgufType::F16,
        true,
        &mut |_| Ok(()),
    )?;
    ensure!(std::fs::metadata(&out)?.len() > 1_000_000);
    Ok(())
}
