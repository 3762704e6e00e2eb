//! Shared helpers for the golden parity and end-to-end tests.

use std::path::PathBuf;

/// `tests/fixtures/` of this crate.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The tiny release-shaped model folder (`model/`: safetensors + index).
pub fn tiny_model() -> PathBuf {
    fixtures().join("model")
}

/// The tiny model's root as the real release ships it (`.bin` shards, no index).
pub fn release_layout() -> PathBuf {
    fixtures().join("release-layout")
}

/// A golden file under `fixtures/golden/`.
pub fn golden(name: &str) -> PathBuf {
    fixtures().join("golden").join(name)
}

/// Reads a golden JSON file.
pub fn golden_json(name: &str) -> anyhow::Result<serde_json::Value> {
    let path = golden(name);
    let text = std::fs::read_to_string(&path)?;
    Ok(serde_json::from_str(&text)?)
}
