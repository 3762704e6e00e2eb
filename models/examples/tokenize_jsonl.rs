//! Runs the MIO text tokenizer over JSON lines, for comparing it with the Python reference.
//!
//! ```text
//! cargo run -p mio-models --example tokenize_jsonl -- tests/fixtures/model < in.jsonl > out.jsonl
//! ```
//! Each input line is `{"text": "..."}` (prints tokens, ids and the decode of the ids) or
//! `{"ids": [..]}` (prints the decode, or the error) or `{"detok": [..], "extract": bool}` (prints
//! the detokenized text with placeholders, the block strings and the warnings).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use mio_models::text::TextTokenizer;
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: tokenize_jsonl MODEL_DIR")?;
    let tok = TextTokenizer::load(&dir)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let v: Value = serde_json::from_str(&line?)?;
        let result = if let Some(text) = v.get("text").and_then(Value::as_str) {
            let ids = tok.encode(text)?;
            json!({"tokens": tok.tokens(text), "ids": ids, "decoded": tok.decode(&ids)?})
        } else if let Some(detok) = v.get("detok") {
            let ids: Vec<u32> = serde_json::from_value(detok.clone())?;
            let extract = v.get("extract").and_then(Value::as_bool).unwrap_or(false);
            let d = tok.detokenize(&ids, extract)?;
            let codebook = tok.vocab().speech_codebook_size;
            let warnings: Vec<String> = d.warnings.iter().map(ToString::to_string).collect();
            json!({"text": d.text_with_placeholders(), "images": d.image_strings(),
                   "speech": d.speech_strings(codebook), "warnings": warnings})
        } else {
            let ids: Vec<u32> = serde_json::from_value(v["ids"].clone())?;
            match tok.decode(&ids) {
                Ok(s) => json!({ "decoded": s }),
                Err(e) => json!({ "error": e.to_string() }),
            }
        };
        writeln!(out, "{result}")?;
    }
    Ok(())
}
