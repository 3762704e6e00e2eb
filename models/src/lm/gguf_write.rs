//! Stream-converting a release folder's LM to GGUF, tensor by tensor.
//!
//! The whole header (metadata and tensor table) follows from the config alone, so it is
//! written first; then each tensor is read from the checkpoint, permuted (q/k rows, see
//! `gguf.rs`), converted and written before the next one is read: peak memory is one
//! tensor. Types: `F32` keeps everything f32; `F16` stores 2-D weights as f16; `Q8_0`
//! stores 2-D weights as Q8_0, except those whose rows are not whole 32-element blocks
//! (then f16, as llama.cpp's quantizer falls back). Norms always stay f32.
//! The file is written to `<out>.partial` and renamed when complete.
//! GGUF v3 layout (ggml `docs/gguf.md`): magic, version, counts, metadata key/values,
//! tensor infos (dims innermost first, type, offset), data aligned to 32 bytes.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::config::Config;
use super::gguf::{gguf_name, permute_rows, permuted_heads};
use super::loader::expected_tensors;
use super::weights::Checkpoint;
use crate::{Error, Result};

const ALIGNMENT: u64 = 32;

/// Storage type of the GGUF's weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    /// Everything f32 (bit-exact to an f32 checkpoint).
    F32,
    /// Weight matrices f16.
    F16,
    /// Weight matrices Q8_0 (8-bit blocks of 32 with an f16 scale).
    Q8_0,
    /// llama.cpp's Q5_K_M mix: Q5_K, with Q6_K for `attn_v`, `ffn_down` and `output`.
    Q5KM,
    /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for `attn_v`, `ffn_down` and `output`.
    Q4KM,
}

impl std::str::FromStr for GgufType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(GgufType::F32),
            "f16" => Ok(GgufType::F16),
            "q8_0" => Ok(GgufType::Q8_0),
            "q5_k_m" => Ok(GgufType::Q5KM),
            "q4_k_m" => Ok(GgufType::Q4KM),
            other => Err(Error::InvalidArgument(format!(
                "unknown GGUF type {other:?}: use f32, f16, q8_0, q5_k_m or q4_k_m"
            ))),
        }
    }
}

impl GgufType {
    /// llama.cpp `general.file_type` (`LLAMA_FTYPE_*`).
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q8_0 => 7,
            GgufType::Q4KM => 15,
            GgufType::Q5KM => 17,
        }
    }

    /// The ggml type of the tensor `gguf` (a GGUF name) of `shape`. Rows that are not whole
    /// blocks of the wanted type fall back to Q8_0, then f16, as llama.cpp's quantizer does.
    fn for_tensor(self, gguf: &str, shape: &[usize]) -> GgmlDType {
        let [.., cols] = shape else {
            return GgmlDType::F32;
        };
        if shape.len() < 2 {
            return GgmlDType::F32;
        }
        let sensitive =
            gguf.contains("attn_v") || gguf.contains("ffn_down") || gguf == "output.weight";
        let wanted = match self {
            GgufType::F32 => return GgmlDType::F32,
            GgufType::F16 => return GgmlDType::F16,
            GgufType::Q8_0 => GgmlDType::Q8_0,
            GgufType::Q5KM | GgufType::Q4KM if sensitive => GgmlDType::Q6K,
            GgufType::Q5KM => GgmlDType::Q5K,
            GgufType::Q4KM => GgmlDType::Q4K,
        };
        [wanted, GgmlDType::Q8_0]
            .into_iter()
            .find(|t| cols.is_multiple_of(t.block_size()))
            .unwrap_or(GgmlDType::F16)
    }
}

/// Where a conversion stands, after each written tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufProgress {
    /// Tensors written so far.
    pub done: usize,
    /// Tensors in all.
    pub total: usize,
    /// GGUF name of the tensor just written.
    pub tensor: String,
    /// Bytes of tensor data written so far.
    pub bytes_done: u64,
    /// Bytes of tensor data in all.
    pub bytes_total: u64,
}

