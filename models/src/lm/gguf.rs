//! The LM in GGUF: llama.cpp's tensor names, metadata keys and q/k row order.
//!
//! Ports the naming and the `permute` of llama.cpp's `convert_hf_to_gguf.py`
//! (`LlamaModel`): `model.embed_tokens` → `token_embd`, `model.layers.N.self_attn.q_proj` →
//! `blk.N.attn_q`, … , `model.norm` → `output_norm`, `lm_head` → `output` (absent when the
//! embeddings are tied). llama.cpp's rotary is interleaved, so the converter reorders the
//! rows of q and k within each head: llama.cpp row `h·d + 2i + s` holds HF row
//! `h·d + s·d/2 + i`. [`GgufWeights`] undoes that on the raw bytes at load (each row of a
//! ggml tensor is a contiguous run of whole blocks, so this is exact for quantized types
//! too) and the model keeps its non-interleaved rotary: an F32 GGUF gives bit-identical
//! logits to the safetensors it came from. Metadata: `general.architecture = llama`,
//! `llama.*` sizes, and MIO's config keys under `mio.` (the writer is `gguf_write.rs`).
//! GGUF models run with f32 activations; F32/F16 weights stay dense, quantized ones go
//! through `QMatMul`, a quantized embedding is dequantized to f16 at load (rows are cast to
//! f32 as they are gathered).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{ggml_file, GgmlDType, QMatMul};
use candle_core::{DType, Device, Tensor};

use super::config::{Config, MioTokenConfig};
use super::linear::Linear;
use super::loader::{check_shape, LoadWeights};
use super::model::LlamaForCausalLm;
use super::qgemv::PackedQ4K;
use crate::{Error, Result};

/// llama.cpp's name for an HF tensor name of the LM.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".to_string()),
        "model.norm.weight" => return Some("output_norm.weight".to_string()),
        "lm_head.weight" => return Some("output.weight".to_string()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let part = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Heads whose rows llama.cpp reorders in `hf` (q: all heads, k: kv heads), if any.
pub(crate) fn permuted_heads(hf: &str, cfg: &Config) -> Option<usize> {
    if hf.ends_with("self_attn.q_proj.weight") {
        Some(cfg.num_attention_heads)
    } else if hf.ends_with("self_attn.k_proj.weight") {
        Some(cfg.num_key_value_heads)
    } else {
        None
    }
}

/// Reorders the `n_rows` rows of `bytes` within each of `n_head` heads: HF → llama.cpp
/// order, or back with `inverse`.
pub(crate) fn permute_rows(
    bytes: &[u8],
    n_rows: usize,
    n_head: usize,
    inverse: bool,
) -> Result<Vec<u8>> {
    let bad =
        || Error::InvalidArgument(format!("cannot permute {n_rows} rows into {n_head} heads"));
    if n_rows == 0
        || n_head == 0
        || !n_rows.is_multiple_of(2 * n_head)
        || !bytes.len().is_multiple_of(n_rows)
    {
        return Err(bad());
    }
    let (row, hd) = (bytes.len() / n_rows, n_rows / n_head);
    let mut out = vec![0u8; bytes.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for s in 0..2 {
                let llama = h * hd + 2 * i + s;
                let hf = h * hd + s * hd / 2 + i;
                let (src, dst) = if inverse { (llama, hf) } else { (hf, llama) };
                let from = bytes.get(src * row..(src + 1) * row).ok_or_else(bad)?;
                out.get_mut(dst * row..(dst + 1) * row)
                    .ok_or_else(bad)?
                    .copy_from_slice(from);
            }
        }
    }
    Ok(out)
}

