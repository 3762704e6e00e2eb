//! Finding and validating the LM checkpoint of a release folder: the fixture layouts and
//! broken temp copies of it (missing folder / shard, index naming a missing file,
//! truncated or corrupt shard, config/tensor shape mismatch).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use anyhow::{ensure, Result};
use candle_core::{DType, Device};
use mio_models::lm::{find_shards, Checkpoint, Config, LlamaForCausalLm, ShardFormat};
use mio_models::Error;
use mio_tests::{release_layout, tiny_model};

const SHARD1: &str = "model-00001-of-00002.safetensors";
const SHARD2: &str = "model-00002-of-00002.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// A temp copy of the fixture's LM files (config, index, shards).
fn copy_lm(with_index: bool) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("model");
    std::fs::create_dir(&dir)?;
    let mut files = vec!["config.json", "generation_config.json", SHARD1, SHARD2];
    if with_index {
        files.push(INDEX);
    }
    for f in files {
        std::fs::copy(tiny_model().join(f), dir.join(f))?;
    }
    Ok((tmp, dir))
}

fn load(dir: &Path) -> mio_models::Result<LlamaForCausalLm> {
    LlamaForCausalLm::load(dir, DType::F32, &Device::Cpu)
}

#[test]
fn fixture_layouts_are_found() -> Result<()> {
    let shards = find_shards(&tiny_model())?;
    ensure!(shards.format == ShardFormat::Safetensors && shards.files.len() == 2);
    ensure!(shards.index.is_some());
    let (_tmp, dir) = copy_lm(false)?;
    let by_name = find_shards(&dir)?;
    ensure!(
        by_name.index.is_none() && by_name.files.len() == 2,
        "{by_name:?}"
    );
    load(&dir)?;
    let release = find_shards(&release_layout())?;
    ensure!(
        release.format == ShardFormat::PytorchBin && release.files.len() == 2,
        "{release:?}"
    );
    load(&release_layout())?;
    Ok(())
}