struct Planned {
    hf: String,
    gguf: String,
    shape: Vec<usize>,
    dtype: GgmlDType,
    offset: u64,
    size: u64,
}

/// The metadata a GGUF of `cfg` carries: `general.*`, `llama.*` and `mio.*` keys.
pub fn gguf_metadata(cfg: &Config, ty: GgufType) -> Vec<(String, Value)> {
    let u = |v: usize| Value::U32(v as u32);
    let m = &cfg.mio;
    let mut out = vec![
        ("general.architecture", Value::String("llama".to_string())),
        ("general.name", Value::String("MIO".to_string())),
        ("general.file_type", Value::U32(ty.file_type())),
        ("llama.block_count", u(cfg.num_hidden_layers)),
        ("llama.context_length", u(cfg.max_position_embeddings)),
        ("llama.embedding_length", u(cfg.hidden_size)),
        ("llama.feed_forward_length", u(cfg.intermediate_size)),
        ("llama.attention.head_count", u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u(cfg.num_key_value_heads)),
        ("llama.rope.dimension_count", u(cfg.head_dim())),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.vocab_size", u(cfg.vocab_size)),
        ("mio.rms_norm_eps", Value::F64(cfg.rms_norm_eps)),
        ("mio.rope_theta", Value::F64(cfg.rope_theta)),
        (
            "mio.tie_word_embeddings",
            Value::Bool(cfg.tie_word_embeddings),
        ),
        ("mio.text_vocab_size", u(m.text_vocab_size)),
        ("mio.num_new_special_tokens", u(m.num_new_special_tokens)),
        ("mio.visual_vocab_size", u(m.visual_vocab_size)),
        ("mio.speech_vocab_size", u(m.speech_vocab_size)),
        ("mio.image_bos_id", Value::U32(m.image_bos_id)),
        ("mio.image_eos_id", Value::U32(m.image_eos_id)),
        ("mio.image_newline_id", Value::U32(m.image_newline_id)),
        (
            "mio.image_placeholder_id",
            Value::U32(m.image_placeholder_id),
        ),
        ("mio.speech_bos_id", Value::U32(m.speech_bos_id)),
        ("mio.speech_eos_id", Value::U32(m.speech_eos_id)),
        (
            "mio.speech_placeholder_id",
            Value::U32(m.speech_placeholder_id),
        ),
    ];
    let ids = [
        ("mio.bos_token_id", cfg.bos_token_id),
        ("mio.eos_token_id", cfg.eos_token_id),
        ("mio.pad_token_id", cfg.pad_token_id),
    ];
    out.extend(
        ids.into_iter()
            .filter_map(|(k, v)| Some((k, Value::U32(v?)))),
    );
    out.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Converts the LM of `model_dir` (`config.json` + checkpoint) to a GGUF at `out_path`.
///
/// `progress` is called after each tensor; an error it returns (e.g. [`Error::Cancelled`])
/// stops the conversion and removes the partial file.
pub fn write_gguf(
    model_dir: &Path,
    out_path: &Path,
    ty: GgufType,
    progress: &mut dyn FnMut(&GgufProgress) -> Result<()>,
) -> Result<()> {
    let cfg = Config::from_dir(model_dir)?;
    let mut ckpt = Checkpoint::open(model_dir)?;
    write_gguf_from(&cfg, &mut ckpt, out_path, ty, &[], progress)
}

/// [`write_gguf`] from an opened checkpoint, with `extra` metadata appended (tokenizer).
pub fn write_gguf_from(
    cfg: &Config,
    ckpt: &mut Checkpoint,
    out_path: &Path,
    ty: GgufType,
    extra: &[(String, Value)],
    progress: &mut dyn FnMut(&GgufProgress) -> Result<()>,
) -> Result<()> {
    cfg.validate()?;
    let expected = expected_tensors(cfg);
    ckpt.check_shapes(&expected)?;
    let plan = plan(&expected, ty)?;
    let mut metadata = gguf_metadata(cfg, ty);
    metadata.extend(extra.iter().cloned());
    let partial = PathBuf::from(format!("{}.partial", out_path.display()));
    let result = write_file(cfg, ckpt, &partial, &metadata, &plan, progress);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, out_path).map_err(|e| Error::io(out_path, e))
}

