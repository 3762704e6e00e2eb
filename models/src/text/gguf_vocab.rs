//! The tokenizer as GGUF metadata (`tokenizer.ggml.*`), so llama.cpp and our GGUF loader
//! find MIO's whole vocabulary (text pieces, the 6 specials, `<imgN>`, `<spchN>`) in the
//! converted file. Layout as llama.cpp's `convert_hf_to_gguf.py` writes a sentencepiece
//! ("llama") vocabulary: pieces with scores and types, added tokens after them as CONTROL
//! (special) or USER_DEFINED, byte pieces as BYTE.

use candle_core::quantized::gguf_file::Value;

use super::sp_proto::PieceType;
use super::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// llama.cpp `llama_token_type` values.
mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// `tokenizer.ggml.*` keys for `tok`; `eos` is the end-of-generation id to record (the
/// model's generation config), `eot` the end-of-turn id (`<|im_end|>` for Instruct).
pub fn gguf_tokenizer_metadata(
    tok: &TextTokenizer,
    eos: u32,
    eot: u32,
) -> Result<Vec<(String, Value)>> {
    let pieces = &tok.sentencepiece().proto().pieces;
    let n = tok.vocab_size();
    let mut tokens = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for id in 0..n as u32 {
        let (text, score, ty) = match (tok.added_token(id), pieces.get(id as usize)) {
            (Some(added), _) => {
                let ty = if added.special {
                    token_type::CONTROL
                } else {
                    token_type::USER_DEFINED
                };
                (added.content.clone(), 0.0, ty)
            }
            (None, Some(p)) => (p.piece.clone(), p.score, piece_type(p.kind)),
            (None, None) => {
                return Err(Error::Tokenizer(format!(
                    "token id {id} has neither a piece nor an added token"
                )))
            }
        };
        tokens.push(Value::String(text));
        scores.push(Value::F32(score));
        types.push(Value::I32(ty));
    }
    let v = tok.vocab();
    let u = Value::U32;
    let out = vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.scores", Value::Array(scores)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.bos_token_id", u(v.bos)),
        ("tokenizer.ggml.eos_token_id", u(eos)),
        ("tokenizer.ggml.eot_token_id", u(eot)),
        ("tokenizer.ggml.unknown_token_id", u(v.unk)),
        ("tokenizer.ggml.padding_token_id", u(tok.pad_id())),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        (
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(tok.sentencepiece().proto().normalizer.add_dummy_prefix),
        ),
    ];
    Ok(out.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn piece_type(kind: PieceType) -> i32 {
    match kind {
        PieceType::Normal => token_type::NORMAL,
        PieceType::Unknown => token_type::UNKNOWN,
        PieceType::Control => token_type::CONTROL,
        PieceType::UserDefined => token_type::USER_DEFINED,
        PieceType::Unused => token_type::UNUSED,
        PieceType::Byte => token_type::BYTE,
    }
}
