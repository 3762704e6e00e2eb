//! Golden parity of the MIO LM (`models/src/lm`) against transformers 4.34
//! `LlamaForCausalLM` on the tiny fixture model (`golden/lm.safetensors`), plus the
//! incremental / padded-batch / GGUF paths, checked against the full forward pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use mio_models::generation::CausalLm;
use mio_models::lm::{Checkpoint, Config, LlamaForCausalLm, LmSession};
use mio_models::Error;
use mio_tests::{golden, tiny_model};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn goldens() -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        golden("lm.safetensors"),
        &Device::Cpu,
    )?)
}

fn ids(t: &Tensor) -> Result<Vec<Vec<u32>>> {
    Ok(t.to_dtype(DType::U32)?.to_vec2::<u32>()?)
}

fn model() -> Result<LlamaForCausalLm> {
    Ok(LlamaForCausalLm::load(
        &tiny_model(),
        DType::F32,
        &mio_tests::device()?,
    )?)
}

/// Asserts `|got - want| <= ATOL + RTOL |want|` elementwise; returns the max abs error.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<f32> {
    ensure!(
        got.dims() == want.dims(),
        "{what}: shape {:?} vs {:?}",
        got.dims(),
        want.dims()
    );
    let g = got.flatten_all()?.to_vec1::<f32>()?;
    let w = want.flatten_all()?.to_vec1::<f32>()?;
    let mut max_err = 0f32;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs();
        ensure!(
            err <= ATOL + RTOL * b.abs(),
            "{what}[{i}]: got {a}, want {b}"
        );
        max_err = max_err.max(err);
    }
    Ok(max_err)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn short_logits_and_hidden_states_match_golden() -> Result<()> {
    let g = goldens()?;
    let model = model()?;
    let tokens = ids(&g["short.input_ids"])?;
    let mut cache = model.new_cache();
    let hidden = model.forward_hidden(&tokens, None, &mut cache, true)?;
    let want_hidden = &g["short.hidden_states"];
    ensure!(
        hidden.all.len() == want_hidden.dim(0)?,
        "hidden state count"
    );
    for (k, h) in hidden.all.iter().enumerate() {
        let err = assert_close(
            &format!("hidden[{k}]"),
            &h.squeeze(0)?,
            &want_hidden.get(k)?,
        )?;
        eprintln!("hidden[{k}] max abs err {err:e}");
    }
    let logits = model.logits(&hidden.last)?;
    let err = assert_close("short.logits", &logits, &g["short.logits"])?;
    eprintln!("short.logits max abs err {err:e}");
    Ok(())
}

#[test]
fn mm_last_logits_match_golden() -> Result<()> {
    let g = goldens()?;
    let model = model()?;
    let tokens = ids(&g["mm.input_ids"])?;
    let logits = model.forward_last(&tokens, None, &mut model.new_cache())?;
    let err = assert_close("mm.last_logits", &logits, &g["mm.last_logits"])?;
    eprintln!("mm.last_logits max abs err {err:e}");
    Ok(())
}

/// Greedy decoding through the session (cache) reproduces HF's 20 greedy steps: every
/// step's logits (`scores`) within tolerance and the token ids exactly.
#[test]
fn greedy_through_cache_matches_golden_steps() -> Result<()> {
    let g = goldens()?;
    let mut session = LmSession::new(Arc::new(model()?));
    let prompt = ids(&g["mm.input_ids"])?.remove(0);
    let want_seq = ids(&g["mm.greedy.sequences"])?.remove(0);
    let scores = g["mm.greedy.step_scores"].squeeze(0)?;
    let mut seq = prompt.clone();
    let mut new = prompt.clone();
    for step in 0..scores.dim(0)? {
        let mask = vec![vec![1u8; seq.len()]];
        let logits = session.forward(&[new.clone()], &mask)?.remove(0);
        let got = Tensor::new(logits.as_slice(), &Device::Cpu)?;
        assert_close(&format!("step {step}"), &got, &scores.get(step)?)?;
        let next = argmax(&logits);
        seq.push(next);
        new = vec![next];
    }
    ensure!(seq == want_seq, "greedy sequence differs");
    Ok(())
}

/// Incremental decoding through the cache equals one full forward pass (the 298 tokens of
/// the unpadded batch row 1 + its greedy tokens; steps cross the cache's growth boundary
/// at 256 positions).
#[test]
fn incremental_decoding_equals_full_forward() -> Result<()> {
    let g = goldens()?;
    let model = model()?;
    let seq = ids(&g["batch.greedy.sequences"])?.remove(1);
    let full = model
        .forward_logits(std::slice::from_ref(&seq), None, &mut model.new_cache())?
        .squeeze(0)?;
    let mut cache = model.new_cache();
    let split = 240;
    let first = model
        .forward_logits(&[seq[..split].to_vec()], None, &mut cache)?
        .squeeze(0)?;
    assert_close("prefill", &first, &full.narrow(0, 0, split)?)?;
    let mut max_err = 0f32;
    for (pos, &tok) in seq.iter().enumerate().skip(split) {
        let step = model
            .forward_logits(&[vec![tok]], None, &mut cache)?
            .squeeze(0)?;
        max_err = max_err.max(assert_close(
            &format!("pos {pos}"),
            &step,
            &full.narrow(0, pos, 1)?,
        )?);
    }
    ensure!(cache.seq_len() == seq.len());
    eprintln!("incremental vs full: max abs err {max_err:e}");
    Ok(())
}