fn plan(expected: &[(String, Vec<usize>)], ty: GgufType) -> Result<Vec<Planned>> {
    let mut offset = 0u64;
    let mut plan = Vec::with_capacity(expected.len());
    for (hf, shape) in expected {
        let gguf = gguf_name(hf).ok_or_else(|| Error::MissingTensor(hf.clone()))?;
        let dtype = ty.for_tensor(&gguf, shape);
        let elems: usize = shape.iter().product();
        let size = (elems / dtype.block_size() * dtype.type_size()) as u64;
        plan.push(Planned {
            hf: hf.clone(),
            gguf,
            shape: shape.clone(),
            dtype,
            offset,
            size,
        });
        offset += size.div_ceil(ALIGNMENT) * ALIGNMENT;
    }
    Ok(plan)
}

fn write_file(
    cfg: &Config,
    ckpt: &mut Checkpoint,
    path: &Path,
    metadata: &[(String, Value)],
    plan: &[Planned],
    progress: &mut dyn FnMut(&GgufProgress) -> Result<()>,
) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(file);
    let io = |e: std::io::Error| Error::io(path, e);
    write_header(&mut w, metadata, plan).map_err(io)?;
    pad(&mut w).map_err(io)?;
    let data_start = w.stream_position().map_err(io)?;
    let bytes_total: u64 = plan.last().map_or(0, |p| p.offset + p.size);
    for (done, p) in plan.iter().enumerate() {
        let bytes = tensor_bytes(cfg, ckpt, p)?;
        if bytes.len() as u64 != p.size || w.stream_position().map_err(io)? != data_start + p.offset
        {
            return Err(Error::checkpoint(
                path,
                format!("internal layout error at {}", p.gguf),
            ));
        }
        w.write_all(&bytes).map_err(io)?;
        pad(&mut w).map_err(io)?;
        progress(&GgufProgress {
            done: done + 1,
            total: plan.len(),
            tensor: p.gguf.clone(),
            bytes_done: p.offset + p.size,
            bytes_total,
        })?;
    }
    w.flush().map_err(io)?;
    w.get_ref().sync_all().map_err(io)
}

/// Bytes of tensor data a GGUF of `cfg` in `ty` holds (padding included; add the header).
pub fn gguf_data_size(cfg: &Config, ty: GgufType) -> Result<u64> {
    let plan = plan(&expected_tensors(cfg), ty)?;
    Ok(plan
        .last()
        .map_or(0, |p| p.offset + p.size.div_ceil(ALIGNMENT) * ALIGNMENT))
}

/// The tensor's data in GGUF row order and type. Each intermediate copy is dropped as soon
/// as the next exists, so peak memory is about twice the f32 tensor.
fn tensor_bytes(cfg: &Config, ckpt: &mut Checkpoint, p: &Planned) -> Result<Vec<u8>> {
    let t = ckpt.read(&p.hf, DType::F32, &Device::Cpu)?;
    let bytes = match p.dtype {
        GgmlDType::F32 => le_bytes::<f32, 4>(t, |v| v.to_le_bytes())?,
        GgmlDType::F16 => {
            let half = t.to_dtype(DType::F16)?;
            drop(t);
            le_bytes::<half::f16, 2>(half, |v| v.to_le_bytes())?
        }
        dtype => {
            let q = QTensor::quantize(&t, dtype)?;
            drop(t);
            q.data()?.into_owned()
        }
    };
    match (permuted_heads(&p.hf, cfg), p.shape.first()) {
        (Some(n_head), Some(&rows)) => permute_rows(&bytes, rows, n_head, false),
        _ => Ok(bytes),
    }
}

