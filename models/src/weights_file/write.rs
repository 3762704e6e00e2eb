//! Streaming a torch pickle into a `.safetensors` file, tensor by tensor.
//!
//! Format (huggingface/safetensors): 8-byte little-endian header length, a JSON header
//! (`name -> {dtype, shape, data_offsets}` plus `__metadata__`) padded with spaces to a
//! multiple of 8, then the tensors back to back. The header follows from the pickle's index
//! alone, so it is written first; each tensor's bytes are then copied straight from its zip
//! entry (stored dtype kept: float16 stays float16, bits unchanged). Peak memory: one tensor.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Map, Value};

use crate::pickle::{PthDType, PthFile};
use crate::{Error, Result};

/// The safetensors name of a pickle dtype.
pub fn safetensors_dtype_name(d: PthDType) -> &'static str {
    match d {
        PthDType::F64 => "F64",
        PthDType::F32 => "F32",
        PthDType::F16 => "F16",
        PthDType::BF16 => "BF16",
        PthDType::I64 => "I64",
        PthDType::I32 => "I32",
        PthDType::I16 => "I16",
        PthDType::I8 => "I8",
        PthDType::U8 => "U8",
        PthDType::Bool => "BOOL",
    }
}

/// The header (already padded) and the total data size.
fn header(pth: &PthFile, metadata: &BTreeMap<String, String>) -> Result<(Vec<u8>, u64)> {
    let mut names: Vec<&str> = pth.names().collect();
    names.sort_unstable();
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0u64;
    for name in names {
        let info = pth
            .info(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let bytes = info
            .checked_elem_count()
            .and_then(|n| n.checked_mul(info.dtype.size_in_bytes()))
            .ok_or_else(|| Error::checkpoint(pth.path(), format!("{name} is too large")))?
            as u64;
        map.insert(
            name.to_string(),
            json!({
                "dtype": safetensors_dtype_name(info.dtype),
                "shape": info.shape,
                "data_offsets": [offset, offset + bytes],
            }),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_vec(&Value::Object(map))
        .map_err(|e| Error::InvalidArgument(format!("safetensors header: {e}")))?;
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    Ok((text, offset))
}

/// Size in bytes of the safetensors file [`pth_to_safetensors`] writes for `pth`.
pub fn safetensors_size(pth: &PthFile) -> Result<u64> {
    let (h, data) = header(pth, &BTreeMap::new())?;
    Ok(8 + h.len() as u64 + data + 256)
}

/// Writes `pth` as safetensors to `out` (the file `out_path`, named in errors), with
/// `metadata` in the header. `progress` gets the bytes written after each tensor; an error
/// it returns stops the conversion.
pub fn pth_to_safetensors(
    pth: &PthFile,
    out: &mut dyn Write,
    out_path: &std::path::Path,
    metadata: &BTreeMap<String, String>,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<u64> {
    let io = |e: std::io::Error| Error::io(out_path, e);
    let (head, _) = header(pth, metadata)?;
    out.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&head).map_err(io)?;
    let mut written = 8 + head.len() as u64;
    let mut names: Vec<&str> = pth.names().collect();
    names.sort_unstable();
    for name in names {
        let bytes = pth.tensor_bytes(name)?;
        out.write_all(&bytes).map_err(io)?;
        written += bytes.len() as u64;
        drop(bytes);
        pth.release(name);
        progress(written)?;
    }
    Ok(written)
}
