//! The tiny model's root as the real release ships it (`pytorch_model-0000K-of-00002.bin`
//! zip-pickles, no index, no `added_tokens.json`) loads through the same code path and gives
//! bit-identical results to the safetensors folder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor};
use mio_models::lm::{Checkpoint, Config, LlamaForCausalLm, ShardFormat};
use mio_models::release::ReleaseInfo;
use mio_tests::{golden, release_layout, tiny_model};

fn short_ids() -> Result<Vec<Vec<u32>>> {
    let g = candle_core::safetensors::load(golden("lm.safetensors"), &Device::Cpu)?;
    let ids = g.get("short.input_ids").expect("golden tensor");
    Ok(ids.to_dtype(DType::U32)?.to_vec2::<u32>()?)
}

fn logits(dir: &std::path::Path) -> Result<Tensor> {
    let m = LlamaForCausalLm::load(dir, DType::F32, &Device::Cpu)?;
    Ok(m.forward_logits(&short_ids()?, None, &mut m.new_cache())?)
}

#[test]
fn release_layout_logits_are_bit_identical_to_safetensors() -> Result<()> {
    let a = logits(&tiny_model())?.flatten_all()?.to_vec1::<f32>()?;
    let b = logits(&release_layout())?.flatten_all()?.to_vec1::<f32>()?;
    ensure!(a.len() == b.len() && !a.is_empty());
    let differing = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    ensure!(
        differing == 0,
        "{differing} logits differ between the two layouts"
    );
    Ok(())
}

#[test]
fn every_pickled_tensor_is_read_and_the_scan_reports_bins() -> Result<()> {
    let cfg = Config::from_dir(&release_layout())?;
    let mut ckpt = Checkpoint::open(&release_layout())?;
    ensure!(ckpt.files().len() == 2);
    LlamaForCausalLm::from_checkpoint(&cfg, &mut ckpt, DType::F32, &Device::Cpu)?;
    ensure!(ckpt.unread().is_empty(), "never read: {:?}", ckpt.unread());
    let info = ReleaseInfo::scan(&release_layout())?;
    let lm = info
        .components
        .iter()
        .find(|c| c.name == "lm")
        .expect("lm found");
    ensure!(
        lm.format == "pytorch-pickle" && lm.files.len() == 2,
        "{lm:?}"
    );
    let shards = mio_models::lm::find_shards(&release_layout())?;
    ensure!(shards.format == ShardFormat::PytorchBin && shards.index.is_none());
    Ok(())
}
