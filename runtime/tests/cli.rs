//! End-to-end tests of the `mio` binary on the bundled tiny model: JSON shapes of the CLI
//! contract, golden ids through the whole stack, and one-sentence errors for bad input.
//!
//! They live in the runtime crate because Cargo only hands a package's own binaries to its
//! integration tests (`CARGO_BIN_EXE_mio`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model() -> String {
    fixtures().join("model").display().to_string()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn mio(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json_of(r: &Run) -> Value {
    assert!(r.ok, "mio failed: {}", r.stderr);
    serde_json::from_str(r.stdout.trim()).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("golden").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `short.input_ids` / `mm.input_ids` of the LM golden.
fn golden_lm_ids(name: &str) -> Vec<u64> {
    let bytes = std::fs::read(fixtures().join("golden/lm.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u64)
        .collect()
}

fn assert_one_sentence_error(r: &Run, needle: &str) {
    assert!(!r.ok, "expected failure, got {}", r.stdout);
    let err = r.stderr.trim();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{err:?} lacks {needle:?}"
    );
}

#[test]
fn tokenize_matches_golden_raw_tokenization() {
    let text = golden("text.json");
    for case in text["raw_tokenization"]["cases"].as_array().unwrap() {
        let s = case["text"].as_str().unwrap();
        let v = json_of(&mio(&[
            "tokenize",
            "--model",
            &model(),
            "--text",
            s,
            "--json",
        ]));
        assert_eq!(ids(&v["ids"]), ids(&case["input_ids"]), "{s:?}");
        assert_eq!(
            v.as_object().unwrap().len(),
            1,
            "shape is {{\"ids\": [...]}}"
        );
    }
}

#[test]
fn detokenize_roundtrips() {
    let v = json_of(&mio(&[
        "detokenize",
        "--model",
        &model(),
        "--ids",
        "972,598,328,316,285,912,916",
        "--json",
    ]));
    assert_eq!(v["text"], "Hello world");
    let r = mio(&["detokenize", "--model", &model(), "--ids", "99999"]);
    assert_one_sentence_error(&r, "unknown token id 99999");
}

#[test]
fn template_custom_gives_the_golden_short_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let conv = dir.path().join("conv.json");
    let body = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]}"#;
    std::fs::write(&conv, body).unwrap();
    let v = json_of(&mio(&[
        "template",
        "--model",
        &model(),
        "--conversation",
        conv.to_str().unwrap(),
        "--mode",
        "custom",
        "--json",
    ]));
    assert_eq!(ids(&v["ids"]), golden_lm_ids("short.input_ids"));
    let expected = "<|startoftext|><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(v["text"], expected);
}

#[test]
fn template_keeps_placeholders_without_media() {
    let text = golden("text.json");
    let conv0 = &text["conversations"][0];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv.json");
    let body = serde_json::json!({ "messages": conv0 });
    std::fs::write(&path, body.to_string()).unwrap();
    let v = json_of(&mio(&[
        "template",
        "--model",
        &model(),
        "--conversation",
        path.to_str().unwrap(),
        "--mode",
        "std",
        "--json",
    ]));
    assert_eq!(
        v["text"],
        text["modes"]["std"]["per_conversation"][0]["template_string"]
    );
}

#[test]
fn generate_reproduces_golden_greedy_and_beam() {
    let lm = golden("lm.json");
    let prompt = golden_lm_ids("mm.input_ids");
    let prompt = prompt
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let base = [
        "generate",
        "--model",
        &model(),
        "--ids",
        &prompt,
        "--max-new-tokens",
        "20",
        "--eos-id",
        "7",
        "--no-constraints",
        "--json",
    ];
    let v = json_of(&mio(&base));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["greedy"]["new_tokens"]));
    let mut beam = base.to_vec();
    beam.extend(["--num-beams", "5"]);
    let v = json_of(&mio(&beam));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["beam5"]["new_tokens"]));
    // The release as it ships (.bin pickles, no index, no added_tokens.json) gives the same.
    let release = fixtures().join("release-layout").display().to_string();
    let mut shipped = base.to_vec();
    shipped[2] = &release;
    let v = json_of(&mio(&shipped));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["greedy"]["new_tokens"]));
}

