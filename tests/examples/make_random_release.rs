//! Writes a random-weight MIO LM with MIO-7B's exact shapes (Yi-6B: 32 layers, hidden
//! 4096, intermediate 11008, 32 heads, 4 KV heads, vocabulary 64000 + 6 + 8192 + 4096) as
//! a release folder: float16 safetensors shards with an index, `config.json`, and the
//! tiny model's tokenizer grown to 64000 text pieces (dummy pieces appended to
//! `tokenizer.model`, MIO's added tokens moved to their real ids). For benchmarks only:
//! `scripts/bench-lm.sh` runs it; the weights are never committed.
//!
//! `cargo run --release -p mio-tests --example make_random_release -- OUT_DIR [LAYERS]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

const TEXT: usize = 64000;
const HIDDEN: usize = 4096;
const INTER: usize = 11008;
const HEADS: usize = 32;
const KV: usize = 4;
const VOCAB: usize = TEXT + 6 + 8192 + 4096;
const SHARD_BYTES: usize = 2 << 30;

fn tensors(layers: usize) -> Vec<(String, Vec<usize>)> {
    let hd = HIDDEN / HEADS;
    let mut t = vec![("model.embed_tokens.weight".to_string(), vec![VOCAB, HIDDEN])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        t.extend([
            (format!("{p}.input_layernorm.weight"), vec![HIDDEN]),
            (format!("{p}.self_attn.q_proj.weight"), vec![HIDDEN, HIDDEN]),
            (
                format!("{p}.self_attn.k_proj.weight"),
                vec![KV * hd, HIDDEN],
            ),
            (
                format!("{p}.self_attn.v_proj.weight"),
                vec![KV * hd, HIDDEN],
            ),
            (format!("{p}.self_attn.o_proj.weight"), vec![HIDDEN, HIDDEN]),
            (format!("{p}.post_attention_layernorm.weight"), vec![HIDDEN]),
            (format!("{p}.mlp.gate_proj.weight"), vec![INTER, HIDDEN]),
            (format!("{p}.mlp.up_proj.weight"), vec![INTER, HIDDEN]),
            (format!("{p}.mlp.down_proj.weight"), vec![HIDDEN, INTER]),
        ]);
    }
    t.push(("model.norm.weight".to_string(), vec![HIDDEN]));
    t.push(("lm_head.weight".to_string(), vec![VOCAB, HIDDEN]));
    t
}