fn le_bytes<T: candle_core::WithDType, const N: usize>(
    t: Tensor,
    f: impl Fn(T) -> [u8; N],
) -> Result<Vec<u8>> {
    let values = t.flatten_all()?.to_vec1::<T>()?;
    drop(t);
    let mut out = Vec::with_capacity(values.len() * N);
    for v in values {
        out.extend_from_slice(&f(v));
    }
    Ok(out)
}

fn pad<W: Write + Seek>(w: &mut W) -> std::io::Result<()> {
    let pos = w.stream_position()?;
    let n = pos.div_ceil(ALIGNMENT) * ALIGNMENT - pos;
    w.write_all(&vec![0u8; n as usize])
}

fn write_str<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_header<W: Write>(
    w: &mut W,
    metadata: &[(String, Value)],
    plan: &[Planned],
) -> std::io::Result<()> {
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(plan.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (key, value) in metadata {
        write_str(w, key)?;
        w.write_all(&value_type(value).to_le_bytes())?;
        write_value(w, value)?;
    }
    for p in plan {
        write_str(w, &p.gguf)?;
        w.write_all(&(p.shape.len() as u32).to_le_bytes())?;
        for &d in p.shape.iter().rev() {
            w.write_all(&(d as u64).to_le_bytes())?;
        }
        w.write_all(&ggml_type(p.dtype)?.to_le_bytes())?;
        w.write_all(&p.offset.to_le_bytes())?;
    }
    Ok(())
}

/// GGUF `gguf_metadata_value_type` code.
fn value_type(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// ggml `ggml_type` code of the types the writer produces.
fn ggml_type(dtype: GgmlDType) -> std::io::Result<u32> {
    match dtype {
        GgmlDType::F32 => Ok(0),
        GgmlDType::F16 => Ok(1),
        GgmlDType::Q8_0 => Ok(8),
        GgmlDType::Q4K => Ok(12),
        GgmlDType::Q5K => Ok(13),
        GgmlDType::Q6K => Ok(14),
        other => Err(std::io::Error::other(format!(
            "the GGUF writer does not produce {other:?}"
        ))),
    }
}

fn write_value<W: Write>(w: &mut W, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_str(w, s),
        Value::Array(items) => {
            let ty = items.first().map_or(4, value_type);
            if items.iter().any(|i| value_type(i) != ty) {
                return Err(std::io::Error::other(
                    "GGUF arrays must hold one value type",
                ));
            }
            w.write_all(&ty.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| write_value(w, i))
        }
    }
}

#[cfg(test)]
mod type_tests {
    use super::*;

    #[test]
    fn k_quant_mixes_pick_types_like_llama_cpp() {
        let q4 = GgufType::Q4KM;
        assert_eq!(
            q4.for_tensor("blk.0.attn_q.weight", &[4096, 4096]),
            GgmlDType::Q4K
        );
        assert_eq!(
            q4.for_tensor("blk.0.attn_v.weight", &[512, 4096]),
            GgmlDType::Q6K
        );
        assert_eq!(
            q4.for_tensor("blk.0.ffn_down.weight", &[4096, 11008]),
            GgmlDType::Q6K
        );
        assert_eq!(
            q4.for_tensor("output.weight", &[76294, 4096]),
            GgmlDType::Q6K
        );
        assert_eq!(
            GgufType::Q5KM.for_tensor("token_embd.weight", &[76294, 4096]),
            GgmlDType::Q5K
        );
        // Rows that are not whole 256-blocks fall back to Q8_0, then f16.
        assert_eq!(
            q4.for_tensor("blk.0.attn_q.weight", &[64, 64]),
            GgmlDType::Q8_0
        );
        assert_eq!(
            q4.for_tensor("blk.0.ffn_down.weight", &[64, 172]),
            GgmlDType::F16
        );
        assert_eq!(q4.for_tensor("output_norm.weight", &[64]), GgmlDType::F32);
        assert!("q4_k_m".parse::<GgufType>().is_ok());
        assert!("q3".parse::<GgufType>().is_err());
    }
}
