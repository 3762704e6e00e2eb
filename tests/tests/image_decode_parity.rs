//! Golden parity of the unCLIP image decoder (`models/src/image_decoder`) against the
//! reference `ImageTokenizer.decode` (diffusers 0.20.2) on the tiny fixture model:
//! `golden/image_encode.safetensors` (decoder-side embedding) and
//! `golden/image_decode.safetensors` (noising, every UNet call, scheduler steps, VAE, image).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor};
use mio_models::image_decoder::SeedDecodeHead;
use mio_tests::{golden, tiny_model};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn load(name: &str) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(golden(name), &Device::Cpu)?)
}

/// Asserts `|got - want| <= ATOL + RTOL |want|` elementwise; returns the max abs error.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<f32> {
    ensure!(
        got.dims() == want.dims(),
        "{what}: shape {:?} vs {:?}",
        got.dims(),
        want.dims()
    );
    let got = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let want = want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut max = 0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = (g - w).abs();
        ensure!(
            err <= ATOL + RTOL * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err})"
        );
        max = max.max(err);
    }
    println!("{what}: max abs err {max:e}");
    Ok(max)
}

fn decode_head() -> Result<SeedDecodeHead> {
    let path = tiny_model().join("seed-tokenizer-2/seed_quantizer.pt");
    Ok(SeedDecodeHead::load(&path, &Device::Cpu)?)
}

#[test]
fn decode_head_matches_golden_embedding() -> Result<()> {
    let head = decode_head()?;
    let g = load("image_encode.safetensors")?;
    for k in ["img0", "img1"] {
        let codes = g[&format!("{k}.codes")].to_dtype(DType::U32)?;
        let entries = head.codebook_entries(&codes)?;
        assert_close(
            "codebook_entries",
            &entries,
            &g[&format!("{k}.codebook_entries")],
        )?;
        let up = head.decode_task(&entries)?;
        assert_close(
            "decode_task_out",
            &up,
            &g[&format!("{k}.dec.decode_task_out")],
        )?;
        let blocks = head.blocks(&up)?;
        assert_close(
            "blocks_image_out",
            &blocks,
            &g[&format!("{k}.dec.blocks_image_out")],
        )?;
        let down = head.image_down(&blocks)?;
        assert_close(
            "image_down_out",
            &down,
            &g[&format!("{k}.dec.image_down_out")],
        )?;
        let emb = head.forward(&codes)?;
        assert_close("image_embeds", &emb, &g[&format!("{k}.image_embeds")])?;
    }
    let dec = load("image_decode.safetensors")?;
    let emb = head.forward(&dec["codes"].to_dtype(DType::U32)?)?;
    assert_close("decode image_embeds", &emb, &dec["image_embeds"])?;
    Ok(())
}

#[test]
fn decode_head_rejects_out_of_range_codes() -> Result<()> {
    let head = decode_head()?;
    let n = head.config().n_embed as u32;
    let codes = Tensor::new(&[[0u32, n]], &Device::Cpu)?;
    ensure!(head.forward(&codes).is_err());
    Ok(())
}
