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
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_str().expect("str").to_string())
        .collect()
}

fn tokenizers() -> Vec<(&'static str, TextTokenizer)> {
    vec![
        (
            "model",
            TextTokenizer::load(&mio_tests::tiny_model()).expect("load model/"),
        ),
        (
            "release-layout",
            TextTokenizer::load(&mio_tests::release_layout()).expect("load release-layout/"),
        ),
    ]
}

#[test]
fn raw_tokenization_cases() {
    let g = golden();
    for (name, tok) in tokenizers() {
        for case in g["raw_tokenization"]["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                tok.tokens(text),
                strings(&case["tokens"]),
                "{name}: tokens of {text:?}"
            );
            assert_eq!(
                tok.encode(text).unwrap(),
                ids(&case["input_ids"]),
                "{name}: ids of {text:?}"
            );
            let decoded = tok.decode(&ids(&case["input_ids"])).unwrap();
            assert_eq!(
                decoded,
                case["decoded"].as_str().unwrap(),
                "{name}: decode of {text:?}"
            );
        }
    }
}

/// Cases kept from fuzzing against the reference: expected values were produced by
/// transformers 4.34.0 `LlamaTokenizer.from_pretrained("tests/fixtures/model")`
/// (`tokenize`, `__call__(...).input_ids`, `decode`), not by this crate.
#[test]
fn reference_fuzz_cases() {
    let encode_cases: &[(&str, &[&str], &[u32], &str)] = &[
        (
            "a <|startoftext|> b <unk> c <image> d",
            &[
                "a",
                "\u{2581}",
                "<|startoftext|>",
                "\u{2581}b",
                "\u{2581}",
                "<unk>",
                "\u{2581}c",
                "<image>",
                "d",
            ],
            &[906, 903, 1, 294, 903, 0, 282, 1005, 916],
            " a <|startoftext|>  b <unk> c <image> d",
        ),
        (
            "  <image>\n\t<img5>  x",
            &["<image>", "<img5>", "x"],
            &[1005, 1011, 935],
            "<image> <img5> x",
        ),
        (
            "\u{2581}\u{2581}Hello \u{2581}world",
            &[
                "\u{2581}\u{2581}",
                "H",
                "el",
                "lo",
                "\u{2581}\u{2581}",
                "wor",
                "l",
                "d",
            ],
            &[265, 972, 598, 328, 265, 680, 912, 916],
            " Hello  world",
        ),
        (
            "\u{1f}<img1>\u{3000}end",
            &["<img1>", "en", "d"],
            &[1007, 541, 916],
            "<img1> end",
        ),
        (
            "<im<img10><img1>>",
            &["<", "i", "m", "<img10>", "<img1>", ">"],
            &[970, 908, 919, 1016, 1007, 943],
            "<im <img10> <img1> >",
        ),
        (
            "x\u{a0}[IMG]\u{2028}y",
            &["x", "[IMG]", "y"],
            &[935, 1002, 927],
            "x [IMG] y",
        ),
        (
            "tab\there  <spch><spch1030></spch>\n\nok",
            &[
                "ta",
                "b",
                "<0x09>",
                "here",
                "<spch>",
                "<spch1030>",
                "</spch>",
                "ok",
            ],
            &[457, 923, 18, 854, 1003, 10228, 1001, 762],
            "tab\there <spch> <spch1030> </spch> ok",
        ),
        (
            "日本語 🙂 <0x41>",
            &[
                "<0xE6>",
                "<0x97>",
                "<0xA5>",
                "<0xE6>",
                "<0x9C>",
                "<0xAC>",
                "<0xE8>",
                "<0xAA>",
                "<0x9E>",
                "\u{2581}",
                "<0xF0>",
                "<0x9F>",
                "<0x99>",
                "<0x82>",
                "\u{2581}<",
                "0",
                "x",
                "4",
                "1",
                ">",
            ],
            &[
                239, 160, 174, 239, 165, 181, 241, 179, 167, 903, 249, 168, 162, 139, 860, 952,
                935, 971, 948, 943,
            ],
            "日本語 🙂 <0x41>",
        ),
    ];
    let decode_cases: &[(&[u32], &str)] = &[
        (&[239, 160], "\u{fffd}\u{fffd}"),
        (&[239, 160, 174, 903], "日 "),
        (&[1005, 903, 1006], "<image> <img0>"),
        (&[1005, 903], "<image> "),
        (&[968, 0, 0], " D<unk><unk>"),
        (&[265, 972], " H"),
        (
            &[972, 2, 6, 1, 239, 0, 1003],
            " H<|endoftext|> <|im_start|><|startoftext|> \u{fffd}<unk> <spch>",
        ),
        (
            &[9, 10, 249, 168, 1006, 162, 139],
            "\u{0}\u{1}\u{fffd}\u{fffd} <img0> \u{fffd}\u{fffd}",
        ),
        (&[903, 1005, 903, 903, 0], "<image>   <unk>"),
    ];
    for (name, tok) in tokenizers() {
        for (text, tokens, ids, decoded) in encode_cases {
            assert_eq!(tok.tokens(text), *tokens, "{name}: tokens of {text:?}");
            assert_eq!(tok.encode(text).unwrap(), *ids, "{name}: ids of {text:?}");
            assert_eq!(
                tok.decode(ids).unwrap(),
                *decoded,
                "{name}: decode of {text:?}"
            );
        }
        for (ids, decoded) in decode_cases {
            assert_eq!(
                tok.decode(ids).unwrap(),
                *decoded,
                "{name}: decode of {ids:?}"
            );
        }
    }
}