/// Left-padded batch: first-step logits are finite, agree with each row run alone, and
/// greedy decoding of the batch reproduces HF's padded-batch sequences exactly.
#[test]
fn padded_batch_matches_unpadded_rows_and_golden_greedy() -> Result<()> {
    let g = goldens()?;
    let model = Arc::new(model()?);
    let batch = ids(&g["batch.input_ids"])?;
    let mut mask: Vec<Vec<u8>> = ids(&g["batch.attention_mask"])?
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as u8).collect())
        .collect();
    let mut session = LmSession::new(model.clone());
    let first = session.forward(&batch, &mask)?;
    for (r, row) in first.iter().enumerate() {
        ensure!(
            row.iter().all(|v| v.is_finite()),
            "row {r} has non-finite logits"
        );
        let alone: Vec<u32> = batch[r]
            .iter()
            .zip(&mask[r])
            .filter(|(_, m)| **m == 1)
            .map(|(t, _)| *t)
            .collect();
        let want = model
            .forward_last(&[alone], None, &mut model.new_cache())?
            .squeeze(0)?;
        let err = assert_close(
            &format!("row {r}"),
            &Tensor::new(row.as_slice(), &Device::Cpu)?,
            &want,
        )?;
        eprintln!("padded row {r} vs alone: max abs err {err:e}");
    }
    let want_seqs = ids(&g["batch.greedy.sequences"])?;
    let mut seqs = batch.clone();
    let mut logits = first;
    let mut done = [false; 2];
    for _ in 0..want_seqs[0].len() - batch[0].len() {
        let next: Vec<u32> = (0..2)
            .map(|r| if done[r] { 0 } else { argmax(&logits[r]) })
            .collect();
        for r in 0..2 {
            done[r] |= next[r] == 7;
            seqs[r].push(next[r]);
            mask[r].push(1);
        }
        logits = session.forward(&[vec![next[0]], vec![next[1]]], &mask)?;
    }
    ensure!(seqs == want_seqs, "padded-batch greedy sequences differ");
    Ok(())
}

/// Beam-style reorder: duplicated / swapped rows continue exactly like fresh rows.
#[test]
fn reorder_selects_cached_rows() -> Result<()> {
    let g = goldens()?;
    let model = Arc::new(model()?);
    let short = ids(&g["short.input_ids"])?.remove(0);
    let long = ids(&g["mm.input_ids"])?.remove(0)[..short.len()].to_vec();
    let mut session = LmSession::new(model.clone());
    let mask = vec![vec![1u8; short.len()]; 2];
    session.forward(&[short.clone(), long.clone()], &mask)?;
    session.reorder(&[1, 0, 1])?;
    let mask = vec![vec![1u8; short.len() + 1]; 3];
    let got = session.forward(&[vec![5], vec![5], vec![9]], &mask)?;
    for (row, (prompt, tok)) in [(&long, 5u32), (&short, 5), (&long, 9)].iter().enumerate() {
        let mut seq = prompt.to_vec();
        seq.push(*tok);
        let want = model
            .forward_last(&[seq], None, &mut model.new_cache())?
            .squeeze(0)?;
        assert_close(
            &format!("row {row}"),
            &Tensor::new(got[row].as_slice(), &Device::Cpu)?,
            &want,
        )?;
    }
    ensure!(
        session.reorder(&[3]).is_err(),
        "out-of-range reorder must fail"
    );
    session.reset();
    ensure!(session.cache().seq_len() == 0);
    Ok(())
}

/// Every checkpoint tensor is read by the loader (CONVENTIONS rule 6).
#[test]
fn every_checkpoint_tensor_is_read() -> Result<()> {
    let cfg = Config::from_dir(&tiny_model())?;
    let mut ckpt = Checkpoint::open(&tiny_model())?;
    ensure!(ckpt.files().len() == 2, "two shards via the index");
    LlamaForCausalLm::from_checkpoint(&cfg, &mut ckpt, DType::F32, &mio_tests::device()?)?;
    let unread = ckpt.unread();
    ensure!(unread.is_empty(), "tensors never read: {unread:?}");
    Ok(())
}

/// f16 loading runs and stays near f32 (bound: half-precision rounding of the
/// activations over two layers, measured 5.6e-3 on the short prompt). bf16 has no CPU
/// matmul in candle: refused there with a clear error; on a GPU it runs (bound: bf16's
/// 8-bit mantissa, 8× f16's rounding).
#[test]
fn half_precision_loads_close_to_f32() -> Result<()> {
    let g = goldens()?;
    let dev = mio_tests::device()?;
    let tokens = ids(&g["short.input_ids"])?;
    let max_err = |m: &LlamaForCausalLm| -> Result<f32> {
        let got = m.forward_logits(&tokens, None, &mut m.new_cache())?;
        let got = got.to_dtype(DType::F32)?.to_device(&Device::Cpu)?;
        Ok((got - &g["short.logits"])?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?)
    };
    let m = LlamaForCausalLm::load(&tiny_model(), DType::F16, &dev).context("load")?;
    let err = max_err(&m)?;
    eprintln!("F16: max abs err vs f32 golden {err:e}");
    ensure!(err < 2e-2, "f16 error {err}");
    let bf16 = LlamaForCausalLm::load(&tiny_model(), DType::BF16, &dev);
    if dev.is_cpu() {
        ensure!(
            matches!(bf16, Err(Error::Unsupported(_))),
            "bf16 on CPU: {bf16:?}"
        );
    } else {
        let err = max_err(&bf16?)?;
        eprintln!("BF16: max abs err vs f32 golden {err:e}");
        ensure!(err < 16e-2, "bf16 error {err}");
    }
    Ok(())
}