#[test]
fn missing_folder_is_reported() -> Result<()> {
    let err = load(Path::new("/nonexistent/mio-model")).unwrap_err();
    ensure!(
        matches!(&err, Error::MissingFile(p) if p.ends_with("mio-model")),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_shard_is_named() -> Result<()> {
    for with_index in [true, false] {
        let (_tmp, dir) = copy_lm(with_index)?;
        std::fs::remove_file(dir.join(SHARD2))?;
        let err = load(&dir).unwrap_err();
        ensure!(
            matches!(&err, Error::MissingFile(p) if p.ends_with(SHARD2)),
            "{err}"
        );
    }
    Ok(())
}

#[test]
fn index_naming_a_missing_file_is_named() -> Result<()> {
    let (_tmp, dir) = copy_lm(true)?;
    let text = std::fs::read_to_string(dir.join(INDEX))?;
    let text = text.replacen(SHARD2, "model-00003-of-00002.safetensors", 1);
    std::fs::write(dir.join(INDEX), text)?;
    let err = load(&dir).unwrap_err();
    ensure!(
        matches!(&err, Error::MissingFile(p) if p.ends_with("model-00003-of-00002.safetensors")),
        "{err}"
    );
    Ok(())
}

#[test]
fn index_misplacing_a_tensor_is_reported() -> Result<()> {
    let (_tmp, dir) = copy_lm(true)?;
    let text = std::fs::read_to_string(dir.join(INDEX))?;
    let text = text.replacen(
        &format!("\"lm_head.weight\": \"{SHARD2}\""),
        &format!("\"lm_head.weight\": \"{SHARD1}\""),
        1,
    );
    std::fs::write(dir.join(INDEX), text)?;
    let err = load(&dir).unwrap_err();
    ensure!(
        matches!(&err, Error::Checkpoint { path, .. } if path.ends_with(SHARD1)),
        "{err}"
    );
    Ok(())
}

#[test]
fn truncated_or_corrupt_shard_is_named() -> Result<()> {
    let (_tmp, dir) = copy_lm(true)?;
    let path = dir.join(SHARD1);
    let bytes = std::fs::read(&path)?;
    for cut in [bytes.len() - 1, bytes.len() / 2, 100, 4] {
        std::fs::write(&path, &bytes[..cut])?;
        let err = load(&dir).unwrap_err();
        ensure!(
            matches!(&err, Error::Checkpoint { path: p, .. } if p.ends_with(SHARD1)),
            "cut {cut}: {err}"
        );
    }
    let mut corrupt = bytes.clone();
    corrupt[8..16].copy_from_slice(b"garbage!");
    std::fs::write(&path, &corrupt)?;
    let err = load(&dir).unwrap_err();
    ensure!(
        matches!(&err, Error::Checkpoint { path: p, .. } if p.ends_with(SHARD1)),
        "{err}"
    );
    let mut huge = bytes;
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &huge)?;
    let err = load(&dir).unwrap_err();
    ensure!(matches!(&err, Error::Checkpoint { .. }), "{err}");
    Ok(())
}

#[test]
fn config_tensor_shape_mismatch_is_reported() -> Result<()> {
    let (_tmp, dir) = copy_lm(true)?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(
        &path,
        text.replace("\"intermediate_size\": 172", "\"intermediate_size\": 160"),
    )?;
    let err = load(&dir).unwrap_err();
    ensure!(
        matches!(&err, Error::ShapeMismatch { name, expected, got }
            if name == "model.layers.0.mlp.gate_proj.weight" && expected == &[160, 64] && got == &[172, 64]),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_tensor_is_reported() -> Result<()> {
    let mut cfg = Config::from_dir(&tiny_model())?;
    cfg.num_hidden_layers = 3;
    let mut ckpt = Checkpoint::open(&tiny_model())?;
    let err =
        LlamaForCausalLm::from_checkpoint(&cfg, &mut ckpt, DType::F32, &Device::Cpu).unwrap_err();
    ensure!(
        matches!(&err, Error::MissingTensor(n) if n.starts_with("model.layers.2.")),
        "{err}"
    );
    Ok(())
}

#[test]
fn bad_config_is_reported() -> Result<()> {
    let (_tmp, dir) = copy_lm(true)?;
    let path = dir.join("config.json");
    std::fs::write(&path, "{ not json")?;
    ensure!(matches!(load(&dir).unwrap_err(), Error::Json { .. }));
    std::fs::remove_file(&path)?;
    let err = load(&dir).unwrap_err();
    ensure!(
        matches!(&err, Error::MissingFile(p) if p.ends_with("config.json")),
        "{err}"
    );
    Ok(())
}

/// The serde structs mirror `config.json` / `generation_config.json` field for field:
/// every key of the fixture files survives a parse + serialize round trip unchanged.
#[test]
fn config_files_round_trip_field_for_field() -> Result<()> {
    use mio_models::lm::{GenerationConfigFile, LlamaConfigFile};
    for (name, reserialized) in [
        (
            "config.json",
            serde_json::to_value(LlamaConfigFile::from_dir(&tiny_model())?)?,
        ),
        (
            "generation_config.json",
            serde_json::to_value(GenerationConfigFile::from_dir(&tiny_model())?)?,
        ),
    ] {
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(tiny_model().join(name))?)?;
        for (key, value) in original.as_object().unwrap() {
            ensure!(
                reserialized.get(key) == Some(value),
                "{name}: key {key} not mirrored"
            );
        }
    }
    let cfg = Config::from_dir(&tiny_model())?;
    ensure!(
        cfg.vocab_size == 13294 && cfg.mio.text_vocab_size == 1000 && cfg.mio.image_bos_id == 1005
    );
    ensure!(cfg.num_key_value_heads == 2 && cfg.head_dim() == 16 && cfg.rope_theta == 5e6);
    Ok(())
}