#[test]
fn unknown_id_is_an_error() {
    for (_, tok) in tokenizers() {
        let n = tok.vocab_size() as u32;
        let err = tok.decode(&[5, n]).unwrap_err();
        assert!(
            matches!(err, mio_models::Error::UnknownTokenId { id, .. } if id == n),
            "{err}"
        );
        assert_eq!(tok.id_to_token(n), None);
        assert_eq!(tok.id_to_token(n - 1), Some("<spch4095>"));
        assert_eq!(tok.token_to_id("<img0>"), Some(1006));
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(7));
        assert_eq!(tok.token_to_id("not a token"), None);
    }
}

#[test]
fn vocab_from_both_layouts() {
    for (name, tok) in tokenizers() {
        let v = tok.vocab();
        assert_eq!(
            (
                v.unk,
                v.bos,
                v.eos,
                v.im_start,
                v.im_end,
                v.text_vocab_size,
                v.img0,
                v.spch0,
                v.vocab_size
            ),
            (0, 1, 2, 6, 7, 1000, 1006, 9198, 13294),
            "{name}"
        );
        assert_eq!(
            (
                v.speech_placeholder,
                v.speech_end,
                v.image_placeholder,
                v.speech_start
            ),
            (1000, 1001, 1002, 1003)
        );
        assert_eq!(
            (
                v.image_end,
                v.image_start,
                v.n_image_codes,
                v.n_speech_tokens
            ),
            (1004, 1005, 8192, 4096)
        );
        assert_eq!(v.speech_codebook_size, 1024);
        assert_eq!(tok.pad_id(), 0);
    }
}

#[test]
fn bad_tokenizer_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("missing model file") && err.contains("tokenizer.model"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("tokenizer.model"),
        b"\x0a\xff\xff\xff\xff\x0f garbage",
    )
    .unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.model") && err.contains("not a sentencepiece model"),
        "{err}"
    );
    std::fs::write(dir.path().join("tokenizer.model"), b"").unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a sentencepiece model"), "{err}");
    // A valid model without the MIO added tokens.
    std::fs::copy(
        mio_tests::tiny_model().join("tokenizer.model"),
        dir.path().join("tokenizer.model"),
    )
    .unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("missing model file") && err.contains("tokenizer_config.json"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        r#"{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}"#,
    )
    .unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("<img0> is missing"), "{err}");
    std::fs::write(dir.path().join("tokenizer_config.json"), "{ not json").unwrap();
    let err = TextTokenizer::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer_config.json"), "{err}");
}
