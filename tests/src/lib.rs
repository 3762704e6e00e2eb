//! Shared helpers for the golden parity and end-to-end tests.

use std::path::PathBuf;

use candle_core::Device;

/// `tests/fixtures/` of this crate (`$MIO_FIXTURES_DIR` when set, for test binaries run
/// away from the checkout they were built in, e.g. on a GPU machine).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("MIO_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
    }
}

/// The device the numeric parity tests run their models on: `$MIO_TEST_DEVICE` = `cpu`
/// (the default), `cuda[:N]` or `metal[:N]` (the latter two need a build with that feature of
/// `mio-models`). Goldens stay on the CPU; outputs are compared there.
pub fn device() -> anyhow::Result<Device> {
    let name = std::env::var("MIO_TEST_DEVICE").unwrap_or_else(|_| "cpu".to_string());
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, n)) => (k, n.parse::<usize>()?),
        None => (name.as_str(), 0),
    };
    Ok(match kind {
        "cpu" => Device::Cpu,
        "cuda" => Device::new_cuda(ordinal)?,
        "metal" => Device::new_metal(ordinal)?,
        other => anyhow::bail!("MIO_TEST_DEVICE={other}: use cpu, cuda[:N] or metal[:N]"),
    })
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
