//! Golden parity of the text side against `fixtures/golden/text.json` (produced by the
//! reference `MIOTokenizer` with transformers 4.34.0), on both `model/` and
//! `release-layout/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mio_models::text::TextTokenizer;
use serde_json::Value;

fn golden() -> Value {
    mio_tests::golden_json("text.json").expect("text.json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|x| x.as_str().expect("str").to_string()).collect()
}

fn tokenizers() -> Vec<(&'static str, TextTokenizer)> {
    vec![
        ("model", TextTokenizer::load(&mio_tests::tiny_model()).expect("load model/")),
        ("release-layout", TextTokenizer::load(&mio_tests::release_layout()).expect("load release-layout/")),
    ]
}

#[test]
fn raw_tokenization_cases() {
    let g = golden();
    for (name, tok) in tokenizers() {
        for case in g["raw_tokenization"]["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(tok.tokens(text), strings(&case["tokens"]), "{name}: tokens of {text:?}");
            assert_eq!(tok.encode(text).unwrap(), ids(&case["input_ids"]), "{name}: ids of {text:?}");
            let decoded = tok.decode(&ids(&case["input_ids"])).unwrap();
            assert_eq!(decoded, case["decoded"].as_str().unwrap(), "{name}: decode of {text:?}");
        }
    }
}