fn meta_u64(content: &Content, key: &str) -> Option<u64> {
    match content.metadata.get(key)? {
        Value::U8(v) => Some(u64::from(*v)),
        Value::U16(v) => Some(u64::from(*v)),
        Value::U32(v) => Some(u64::from(*v)),
        Value::U64(v) => Some(*v),
        Value::I32(v) => u64::try_from(*v).ok(),
        Value::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn meta_f64(content: &Content, key: &str) -> Option<f64> {
    match content.metadata.get(key)? {
        Value::F32(v) => Some(f64::from(*v)),
        Value::F64(v) => Some(*v),
        _ => None,
    }
}

/// The runtime config stored in a GGUF's metadata.
pub fn config_from_gguf(content: &Content, path: &Path) -> Result<Config> {
    let arch = content
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok());
    if arch.map(String::as_str) != Some("llama") {
        return Err(Error::Unsupported(format!(
            "{}: general.architecture is not llama",
            path.display()
        )));
    }
    let need = |key: &str| -> Result<usize> {
        meta_u64(content, key)
            .map(|v| v as usize)
            .ok_or_else(|| Error::checkpoint(path, format!("metadata {key} is missing")))
    };
    let id = |key: &str| meta_u64(content, key).map(|v| v as u32);
    let heads = need("llama.attention.head_count")?;
    let text = need("mio.text_vocab_size")?;
    let d = MioTokenConfig::standard(text);
    let mio = MioTokenConfig {
        text_vocab_size: text,
        num_new_special_tokens: need("mio.num_new_special_tokens")?,
        visual_vocab_size: need("mio.visual_vocab_size")?,
        speech_vocab_size: need("mio.speech_vocab_size")?,
        image_bos_id: id("mio.image_bos_id").unwrap_or(d.image_bos_id),
        image_eos_id: id("mio.image_eos_id").unwrap_or(d.image_eos_id),
        image_newline_id: id("mio.image_newline_id").unwrap_or(d.image_newline_id),
        image_placeholder_id: id("mio.image_placeholder_id").unwrap_or(d.image_placeholder_id),
        speech_bos_id: id("mio.speech_bos_id").unwrap_or(d.speech_bos_id),
        speech_eos_id: id("mio.speech_eos_id").unwrap_or(d.speech_eos_id),
        speech_placeholder_id: id("mio.speech_placeholder_id").unwrap_or(d.speech_placeholder_id),
    };
    let cfg = Config {
        vocab_size: need("llama.vocab_size")?,
        hidden_size: need("llama.embedding_length")?,
        intermediate_size: need("llama.feed_forward_length")?,
        num_hidden_layers: need("llama.block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: meta_u64(content, "llama.attention.head_count_kv")
            .map_or(heads, |v| v as usize),
        max_position_embeddings: need("llama.context_length")?,
        rms_norm_eps: meta_f64(content, "mio.rms_norm_eps")
            .or_else(|| meta_f64(content, "llama.attention.layer_norm_rms_epsilon"))
            .ok_or_else(|| {
                Error::checkpoint(
                    path,
                    "metadata llama.attention.layer_norm_rms_epsilon is missing",
                )
            })?,
        rope_theta: meta_f64(content, "mio.rope_theta")
            .or_else(|| meta_f64(content, "llama.rope.freq_base"))
            .unwrap_or(10000.0),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        bos_token_id: id("mio.bos_token_id"),
        eos_token_id: id("mio.eos_token_id"),
        pad_token_id: id("mio.pad_token_id"),
        mio,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The LM weights of a GGUF file, served under their HF names.
#[derive(Debug)]
pub struct GgufWeights {
    path: PathBuf,
    file: File,
    file_len: u64,
    content: Content,
    cfg: Config,
    dev: Device,
    read: BTreeSet<String>,
}

impl GgufWeights {
    /// Opens `path` and reads its metadata and tensor table.
    pub fn open(path: &Path, dev: &Device) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile(path.to_path_buf()));
        }
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let content =
            Content::read(&mut file).map_err(|e| Error::checkpoint(path, e.to_string()))?;
        let cfg = config_from_gguf(&content, path)?;
        Ok(GgufWeights {
            path: path.to_path_buf(),
            file,
            file_len,
            content,
            cfg,
            dev: dev.clone(),
            read: BTreeSet::new(),
        })
    }

    /// The config from the metadata.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The parsed header (metadata and tensor table).
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// GGUF tensors never read so far, sorted.
    pub fn unread(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .content
            .tensor_infos
            .keys()
            .map(String::as_str)
            .collect();
        names.retain(|n| !self.read.contains(*n));
        names.sort_unstable();
        names
    }

    /// Raw bytes of HF tensor `hf` in HF row order, its ggml type, checked against `shape`.
    fn raw(&mut self, hf: &str, shape: &[usize]) -> Result<(Vec<u8>, GgmlDType)> {
        let name = gguf_name(hf).ok_or_else(|| Error::MissingTensor(hf.to_string()))?;
        let info = self
            .content
            .tensor_infos
            .get(&name)
            .ok_or_else(|| Error::MissingTensor(name.clone()))?;
        check_shape(&name, shape, info.shape.dims())?;
        let dtype = info.ggml_dtype;
        let (elems, block) = (shape.iter().product::<usize>(), dtype.block_size());
        if shape
            .last()
            .is_some_and(|&cols| !cols.is_multiple_of(block))
        {
            return Err(Error::checkpoint(
                &self.path,
                format!("{name}: rows are not whole {dtype:?} blocks"),
            ));
        }
        let size = elems / block * dtype.type_size();
        let start = self.content.tensor_data_offset.saturating_add(info.offset);
        if start.saturating_add(size as u64) > self.file_len {
            return Err(Error::checkpoint(
                &self.path,
                format!(
                    "truncated: tensor {name} needs bytes {start}..+{size} of a {}-byte file",
                    self.file_len
                ),
            ));
        }
        // Exactly `size` bytes (ggml_file::qtensor_from_ggml relies on it); the allocator's
        // alignment (>= 8) covers every ggml block type, as in candle's own GGUF reader.
        let mut bytes = vec![0u8; size];
        self.file
            .seek(SeekFrom::Start(start))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| {
                Error::checkpoint(
                    &self.path,
                    format!("reading tensor {name} ({size} bytes): {e}"),
                )
            })?;
        if let (Some(n_head), Some(&rows)) = (permuted_heads(hf, &self.cfg), shape.first()) {
            bytes = permute_rows(&bytes, rows, n_head, true)?;
        }
        self.read.insert(name);
        Ok((bytes, dtype))
    }
}

