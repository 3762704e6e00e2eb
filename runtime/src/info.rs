//! `mio info`: what a release folder holds and how much memory each way of running it needs.

use anyhow::{Context, Result};
use mio_models::lm::Config;
use mio_models::release::ReleaseInfo;
use serde::Serialize;
use serde_json::json;

use crate::cli::Common;
use crate::commands::print;

/// Memory a way of running the LM needs (weights + a full-context KV cache in f16/f32).
#[derive(Debug, Clone, Serialize)]
pub struct MemoryEstimate {
    /// `f32`, `f16`, `q8_0`, `q4_k_m`.
    pub weights: &'static str,
    /// Bytes of LM weights.
    pub weight_bytes: u64,
    /// Bytes of the KV cache at full context, one sequence.
    pub kv_cache_bytes: u64,
    /// Their sum.
    pub total_bytes: u64,
}

/// Parameter count of the LM that `cfg` describes.
pub fn lm_parameters(cfg: &Config) -> u64 {
    let h = cfg.hidden_size as u64;
    let kv = (cfg.num_key_value_heads * cfg.head_dim()) as u64;
    let per_layer = h * h * 2 + h * kv * 2 + 3 * h * cfg.intermediate_size as u64 + 2 * h;
    let embed = cfg.vocab_size as u64 * h;
    let head = if cfg.tie_word_embeddings { 0 } else { embed };
    per_layer * cfg.num_hidden_layers as u64 + embed + head + h
}

/// Estimates for the usual weight formats (bits per weight as llama.cpp stores them).
pub fn estimates(cfg: &Config) -> Vec<MemoryEstimate> {
    let params = lm_parameters(cfg);
    let kv_elems = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim();
    let kv_elems = (kv_elems * cfg.max_position_embeddings) as u64;
    [
        ("f32", 32.0, 4),
        ("f16", 16.0, 2),
        ("q8_0", 8.5, 2),
        ("q4_k_m", 4.85, 2),
    ]
    .into_iter()
    .map(|(weights, bits, kv_bytes)| {
        let weight_bytes = (params as f64 * bits / 8.0) as u64;
        let kv_cache_bytes = kv_elems * kv_bytes;
        MemoryEstimate {
            weights,
            weight_bytes,
            kv_cache_bytes,
            total_bytes: weight_bytes + kv_cache_bytes,
        }
    })
    .collect()
}

fn gib(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

/// Runs `mio info`.
pub fn run(common: &Common) -> Result<()> {
    let info = ReleaseInfo::scan(&common.model)
        .with_context(|| format!("cannot read the model folder {}", common.model.display()))?;
    let cfg = Config::from_dir(&common.model).ok();
    let lm = cfg.as_ref().map(|c| {
        json!({
            "layers": c.num_hidden_layers,
            "hidden_size": c.hidden_size,
            "heads": c.num_attention_heads,
            "kv_heads": c.num_key_value_heads,
            "vocab_size": c.vocab_size,
            "context_length": c.max_position_embeddings,
            "parameters": lm_parameters(c),
        })
    });
    let memory = cfg.as_ref().map(estimates).unwrap_or_default();
    // The media codecs compute in f32 whatever their files hold, each loaded on first use.
    let codecs: Vec<(String, u64)> = info
        .components
        .iter()
        .filter(|c| ["seed-tokenizer", "speech-tokenizer", "unclip"].contains(&c.name.as_str()))
        .filter_map(|c| Some((c.name.clone(), c.parameters? * 4)))
        .collect();
    let codec_memory: Vec<_> = codecs
        .iter()
        .map(|(name, bytes)| json!({ "component": name, "f32_weight_bytes": bytes }))
        .collect();
    let value = json!({ "root": info.root, "components": info.components, "missing": info.missing,
                        "lm": lm, "memory_estimate": memory,
                        "codec_memory_estimate": codec_memory });
    print(common, value, || {
        let mut s = format!("MIO release at {}\n", info.root.display());
        for c in &info.components {
            let params = c
                .parameters
                .map(|p| format!(", {p} parameters"))
                .unwrap_or_default();
            s += &format!(
                "  {:<17} {:<15} {:>10}  [{}]{params}\n",
                c.name,
                c.format,
                gib(c.bytes),
                c.dtypes.join(",")
            );
        }
        for m in &info.missing {
            s += &format!("  missing: {m}\n");
        }
        for m in &memory {
            s += &format!(
                "  LM in {:<7} needs about {} ({} weights + {} KV cache at full context)\n",
                m.weights,
                gib(m.total_bytes),
                gib(m.weight_bytes),
                gib(m.kv_cache_bytes)
            );
        }
        for (name, bytes) in &codecs {
            s += &format!(
                "  {name:<17} needs about {} of f32 weights, loaded on first use\n",
                gib(*bytes)
            );
        }
        s.trim_end().to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mio_7b_has_about_seven_billion_parameters() {
        let p = lm_parameters(&Config::mio_7b());
        // Yi-6B is 6.06e9 with a 64000 vocabulary; MIO adds 12294 rows to embed and head.
        assert!((6_100_000_000..6_300_000_000).contains(&p), "{p}");
        let f16 = &estimates(&Config::mio_7b())[1];
        assert!(
            f16.weight_bytes > 11 << 30 && f16.weight_bytes < 12 << 30,
            "{}",
            f16.weight_bytes
        );
    }
}