#[test]
fn generate_with_constraints_never_emits_bare_media_tokens() {
    // Unconstrained, the tiny model's greedy answer starts with a bare <img847> (id 1853).
    let greedy = ids(&golden("lm.json")["runs"]["greedy"]["new_tokens"]);
    assert!(
        greedy.iter().any(|&t| t >= 1006),
        "the golden breaks the rules unconstrained"
    );
    let prompt = golden_lm_ids("mm.input_ids");
    let prompt = prompt
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let v = json_of(&mio(&[
        "generate",
        "--model",
        &model(),
        "--ids",
        &prompt,
        "--max-new-tokens",
        "40",
        "--eos-id",
        "7",
        "--json",
    ]));
    let new = ids(&v["new_ids"]);
    assert_eq!(new.len(), 40);
    // Tiny model ids: <image> 1005, </image> 1004, <spch> 1003, </spch> 1001, <img0> 1006, <spch0> 9198.
    let mut inside: Option<u64> = None;
    for &t in &new {
        match inside {
            None if t == 1005 || t == 1003 => inside = Some(t),
            None => assert!(t < 1006, "bare media token {t} outside a block in {new:?}"),
            Some(1005) if t == 1004 => inside = None,
            Some(1005) => assert!((1006..9198).contains(&t), "{t} inside an image block"),
            Some(_) if t == 1001 => inside = None,
            Some(_) => assert!(t >= 9198, "{t} inside a speech block"),
        }
    }
}

#[test]
fn prompt_text_gets_bos_and_is_generated() {
    let v = json_of(&mio(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "3",
        "--json",
    ]));
    assert!(ids(&v["new_ids"]).len() <= 3);
}

