//! GGUF round trip of the LM: the tiny model written as F32 / F16 / Q8_0 GGUF in a temp
//! dir and loaded back into the same model code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{DType, Device, Tensor};
use mio_models::lm::{
    write_gguf, Checkpoint, Config, GgufProgress, GgufType, GgufWeights, LlamaForCausalLm,
};
use mio_models::Error;
use mio_tests::{golden, tiny_model};

fn short_ids() -> Result<Vec<Vec<u32>>> {
    let g = candle_core::safetensors::load(golden("lm.safetensors"), &Device::Cpu)?;
    Ok(g["short.input_ids"]
        .to_dtype(DType::U32)?
        .to_vec2::<u32>()?)
}

fn write(dir: &Path, ty: GgufType) -> Result<PathBuf> {
    let out = dir.join(format!("mio-{ty:?}.gguf"));
    write_gguf(&tiny_model(), &out, ty, &mut |_| Ok(()))?;
    Ok(out)
}

fn logits(model: &LlamaForCausalLm) -> Result<Tensor> {
    Ok(model.forward_logits(&short_ids()?, None, &mut model.new_cache())?)
}

fn reference() -> Result<Tensor> {
    logits(&LlamaForCausalLm::load(
        &tiny_model(),
        DType::F32,
        &Device::Cpu,
    )?)
}

#[test]
fn f32_gguf_is_bit_identical_to_safetensors() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write(tmp.path(), GgufType::F32)?;
    let mut w = GgufWeights::open(&path, &Device::Cpu)?;
    ensure!(
        w.config() == &Config::from_dir(&tiny_model())?,
        "config round trip"
    );
    let cfg = w.config().clone();
    let model = LlamaForCausalLm::new(&cfg, &mut w)?;
    ensure!(
        w.unread().is_empty(),
        "GGUF tensors never read: {:?}",
        w.unread()
    );
    let got = logits(&model)?.flatten_all()?.to_vec1::<f32>()?;
    let want = reference()?.flatten_all()?.to_vec1::<f32>()?;
    ensure!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "not bit-identical"
    );
    Ok(())
}

/// The writer's q/k rows follow llama.cpp's `permute` (reshape(heads, 2, d/2, in),
/// swap axes 1 and 2), written here independently with tensor ops.
#[test]
fn q_and_k_rows_use_llama_cpp_order() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write(tmp.path(), GgufType::F32)?;
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file)?;
    let cfg = Config::from_dir(&tiny_model())?;
    let mut ckpt = Checkpoint::open(&tiny_model())?;
    let hd = cfg.head_dim();
    for (hf, gg, heads) in [
        (
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
            cfg.num_attention_heads,
        ),
        (
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
            cfg.num_key_value_heads,
        ),
    ] {
        let w = ckpt.read(hf, DType::F32, &Device::Cpu)?;
        let (rows, cols) = w.dims2()?;
        let want = w
            .reshape((heads, 2, hd / 2, cols))?
            .transpose(1, 2)?
            .reshape((rows, cols))?;
        let got = content
            .tensor(&mut file, gg, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
        ensure!(diff == 0.0, "{gg} rows not in llama.cpp order");
    }
    let arch = content.metadata["general.architecture"].to_string()?;
    ensure!(arch == "llama");
    ensure!(content.metadata["llama.attention.head_count_kv"].to_u32()? == 2);
    ensure!(content.metadata["mio.image_bos_id"].to_u32()? == 1005);
    Ok(())
}