/// xorshift64* → f16 values: uniform in ±0.035 (std 0.02) for matrices, 1 for norms.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, out: &mut Vec<u8>, n: usize, norm: bool) {
        out.clear();
        out.reserve(n * 2);
        for _ in 0..n {
            let v = if norm {
                1.0f32
            } else {
                ((self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.0693
            };
            out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
}

fn write_shard(path: &Path, items: &[(String, Vec<usize>)], rng: &mut Rng) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (name, shape) in items {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            json!({"dtype": "F16", "shape": shape, "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    let mut h = serde_json::to_vec(&Value::Object(header))?;
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut w = BufWriter::with_capacity(1 << 24, File::create(path)?);
    w.write_all(&(h.len() as u64).to_le_bytes())?;
    w.write_all(&h)?;
    let mut buf = vec![];
    for (name, shape) in items {
        rng.fill(&mut buf, shape.iter().product(), shape.len() == 1);
        w.write_all(&buf)?;
        eprint!("\r{name:60}");
    }
    w.flush()?;
    Ok(())
}

/// Protobuf of one `SentencePiece` (piece, score, type NORMAL).
fn piece(text: &str, score: f32) -> Vec<u8> {
    let mut p = vec![0x0a, text.len() as u8];
    p.extend_from_slice(text.as_bytes());
    p.push(0x15);
    p.extend_from_slice(&score.to_le_bytes());
    p.extend_from_slice(&[0x18, 1]);
    let mut field = vec![0x0a];
    let mut len = p.len();
    while len >= 0x80 {
        field.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    field.push(len as u8);
    field.extend(p);
    field
}

fn tokenizer(tiny: &Path, out: &Path, tiny_text: usize) -> Result<()> {
    let mut model = std::fs::read(tiny.join("tokenizer.model"))?;
    for i in tiny_text..TEXT {
        model.extend(piece(&format!("<dummy{i}>"), -1e9));
    }
    std::fs::write(out.join("tokenizer.model"), model)?;
    let shift = |id: usize| {
        if id >= tiny_text {
            id + TEXT - tiny_text
        } else {
            id
        }
    };
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(tiny.join("tokenizer_config.json"))?)?;
    let dec = cfg["added_tokens_decoder"]
        .as_object()
        .context("added_tokens_decoder")?;
    let moved: serde_json::Map<String, Value> = dec
        .iter()
        .map(|(k, v)| (shift(k.parse().unwrap()).to_string(), v.clone()))
        .collect();
    cfg["added_tokens_decoder"] = Value::Object(moved);
    std::fs::write(out.join("tokenizer_config.json"), serde_json::to_vec(&cfg)?)?;
    for f in ["special_tokens_map.json", "generation_config.json"] {
        std::fs::copy(tiny.join(f), out.join(f))?;
    }
    Ok(())
}

fn config(tiny: &Path, out: &Path, layers: usize, tiny_text: usize) -> Result<()> {
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(tiny.join("config.json"))?)?;
    let shift = TEXT - tiny_text;
    for k in [
        "image_bos_id",
        "image_eos_id",
        "image_newline_id",
        "image_placeholder_id",
        "speech_bos_id",
        "speech_eos_id",
        "speech_placeholder_id",
    ] {
        cfg[k] = json!(cfg[k].as_u64().context("id")? as usize + shift);
    }
    cfg["_name_or_path"] = json!("MIO-7B-shaped random weights (benchmark only)");
    cfg["hidden_size"] = json!(HIDDEN);
    cfg["intermediate_size"] = json!(INTER);
    cfg["num_attention_heads"] = json!(HEADS);
    cfg["num_key_value_heads"] = json!(KV);
    cfg["num_hidden_layers"] = json!(layers);
    cfg["text_vocab_size"] = json!(TEXT);
    cfg["vocab_size"] = json!(VOCAB);
    cfg["torch_dtype"] = json!("float16");
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&cfg)?)?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = Path::new(
        args.get(1)
            .context("usage: make_random_release OUT_DIR [LAYERS]")?,
    );
    let layers: usize = args.get(2).map_or(Ok(32), |s| s.parse())?;
    let tiny = mio_tests::tiny_model();
    std::fs::create_dir_all(out)?;
    let tiny_cfg: Value = serde_json::from_slice(&std::fs::read(tiny.join("config.json"))?)?;
    let tiny_text = tiny_cfg["text_vocab_size"]
        .as_u64()
        .context("text_vocab_size")? as usize;
    config(&tiny, out, layers, tiny_text)?;
    tokenizer(&tiny, out, tiny_text)?;
    let all = tensors(layers);
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![vec![]];
    let mut size = 0;
    for t in all {
        let bytes = t.1.iter().product::<usize>() * 2;
        if size + bytes > SHARD_BYTES && !shards.last().unwrap().is_empty() {
            shards.push(vec![]);
            size = 0;
        }
        size += bytes;
        shards.last_mut().unwrap().push(t);
    }
    let n = shards.len();
    let mut map = serde_json::Map::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (i, items) in shards.iter().enumerate() {
        let name = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        write_shard(&out.join(&name), items, &mut rng)?;
        for (t, _) in items {
            map.insert(t.clone(), json!(name));
        }
    }
    let index = json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        out.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index)?,
    )?;
    eprintln!("\nwrote {} ({layers} layers, {n} shards)", out.display());
    Ok(())
}