#[test]
fn chat_writes_a_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turn");
    let r = mio(&[
        "chat",
        "--model",
        &model(),
        "--out",
        out.to_str().unwrap(),
        "--max-new-tokens",
        "12",
        "--num-beams",
        "1",
        "Hello there",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    assert_eq!(t["user"], "Hello there");
    assert!(!ids(&t["new_ids"]).is_empty());
    assert!(t["segments"].is_array());
    assert_eq!(t["prompt_ids"][0], 1);
}

#[test]
fn info_lists_components_and_memory() {
    let v = json_of(&mio(&["info", "--model", &model(), "--json"]));
    let names: Vec<&str> = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in [
        "lm",
        "tokenizer",
        "seed-tokenizer",
        "speech-tokenizer",
        "unclip",
    ] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert_eq!(v["lm"]["layers"], 2);
    assert!(v["memory_estimate"].as_array().unwrap().len() >= 3);
}

#[test]
fn bad_input_is_one_clear_sentence() {
    let m = model();
    assert_one_sentence_error(
        &mio(&["tokenize", "--model", "/nonexistent/mio", "--text", "x"]),
        "/nonexistent/mio",
    );
    assert_one_sentence_error(
        &mio(&[
            "generate",
            "--model",
            &m,
            "--ids",
            "1,99999",
            "--max-new-tokens",
            "2",
        ]),
        "unknown token id",
    );
    assert_one_sentence_error(
        &mio(&[
            "generate",
            "--model",
            &m,
            "--ids",
            "1,2",
            "--max-new-tokens",
            "5000",
        ]),
        "context",
    );
    assert_one_sentence_error(
        &mio(&["chat", "--model", &m, "--out", "/tmp/mio-x", "  "]),
        "empty",
    );
    let r = mio(&["tokenize", "--model", &m, "--text", "x", "--device", "cuda"]);
    if cfg!(not(feature = "cuda")) {
        assert_one_sentence_error(&r, "cuda");
    }
}

#[test]
fn bench_reports_speed_and_memory() {
    let v = json_of(&mio(&[
        "bench",
        "lm",
        "--model",
        &model(),
        "--prompt-tokens",
        "16",
        "--decode-tokens",
        "8",
        "--repeat",
        "1",
        "--json",
    ]));
    assert!(v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["new_tokens"], 8);
}

#[test]
fn bench_speech_reports_real_time_factor_and_memory() {
    let v = json_of(&mio(&[
        "bench",
        "speech",
        "--model",
        &model(),
        "--seconds",
        "1",
        "--repeat",
        "1",
        "--threads",
        "1",
        "--json",
    ]));
    assert!(v["encode_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["decode_layers"], 4);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
}

fn speech_golden(key: &str) -> Value {
    let s = golden("speech.json");
    s["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == key)
        .unwrap()
        .clone()
}

#[test]
fn speech_encode_gives_the_golden_strings() {
    let g = speech_golden("s22k");
    let wav = fixtures()
        .join("golden/inputs/speech_22k.wav")
        .display()
        .to_string();
    let v = json_of(&mio(&[
        "speech",
        "encode",
        "--model",
        &model(),
        &wav,
        "--json",
    ]));
    assert_eq!(v["tokens"], g["speech_string_content_only"]);
    assert_eq!(v["codes"].as_array().unwrap().len(), 8);
    let v = json_of(&mio(&[
        "speech",
        "encode",
        "--model",
        &model(),
        &wav,
        "--timbre",
        "--json",
    ]));
    assert_eq!(v["tokens"], g["speech_string_with_timbre"]);
}

#[test]
fn speech_decode_writes_the_golden_waveform() {
    let g = speech_golden("s22k");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.wav");
    let tokens = g["speech_string_with_timbre"].as_str().unwrap();
    let v = json_of(&mio(&[
        "speech",
        "decode",
        "--model",
        &model(),
        "--tokens",
        tokens,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["sample_rate"], 16000);
    let got = mio_runtime::audio::decode_file(&out).unwrap().samples;
    // Both are float WAVs (format 3), as the reference writes them.
    let want = mio_runtime::audio::decode_file(&fixtures().join("golden/speech_decode_s22k.wav"))
        .unwrap()
        .samples;
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "max |diff| {worst}");
    let r = mio(&[
        "speech",
        "decode",
        "--model",
        &model(),
        "--tokens",
        "<spch><spch5000></spch>",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_sentence_error(&r, "spch");
}

#[test]
fn chat_with_audio_resolves_the_speech_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turn");
    let wav = fixtures()
        .join("golden/inputs/speech_16k.wav")
        .display()
        .to_string();
    let r = mio(&[
        "chat",
        "--model",
        &model(),
        "--out",
        out.to_str().unwrap(),
        "--audio",
        &wav,
        "--max-new-tokens",
        "4",
        "--num-beams",
        "1",
        "Please transcribe this speech.",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    // std mode: content tokens only (100 frames) inside <spch> … </spch>.
    let prompt = ids(&t["prompt_ids"]);
    let start = prompt.iter().position(|&x| x == 1003).unwrap();
    let end = prompt.iter().position(|&x| x == 1001).unwrap();
    assert_eq!(end - start - 1, 100);
    assert_eq!(
        t["user"],
        "Please transcribe this speech.\n<speech_placeholder_0>"
    );
}

#[test]
fn template_reproduces_every_golden_mode_with_media() {
    let text = golden("text.json");
    let g = fixtures().join("golden");
    let dir = tempfile::tempdir().unwrap();
    for mode in ["std", "voice", "custom"] {
        for (i, conv) in text["conversations"].as_array().unwrap().iter().enumerate() {
            let images: Vec<_> = text["conversation_image_inputs"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| g.join(p.as_str().unwrap()))
                .collect();
            let speech: Vec<_> = text["conversation_speech_inputs"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| g.join(p.as_str().unwrap()))
                .collect();
            let path = dir.path().join(format!("{mode}{i}.json"));
            std::fs::write(
                &path,
                serde_json::json!({ "messages": conv, "images": images, "speech": speech })
                    .to_string(),
            )
            .unwrap();
            let v = json_of(&mio(&[
                "template",
                "--model",
                &model(),
                "--conversation",
                path.to_str().unwrap(),
                "--mode",
                mode,
                "--json",
            ]));
            let want = &text["modes"][mode]["per_conversation"][i];
            assert_eq!(
                v["text"], want["resolved_string"],
                "{mode} conversation {i}"
            );
            assert_eq!(
                ids(&v["ids"]),
                ids(&want["input_ids"]),
                "{mode} conversation {i}"
            );
        }
    }
}

#[test]
fn image_encode_and_decode_through_the_cli() {
    let g = fixtures().join("golden/inputs");
    let jpg = g.join("test_image_0.jpg").display().to_string();
    let png = g.join("synthetic_0.png").display().to_string();
    let v = json_of(&mio(&[
        "image",
        "encode",
        "--model",
        &model(),
        &jpg,
        &png,
        "--json",
    ]));
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    let summary = serde_json::from_str::<Value>(
        &std::fs::read_to_string(fixtures().join("manifest.json")).unwrap(),
    )
    .unwrap();
    for (k, img) in images.iter().enumerate() {
        assert_eq!(
            ids(&img["codes"]),
            ids(&summary["summary"]["image_codes"][k]),
            "image {k}"
        );
        assert!(img["tokens"].as_str().unwrap().starts_with("<image><img"));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pic.png");
    let codes = ids(&images[0]["codes"])
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let v = json_of(&mio(&[
        "image",
        "decode",
        "--model",
        &model(),
        "--codes",
        &codes,
        "--steps",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(64), Some(64))
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let r = mio(&[
        "image",
        "decode",
        "--model",
        &model(),
        "--codes",
        "1,2,3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_sentence_error(&r, "32");
    let r = mio(&[
        "image",
        "encode",
        "--model",
        &model(),
        &fixtures().join("audio/garbage.mp3").display().to_string(),
    ]);
    assert_one_sentence_error(&r, "garbage.mp3");
}

#[test]
fn chat_with_an_image_puts_its_block_in_the_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turn");
    let png = fixtures()
        .join("golden/inputs/synthetic_0.png")
        .display()
        .to_string();
    let r = mio(&[
        "chat",
        "--model",
        &model(),
        "--out",
        out.to_str().unwrap(),
        "--image",
        &png,
        "--max-new-tokens",
        "4",
        "--num-beams",
        "1",
        "What colour is the disc?",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    let prompt = ids(&t["prompt_ids"]);
    let start = prompt.iter().position(|&x| x == 1005).unwrap();
    assert_eq!(
        prompt[start + 33],
        1004,
        "32 image codes between <image> and </image>"
    );
}

#[test]
fn voice_chat_answers_with_speech_and_a_progressive_preview_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("voice");
    let r = mio(&[
        "chat",
        "--model",
        &model(),
        "--mode",
        "voice",
        "--num-beams",
        "1",
        "--max-new-tokens",
        "400",
        "--out",
        out.to_str().unwrap(),
        "Please say hello.",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    let speech = t["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "speech")
        .expect("voice mode answers with speech");
    let file = speech["file"].as_str().unwrap();
    let full = mio_runtime::audio::decode_file(&out.join(file)).unwrap();
    let frames = speech["content"].as_array().unwrap().len();
    assert_eq!(
        full.samples.len(),
        frames * 320,
        "320 samples per frame at 16 kHz"
    );
    // The content-only preview was written while generation ran, before the full audio.
    let preview = mio_runtime::audio::decode_file(&out.join("speech_0.preview.wav")).unwrap();
    assert_eq!(preview.samples.len(), full.samples.len());
    assert_ne!(
        preview.samples, full.samples,
        "the preview lacks the timbre layers"
    );
    let tta = &t["time_to_first_audio_s"];
    assert!(tta["preview_s"].as_f64().unwrap() < tta["full_s"].as_f64().unwrap());
}

#[test]
fn image_decode_with_pinned_draws_reproduces_the_golden_picture() {
    let g = candle_core::safetensors::load(
        fixtures().join("golden/image_decode.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let latents = dir.path().join("latents.safetensors");
    let noise = dir.path().join("noise.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents", g["init_latents"].clone())]),
        &latents,
    )
    .unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("noise", g["noise"].clone())]),
        &noise,
    )
    .unwrap();
    let codes: Vec<i64> = g["codes"].flatten_all().unwrap().to_vec1().unwrap();
    let codes = codes
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = dir.path().join("decoded.png");
    let args = [
        "image",
        "decode",
        "--model",
        &model(),
        "--codes",
        &codes,
        "--steps",
        "3",
        "--guidance",
        "10",
        "--latents",
        latents.to_str().unwrap(),
        "--noise",
        noise.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    json_of(&mio(&args));
    let got = image::open(&out).unwrap().to_rgb8().into_raw();
    let want: Vec<u8> = g["image_uint8"].flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 1, "uint8 image off by {worst}");
    let r = mio(&[
        "image",
        "decode",
        "--model",
        &model(),
        "--codes",
        &codes,
        "--latents",
        noise.to_str().unwrap(),
        "--noise",
        latents.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_sentence_error(&r, "do not fit");
}

/// `mio convert` to F16, then the same golden ids through `--backend llamacpp` (with the
/// GGUF given by `--lm`, and found alone in a model folder), a load note when GPU layers
/// are asked of a CPU-only build, and the side-by-side benchmark.
#[test]
fn llamacpp_backend_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("lm-f16.gguf");
    let gguf_s = gguf.display().to_string();
    let r = mio(&[
        "convert",
        "--model",
        &model(),
        "--out",
        &gguf_s,
        "--type",
        "f16",
    ]);
    assert!(r.ok, "convert: {}", r.stderr);
    let lm = golden("lm.json");
    let prompt = golden_lm_ids("mm.input_ids")
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let base = [
        "generate",
        "--model",
        &model(),
        "--lm",
        &gguf_s,
        "--backend",
        "llamacpp",
        "--ids",
        &prompt,
        "--max-new-tokens",
        "20",
        "--eos-id",
        "7",
        "--no-constraints",
        "--json",
    ];
    let v = json_of(&mio(&base));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["greedy"]["new_tokens"]));
    let mut beam = base.to_vec();
    beam.extend(["--num-beams", "5"]);
    let v = json_of(&mio(&beam));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["beam5"]["new_tokens"]));

    let mut gpu = base.to_vec();
    gpu.extend(["--gpu-layers", "99"]);
    let r = mio(&gpu);
    assert!(r.ok, "{}", r.stderr);
    if cfg!(not(feature = "cuda")) && cfg!(not(feature = "metal")) {
        assert!(r.stderr.contains("no GPU support"), "{}", r.stderr);
    }

    let r = mio(&[
        "generate",
        "--model",
        &model(),
        "--backend",
        "llamacpp",
        "--ids",
        "1,2,3",
        "--max-new-tokens",
        "2",
    ]);
    assert_one_sentence_error(&r, "--lm");

    let v = json_of(&mio(&[
        "bench",
        "lm",
        "--compare",
        "--model",
        &model(),
        "--lm",
        &gguf_s,
        "--prompt-tokens",
        "16",
        "--decode-tokens",
        "8",
        "--repeat",
        "1",
        "--json",
    ]));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row["decode_tokens_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["peak_rss_bytes"].as_u64().unwrap() > 0, "{row}");
    }
    assert!(v["read_bandwidth_bytes_per_s"].as_f64().unwrap() > 1e8);
}