/// Q8_0: weight matrices with 32-multiple rows are Q8_0 (ffn_down, 172 columns, falls back
/// to f16) and the logits stay close to f32.
///
/// Tolerance: Q8_0 rounds each weight to a step `d = max|w| / 127` per 32-block, an rms
/// error `d / √12 ≈ 0.5%` of the weights' std for Gaussian blocks (max ≈ 2.2σ). Through
/// the quantized embedding, 2 layers (7 matmuls each) and lm_head of this random,
/// 64-wide model that compounds to a measured rms logit error of 1.5% of the rms logit and
/// a max abs error of 8.5e-2 = 0.93% of the logit spread (9.14, −4.42 … 4.73); the
/// weight rounding dominates (dequantizing all weights to f32 gives 7.9e-2). Bounds, 2x
/// the measurement: max abs error < 2% of the spread, rms error < 3% of the rms logit, and
/// the argmax of every position identical.
#[test]
fn q8_0_gguf_is_close_to_f32() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write(tmp.path(), GgufType::Q8_0)?;
    let content = gguf_file::Content::read(&mut std::fs::File::open(&path)?)?;
    let ty = |n: &str| content.tensor_infos[n].ggml_dtype;
    ensure!(
        ty("blk.0.attn_q.weight") == GgmlDType::Q8_0 && ty("token_embd.weight") == GgmlDType::Q8_0
    );
    ensure!(
        ty("blk.0.ffn_down.weight") == GgmlDType::F16 && ty("output_norm.weight") == GgmlDType::F32
    );
    let model = LlamaForCausalLm::load_gguf(&path, &Device::Cpu)?;
    let got = logits(&model)?;
    let want = reference()?;
    let spread = (want.max_all()?.to_scalar::<f32>()? - want.min_all()?.to_scalar::<f32>()?).abs();
    let err = (&got - &want)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let rms = |t: &Tensor| -> Result<f32> { Ok(t.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?) };
    let rel_rms = rms(&(&got - &want)?)? / rms(&want)?;
    eprintln!("Q8_0: max abs logit err {err:e}, spread {spread}, rms err / rms logit {rel_rms:e}");
    ensure!(err < 0.02 * spread, "Q8_0 error {err} vs spread {spread}");
    ensure!(rel_rms < 0.03, "Q8_0 rms relative error {rel_rms}");
    let am = |t: &Tensor| {
        t.argmax(candle_core::D::Minus1)?
            .flatten_all()?
            .to_vec1::<u32>()
    };
    ensure!(am(&got)? == am(&want)?, "argmax differs");
    Ok(())
}

/// F16: 2-D weights f16, activations f32 (bound: f16 weight rounding, measured ~1e-3).
#[test]
fn f16_gguf_is_close_to_f32() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write(tmp.path(), GgufType::F16)?;
    let model = LlamaForCausalLm::load_gguf(&path, &Device::Cpu)?;
    let err = (logits(&model)? - reference()?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    eprintln!("F16 GGUF: max abs logit err {err:e}");
    ensure!(err < 1e-2, "F16 error {err}");
    Ok(())
}

#[test]
fn progress_reports_and_cancels() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("x.gguf");
    let mut seen: Vec<GgufProgress> = Vec::new();
    write_gguf(&tiny_model(), &out, GgufType::Q8_0, &mut |p| {
        seen.push(p.clone());
        Ok(())
    })?;
    let last = seen.last().unwrap();
    ensure!(seen.len() == 21 && last.done == 21 && last.bytes_done == last.bytes_total);
    ensure!(seen[0].tensor == "token_embd.weight" && last.tensor == "output.weight");
    let out2 = tmp.path().join("y.gguf");
    let err = write_gguf(&tiny_model(), &out2, GgufType::F32, &mut |p| {
        if p.done == 3 {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    ensure!(matches!(err, Error::Cancelled));
    let left: Vec<_> = std::fs::read_dir(tmp.path())?
        .map(|e| e.unwrap().file_name())
        .collect();
    ensure!(left.len() == 1, "cancelled conversion left files: {left:?}");
    Ok(())
}

#[test]
fn truncated_gguf_is_named() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write(tmp.path(), GgufType::Q8_0)?;
    let bytes = std::fs::read(&path)?;
    for cut in [bytes.len() - 10, 200] {
        std::fs::write(&path, &bytes[..cut])?;
        let err = LlamaForCausalLm::load_gguf(&path, &Device::Cpu).unwrap_err();
        ensure!(
            matches!(&err, Error::Checkpoint { path: p, .. } if p == &path),
            "cut {cut}: {err}"
        );
    }
    let err = LlamaForCausalLm::load_gguf(&tmp.path().join("none.gguf"), &Device::Cpu).unwrap_err();
    ensure!(matches!(err, Error::MissingFile(_)));
    Ok(())
}