fn float_dtype(dtype: GgmlDType) -> Option<DType> {
    match dtype {
        GgmlDType::F32 => Some(DType::F32),
        GgmlDType::F16 => Some(DType::F16),
        GgmlDType::BF16 => Some(DType::BF16),
        _ => None,
    }
}

impl LoadWeights for GgufWeights {
    fn device(&self) -> &Device {
        &self.dev
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let (bytes, dtype) = self.raw(name, &[out, inp])?;
        Ok(match float_dtype(dtype) {
            Some(dt) => Linear::Dense(Tensor::from_raw_buffer(&bytes, dt, &[out, inp], &self.dev)?),
            None if dtype == GgmlDType::Q4K && PackedQ4K::available(&self.dev) => {
                Linear::PackedQ4K(std::sync::Arc::new(PackedQ4K::pack(&bytes, out, inp)?))
            }
            None => {
                let q = ggml_file::qtensor_from_ggml(dtype, &bytes, vec![out, inp], &self.dev)?;
                Linear::Quantized(QMatMul::from_qtensor(q)?)
            }
        })
    }

    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let (bytes, gdtype) = self.raw(name, shape)?;
        let t = match float_dtype(gdtype) {
            Some(dt) => Tensor::from_raw_buffer(&bytes, dt, shape, &self.dev)?,
            None => ggml_file::qtensor_from_ggml(gdtype, &bytes, shape.to_vec(), &self.dev)?
                .dequantize(&self.dev)?,
        };
        Ok(t.to_dtype(dtype)?)
    }

    /// A float table as stored (cast to f32); a quantized one dequantized row block by row
    /// block into f16, so a 7B vocabulary takes 0.6 GiB instead of 1.2 GiB and no f32 copy
    /// of the whole table ever exists.
    fn embedding(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (bytes, gdtype) = self.raw(name, shape)?;
        if let Some(dt) = float_dtype(gdtype) {
            return Ok(Tensor::from_raw_buffer(&bytes, dt, shape, &self.dev)?.to_dtype(DType::F32)?);
        }
        let (rows, cols) = match shape {
            [r, c] => (*r, *c),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "{name}: an embedding table is 2-D"
                )))
            }
        };
        let row_bytes = cols / gdtype.block_size() * gdtype.type_size();
        let chunk_rows = 4096usize;
        let mut out: Vec<half::f16> = Vec::with_capacity(rows * cols);
        for start in (0..rows).step_by(chunk_rows) {
            let n = chunk_rows.min(rows - start);
            let part = bytes
                .get(start * row_bytes..(start + n) * row_bytes)
                .ok_or_else(|| Error::checkpoint(&self.path, format!("{name}: short table")))?;
            let q = ggml_file::qtensor_from_ggml(gdtype, part, vec![n, cols], &Device::Cpu)?;
            let f = q
                .dequantize(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            out.extend(f.into_iter().map(half::f16::from_f32));
        }
        drop(bytes);
        Ok(Tensor::from_vec(out, shape, &self.dev)?)
    }
}

impl LlamaForCausalLm {
    /// Loads a GGUF written by [`super::gguf_write::write_gguf`] (f32 activations).
    pub fn load_gguf(path: &Path, dev: &Device) -> Result<Self> {
        let mut w = GgufWeights::open(path, dev)?;
        let cfg = w.config().clone();
        LlamaForCausalLm::new(&cfg, &mut w)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.q_proj.weight").unwrap(),
            "blk.12.attn_q.weight"
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(),
            "blk.0.ffn_down.weight"
        );
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight").is_none());
    }

    #[test]
    fn permutation_matches_converter_and_inverts() {
        // One head of 4 rows (d = 4): HF rows [a0 a1 | b0 b1] -> llama.cpp [a0 b0 a1 b1].
        let rows: Vec<u8> = vec![0, 1, 2, 3, 10, 11, 12, 13];
        let fwd = permute_rows(&rows, 8, 2, false).unwrap();
        assert_eq!(fwd, vec![0, 2, 1, 3, 10, 12, 11, 13]);
        assert_eq!(permute_rows(&fwd, 8, 2, true).unwrap(), rows);
        assert!(permute_rows(&rows, 8, 3, false).is_err());
    }
}
