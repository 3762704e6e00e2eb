//! Validation of a GGUF LM file before any backend maps it.
//!
//! llama.cpp aborts the process on some malformed files (a tensor past the end of the
//! file, a shape that does not match the architecture), so the runtime checks a file here
//! first and turns every problem into one error naming the file: not a GGUF, not a llama
//! architecture, a truncated tensor, a tensor missing or of the wrong shape, a tokenizer
//! without MIO's image and speech tokens. It reads only the header (metadata and tensor
//! table), never the tensor data.

use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use super::config::Config;
use super::gguf::{config_from_gguf, gguf_name};
use super::loader::expected_tensors;
use crate::text::MioVocab;
use crate::{Error, Result};

/// What a valid MIO GGUF holds, from its header.
#[derive(Debug, Clone)]
pub struct GgufSummary {
    /// The LM architecture.
    pub config: Config,
    /// Tensor count per ggml type name (e.g. `q4_K` → 225).
    pub tensor_types: Vec<(String, usize)>,
    /// Bytes of tensor data.
    pub data_bytes: u64,
    /// Whether the file carries a tokenizer (`tokenizer.ggml.tokens`).
    pub has_tokenizer: bool,
}

/// Checks that `path` is a complete GGUF of a MIO LM: header, architecture, every tensor
/// present with the architecture's shape and inside the file, and (when it carries a
/// tokenizer) MIO's special and media tokens at the ids of `vocab`.
pub fn validate_gguf(path: &Path, vocab: Option<&MioVocab>) -> Result<GgufSummary> {
    if !path.is_file() {
        return Err(Error::MissingFile(path.to_path_buf()));
    }
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let content = Content::read(&mut file)
        .map_err(|e| Error::checkpoint(path, format!("not a readable GGUF file ({e})")))?;
    let config = config_from_gguf(&content, path)?;
    let data_bytes = check_tensors(&content, &config, path, file_len)?;
    let has_tokenizer = check_tokenizer(&content, &config, vocab, path)?;
    let mut types: Vec<(String, usize)> = vec![];
    for info in content.tensor_infos.values() {
        let name = format!("{:?}", info.ggml_dtype);
        match types.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => types.push((name, 1)),
        }
    }
    types.sort();
    Ok(GgufSummary {
        config,
        tensor_types: types,
        data_bytes,
        has_tokenizer,
    })
}

fn check_tensors(content: &Content, cfg: &Config, path: &Path, file_len: u64) -> Result<u64> {
    let mut total = 0u64;
    for (hf, shape) in expected_tensors(cfg) {
        let Some(name) = gguf_name(&hf) else {
            continue;
        };
        let info = content.tensor_infos.get(&name).ok_or_else(|| {
            Error::checkpoint(
                path,
                format!("tensor {name} is missing: the file is incomplete"),
            )
        })?;
        if info.shape.dims() != shape.as_slice() {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {name} has shape {:?} but the architecture in the header needs {shape:?}",
                    info.shape.dims()
                ),
            ));
        }
    }
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let block = info.ggml_dtype.block_size() as u64;
        if block == 0 || !elems.is_multiple_of(block) {
            return Err(Error::checkpoint(
                path,
                format!("tensor {name} has {elems} elements, not whole blocks of its type"),
            ));
        }
        let bytes = elems / block * info.ggml_dtype.type_size() as u64;
        let end = content
            .tensor_data_offset
            .saturating_add(info.offset)
            .saturating_add(bytes);
        if end > file_len {
            return Err(Error::checkpoint(
                path,
                format!(
                    "truncated: tensor {name} ends at byte {end} but the file has {file_len} bytes"
                ),
            ));
        }
        total += bytes;
    }
    Ok(total)
}

fn token_list(content: &Content) -> Option<Vec<String>> {
    match content.metadata.get("tokenizer.ggml.tokens")? {
        Value::Array(items) => items.iter().map(|v| v.to_string().ok().cloned()).collect(),
        _ => None,
    }
}

fn check_tokenizer(
    content: &Content,
    cfg: &Config,
    vocab: Option<&MioVocab>,
    path: &Path,
) -> Result<bool> {
    let Some(tokens) = token_list(content) else {
        return Ok(false);
    };
    if tokens.len() != cfg.vocab_size {
        return Err(Error::checkpoint(
            path,
            format!(
                "its tokenizer has {} tokens but the LM has {} outputs",
                tokens.len(),
                cfg.vocab_size
            ),
        ));
    }
    let expect: Vec<(u32, String)> = match vocab {
        Some(v) => vec![
            (v.im_end, "<|im_end|>".into()),
            (v.image_start, "<image>".into()),
            (v.image_end, "</image>".into()),
            (v.speech_start, "<spch>".into()),
            (v.speech_end, "</spch>".into()),
            (v.img0, "<img0>".into()),
            (v.spch0, "<spch0>".into()),
        ],
        None => {
            let m = &cfg.mio;
            let img0 = (m.text_vocab_size + m.num_new_special_tokens) as u32;
            vec![
                (img0, "<img0>".into()),
                (img0 + m.visual_vocab_size as u32, "<spch0>".into()),
            ]
        }
    };
    for (id, want) in expect {
        let got = tokens.get(id as usize).map(String::as_str);
        if got != Some(want.as_str()) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "its tokenizer is not MIO's: token {id} is {got:?}, expected {want:?} (convert the release with `mio convert`)"
                ),
            ));
        }
    }
    Ok(true)
}
