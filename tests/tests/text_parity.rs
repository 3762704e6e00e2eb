//! Golden parity of the text side against `fixtures/golden/text.json` (produced by the
//! reference `MIOTokenizer` with transformers 4.34.0), on both `model/` and
//! `release-layout/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mio_models::text::{
    image_block, render_chat, speech_block, ChatMode, Message, Segment, TextTokenizer,
    MIO_STD_MODE_SYSTEM, MIO_VOICE_MODE_SYSTEM,
};
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

/// Media blocks `open<tok…>…close` of `s`, in order (`open` not followed by a media token,
/// as in the voice system prompt, is text).
fn blocks(s: &str, open: &str, close: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    let first_token = if open == "<image>" {
        "<image><img"
    } else {
        "<spch><spch"
    };
    while let Some(a) = rest.find(first_token) {
        let b = rest[a..].find(close).expect("closed block") + a + close.len();
        out.push(rest[a..b].to_string());
        rest = &rest[b..];
    }
    out
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).expect("messages")
}

#[test]
fn chat_template_modes() {
    let g = golden();
    let convs = g["conversations"].as_array().unwrap();
    assert_eq!(g["std_system"].as_str().unwrap(), MIO_STD_MODE_SYSTEM);
    assert_eq!(g["voice_system"].as_str().unwrap(), MIO_VOICE_MODE_SYSTEM);
    for (name, tok) in tokenizers() {
        for (mode_name, mode) in [
            ("std", ChatMode::Std),
            ("voice", ChatMode::Voice),
            ("custom", ChatMode::Custom),
        ] {
            let m = &g["modes"][mode_name];
            let mut rows = Vec::new();
            for (i, per) in m["per_conversation"].as_array().unwrap().iter().enumerate() {
                let msgs = messages(&convs[i]);
                let ctx = format!("{name}/{mode_name}/conversation {i}");
                let template = tok.apply_chat_template(&msgs, mode, true).unwrap();
                assert_eq!(
                    template,
                    per["template_string"].as_str().unwrap(),
                    "{ctx}: template"
                );
                let resolved_golden = per["resolved_string"].as_str().unwrap();
                let images = blocks(resolved_golden, "<image>", "</image>");
                let speech = blocks(resolved_golden, "<spch>", "</spch>");
                let conv_text = render_chat(&msgs, mode, true).unwrap();
                assert_eq!(
                    tok.resolve_prompt(&conv_text, &images, &speech, true),
                    resolved_golden,
                    "{ctx}: resolved"
                );
                let ids = tok
                    .encode_chat(&msgs, mode, true, &images, &speech)
                    .unwrap();
                assert_eq!(ids, ids_of(&per["input_ids"]), "{ctx}: input_ids");
                assert_eq!(
                    tok.tokens(resolved_golden),
                    strings(&per["tokens"]),
                    "{ctx}: tokens"
                );
                check_media_strings(&tok, &images, &speech, m["add_timbre"].as_bool().unwrap());
                rows.push(ids);
            }
            let batch = tok.pad_left(&rows);
            let want = &m["batch_padded"];
            let want_mask: Vec<Vec<u8>> = want["attention_mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| ids_of(r).into_iter().map(|x| x as u8).collect())
                .collect();
            let want_ids: Vec<Vec<u32>> = want["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(ids_of)
                .collect();
            assert_eq!(batch.input_ids, want_ids, "{name}/{mode_name}: padded ids");
            assert_eq!(batch.attention_mask, want_mask, "{name}/{mode_name}: mask");
        }
    }
}

fn ids_of(v: &Value) -> Vec<u32> {
    ids(v)
}

/// The supplied media strings are exactly what the block builders make from their codes.
fn check_media_strings(tok: &TextTokenizer, images: &[String], speech: &[String], timbre: bool) {
    let v = tok.vocab();
    let numbers = |s: &str, prefix: &str| -> Vec<u32> {
        s.split(prefix)
            .skip(1)
            .filter_map(|p| p.split('>').next().unwrap().parse().ok())
            .collect()
    };
    for s in images {
        let codes = numbers(s, "<img");
        assert_eq!(image_block(v, &codes).unwrap(), *s);
    }
    for s in speech {
        let n = numbers(s, "<spch");
        let (content, layers) = if timbre {
            let t = n.len() / 4;
            let layer = |k: usize| {
                n[k * t..(k + 1) * t]
                    .iter()
                    .map(|x| x - 1024 * k as u32)
                    .collect::<Vec<u32>>()
            };
            (layer(0), Some([layer(1), layer(2), layer(3)]))
        } else {
            (n.clone(), None)
        };
        assert_eq!(speech_block(v, &content, layers.as_ref()).unwrap(), *s);
    }
}

#[test]
fn mio_call_input_ids() {
    let g = golden();
    for (name, tok) in tokenizers() {
        for case in g["raw_tokenization"]["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let got = tok.encode_prompt(text, &[], &[], true).unwrap();
            assert_eq!(got, ids(&case["mio_call_input_ids"]), "{name}: {text:?}");
        }
    }
}

#[test]
fn detokenize_golden() {
    let g = golden();
    let d = &g["detokenize"];
    let output_ids = ids(&d["output_ids"]);
    for (name, tok) in tokenizers() {
        assert_eq!(
            tok.decode(&output_ids).unwrap(),
            d["batch_decode"].as_str().unwrap(),
            "{name}: batch_decode"
        );
        for (key, extract) in [
            ("extract_assistant=False", false),
            ("extract_assistant=True", true),
        ] {
            let want = &d["cases"][key];
            let got = tok.detokenize(&output_ids, extract).unwrap();
            assert!(got.warnings.is_empty(), "{name}/{key}: {:?}", got.warnings);
            assert_eq!(
                got.text_with_placeholders(),
                want["texts"][0].as_str().unwrap(),
                "{name}/{key}: text"
            );
            assert_eq!(
                got.image_strings(),
                strings(&want["extracted_image_strings"]),
                "{name}/{key}: images"
            );
            let speech = got.speech_strings(tok.vocab().speech_codebook_size);
            assert_eq!(
                speech,
                strings(&want["extracted_speech_strings"]),
                "{name}/{key}: speech"
            );
            assert_eq!(
                got.image_strings().len() as u64,
                want["n_images"].as_u64().unwrap()
            );
            assert_eq!(speech.len() as u64, want["n_speeches"].as_u64().unwrap());
            for seg in &got.segments {
                match seg {
                    Segment::Image { codes } => assert_eq!(codes.len(), 32),
                    Segment::Speech { content, timbre } => {
                        let t = timbre.as_ref().expect("golden speech has timbre");
                        assert!(t.iter().all(|l| l.len() == content.len()));
                        assert!(content.iter().chain(t.iter().flatten()).all(|c| *c < 1024));
                    }
                    Segment::Text(t) => assert!(!t.is_empty()),
                }
            }
        }
    }
}
