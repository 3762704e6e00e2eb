//! Golden parity of the SpeechTokenizer port against `fixtures/golden/speech.*` (produced by
//! the reference `MIOTokenizer.tokenize_speeches` / `decode_speeches`, torch 2.1.2 CPU f32):
//! WAV loading, 22.05 → 16 kHz resampling, encoder output, the 8 × 100 RVQ codes (exact),
//! the MIO speech strings (exact), decoder input and decoded waveform (1e-4), plus the
//! streaming decoder against the whole-clip decoder and clear errors on bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use mio_models::speech_codec::{
    codes_tensor, is_training_buffer, read_wav, speech_ids, speech_layers_from_string,
    speech_string, SpeechTokenizer,
};
use mio_models::text::TextTokenizer;
use serde_json::Value;

const KEYS: [&str; 2] = ["s16k", "s22k"];
const TOL: f32 = 1e-4;

/// The device the codec runs on (`MIO_TEST_DEVICE`).
fn dev() -> Device {
    mio_tests::device().expect("MIO_TEST_DEVICE")
}

fn model() -> &'static SpeechTokenizer {
    static M: OnceLock<SpeechTokenizer> = OnceLock::new();
    M.get_or_init(|| {
        let dir = mio_tests::tiny_model().join("SpeechTokenizer");
        SpeechTokenizer::load(&dir, &dev()).expect("load SpeechTokenizer")
    })
}

fn golden() -> &'static HashMap<String, Tensor> {
    static G: OnceLock<HashMap<String, Tensor>> = OnceLock::new();
    G.get_or_init(|| {
        candle_core::safetensors::load(mio_tests::golden("speech.safetensors"), &dev())
            .expect("speech.safetensors")
    })
}

fn json() -> Value {
    mio_tests::golden_json("speech.json").expect("speech.json")
}

fn input(key: &str) -> Value {
    json()["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == key)
        .cloned()
        .unwrap()
}

fn g(name: &str) -> &'static Tensor {
    golden()
        .get(name)
        .unwrap_or_else(|| panic!("golden {name}"))
}

/// Max |a - b| after checking shapes (on the CPU).
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    let a = a
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap();
    let b = b
        .to_dtype(DType::F32)
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap();
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> f32 {
    let d = max_diff(got, want);
    println!("{what}: max |diff| = {d:.3e}");
    assert!(d <= TOL, "{what}: max |diff| {d} > {TOL}");
    d
}

fn golden_codes(name: &str) -> Vec<Vec<u32>> {
    g(name)
        .to_dtype(DType::I64)
        .unwrap()
        .to_vec2::<i64>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|c| c as u32).collect())
        .collect()
}

fn wav_path(key: &str) -> std::path::PathBuf {
    let rel = input(key)["input"].as_str().unwrap().to_string();
    mio_tests::golden(&rel)
}

#[test]
fn wav_loading_matches_torchaudio_load() {
    for key in KEYS {
        let audio = read_wav(wav_path(key)).unwrap();
        assert_eq!(
            audio.sample_rate as u64,
            input(key)["sample_rate"].as_u64().unwrap()
        );
        let flat: Vec<f32> = audio.samples.concat();
        let got = Tensor::from_vec(flat, (audio.samples.len(), audio.len()), &Device::Cpu).unwrap();
        let d = max_diff(&got, g(&format!("{key}.wav_loaded")));
        assert_eq!(d, 0.0, "{key}: wav samples differ by {d}");
    }
}

/// `torchaudio.functional.resample(wav, 22050, 16000)` (and no-op at 16 kHz).
#[test]
fn model_input_matches_torchaudio_resample() {
    for key in KEYS {
        let audio = read_wav(wav_path(key)).unwrap();
        let xs = model().prepare_input(&audio).unwrap();
        assert_close(
            &format!("{key}.model_input"),
            &xs,
            g(&format!("{key}.model_input")),
        );
    }
}

#[test]
fn encode_matches_golden_codes_and_encoder_output() {
    for key in KEYS {
        let xs = g(&format!("{key}.model_input"));
        let e = model().encoder_forward(xs).unwrap();
        assert_close(
            &format!("{key}.encoder_out"),
            &e,
            g(&format!("{key}.encoder_out")),
        );
        let codes = model().encode(xs).unwrap().squeeze(1).unwrap();
        let got = codes.to_vec2::<u32>().unwrap();
        assert_eq!(got, golden_codes(&format!("{key}.codes")), "{key}: codes");
        // The whole audio path from the WAV file gives the same codes.
        let audio = read_wav(wav_path(key)).unwrap();
        assert_eq!(
            model().encode_audio(&audio).unwrap(),
            got,
            "{key}: codes from file"
        );
    }
}

#[test]
fn mio_speech_strings_match_golden() {
    let tok = TextTokenizer::load(&mio_tests::tiny_model()).unwrap();
    let vocab = tok.vocab();
    for key in KEYS {
        let inp = input(key);
        let codes = golden_codes(&format!("{key}.codes"));
        let content = speech_string(vocab, &codes, false).unwrap();
        assert_eq!(content, inp["speech_string_content_only"].as_str().unwrap());
        let timbre = speech_string(vocab, &codes, true).unwrap();
        assert_eq!(timbre, inp["speech_string_with_timbre"].as_str().unwrap());
        assert_eq!(
            speech_ids(vocab, &codes, true).unwrap(),
            tok.encode(&timbre).unwrap()
        );
        // decode_speeches: the timbre string gives back the 4 layers.
        let layers = speech_layers_from_string(&timbre, 1024).unwrap();
        assert_eq!(layers, golden_codes(&format!("{key}.decode_codes_4q")));
        assert_eq!(
            speech_layers_from_string(&content, 1024).unwrap(),
            codes[..1]
        );
    }
}

#[test]
fn decode_of_4_layers_matches_golden_waveform() {
    for key in KEYS {
        let layers = golden_codes(&format!("{key}.decode_codes_4q"));
        let codes = codes_tensor(&layers, &dev()).unwrap();
        let q = model().decoder_input(&codes, 0).unwrap();
        assert_close(
            &format!("{key}.decoder_input"),
            &q,
            g(&format!("{key}.decoder_input")),
        );
        let wav = model().decode(&codes, 0).unwrap();
        assert_close(
            &format!("{key}.decoded_wav"),
            &wav,
            g(&format!("{key}.decoded_wav")),
        );
        // From the MIO string, as `decode_speeches` does.
        let timbre = input(key)["speech_string_with_timbre"]
            .as_str()
            .unwrap()
            .to_string();
        let from_string = model().decode_speech_string(&timbre).unwrap();
        let from_string = Tensor::from_vec(from_string, (1, 1, 32000), &Device::Cpu).unwrap();
        assert_close(
            &format!("{key} from string"),
            &from_string,
            g(&format!("{key}.decoded_wav")),
        );
        // The reference also wrote it as a float32 WAV (scipy).
        let file = read_wav(mio_tests::golden(&format!("speech_decode_{key}.wav"))).unwrap();
        assert_eq!(file.sample_rate, 16000);
        let n = file.len();
        let from_file = Tensor::from_vec(file.samples.concat(), (1, 1, n), &Device::Cpu).unwrap();
        assert_close(
            &format!("{key} vs speech_decode_{key}.wav"),
            &wav,
            &from_file,
        );
    }
}

/// Decodes `codes` chunk by chunk (`chunk` frames each) with one state.
fn streamed(
    codes: &Tensor,
    chunk: usize,
    state: &mut mio_models::speech_codec::SpeechDecodeState,
) -> Tensor {
    let frames = codes.dim(2).unwrap();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < frames {
        let n = chunk.min(frames - start);
        let c = codes.narrow(2, start, n).unwrap();
        if let Some(y) = model().decode_step(state, &c).unwrap() {
            parts.push(y);
        }
        start += n;
    }
    if let Some(y) = model().decode_finish(state).unwrap() {
        parts.push(y);
    }
    Tensor::cat(&parts, 2).unwrap()
}

/// CONVENTIONS rule 9: `step` (chunked, explicit state) equals whole-clip `forward`, for
/// the 4-layer codes and for the content layer alone (progressive preview).
#[test]
fn streaming_decode_equals_whole_clip_decode() {
    let layers = golden_codes("s16k.decode_codes_4q");
    let mut state = model().new_decode_state();
    for n_layers in [4, 1] {
        let codes = codes_tensor(&layers[..n_layers], &dev()).unwrap();
        let whole = model().decode(&codes, 0).unwrap();
        assert_eq!(whole.dims(), [1, 1, 32000]);
        for chunk in [1, 2, 7, 25, 100] {
            let got = streamed(&codes, chunk, &mut state);
            assert_close(
                &format!("stream {n_layers} layers, chunks of {chunk}"),
                &got,
                &whole,
            );
        }
        // reset() mid-stream starts a clean stream.
        let _ = model()
            .decode_step(&mut state, &codes.narrow(2, 0, 10).unwrap())
            .unwrap();
        state.reset();
        assert_close("after reset", &streamed(&codes, 10, &mut state), &whole);
    }
    // A 4-layer golden decode differs from the content-only preview (layers are summed).
    let content = codes_tensor(&layers[..1], &dev()).unwrap();
    assert!(max_diff(&model().decode(&content, 0).unwrap(), g("s16k.decoded_wav")) > TOL);
}

/// The non-causal decoder lags its input by less than 4 frames (80 ms): after `k` frames
/// at least `(k - 4) · 320` samples are out.
#[test]
fn streaming_lag_is_under_four_frames() {
    let layers = golden_codes("s16k.decode_codes_4q");
    let codes = codes_tensor(&layers, &dev()).unwrap();
    let mut state = model().new_decode_state();
    let mut out = 0;
    for k in 1..=20 {
        let c = codes.narrow(2, k - 1, 1).unwrap();
        if let Some(y) = model().decode_step(&mut state, &c).unwrap() {
            out += y.dim(2).unwrap();
        }
        assert!(out + 4 * 320 >= k * 320, "{out} samples after {k} frames");
    }
    println!("after 20 frames (6400 samples) {out} samples are out");
}

/// CONVENTIONS rule 6: every checkpoint tensor is read except the RVQ training buffers.
#[test]
fn every_needed_checkpoint_tensor_is_read() {
    let dir = mio_tests::tiny_model().join("SpeechTokenizer");
    let (_, unread) = SpeechTokenizer::load_with_unread(&dir, &dev()).unwrap();
    let needed: Vec<&String> = unread.iter().filter(|n| !is_training_buffer(n)).collect();
    assert!(needed.is_empty(), "tensors never read: {needed:?}");
    // The training buffers are 3 per RVQ layer and all of them are skipped.
    assert_eq!(unread.len(), 3 * 8, "{unread:?}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let m = model();
    let dev = dev();
    let err = |r: mio_models::Result<Tensor>| r.expect_err("must fail").to_string();
    // Wrong shapes.
    let e = err(m.encode(&Tensor::zeros((1, 32000), DType::F32, &dev).unwrap()));
    assert!(e.contains("batch, channels, samples"), "{e}");
    let e = err(m.encode(&Tensor::zeros((1, 2, 320), DType::F32, &dev).unwrap()));
    assert!(e.contains("channel"), "{e}");
    let e = err(m.encode(&Tensor::zeros((1, 1, 0), DType::F32, &dev).unwrap()));
    assert!(e.contains("channel"), "{e}");
    let e = err(m.decode(&Tensor::zeros((4, 10), DType::U32, &dev).unwrap(), 0));
    assert!(e.contains("(layers, batch, frames)"), "{e}");
    let e = err(m.decode(&Tensor::zeros((9, 1, 10), DType::U32, &dev).unwrap(), 0));
    assert!(e.contains("exceed"), "{e}");
    let e = err(m.decode(&Tensor::zeros((1, 1, 10), DType::F32, &dev).unwrap(), 0));
    assert!(e.contains("integers"), "{e}");
    // Codes out of the codebook.
    let e = err(m.decode(&codes_tensor(&[vec![1, 1024]], &dev).unwrap(), 0));
    assert!(e.contains("1024"), "{e}");
    let neg = Tensor::new(&[[[-1i64, 3]]], &dev).unwrap();
    assert!(err(m.decode(&neg, 0)).contains("-1"));
    // Empty codes.
    let e = err(m.decode(&Tensor::zeros((4, 1, 0), DType::U32, &dev).unwrap(), 0));
    assert!(e.contains("empty"), "{e}");
    assert!(codes_tensor(&[], &dev).is_err());
    assert!(codes_tensor(&[vec![]], &dev).is_err());
    assert!(codes_tensor(&[vec![1, 2], vec![3]], &dev).is_err());
    assert!(m.decode_layers(&[vec![5000]]).is_err());
    // A stream keeps its number of layers.
    let mut st = m.new_decode_state();
    m.decode_step(&mut st, &codes_tensor(&[vec![1; 3]], &dev).unwrap())
        .unwrap();
    let c4 = codes_tensor(&[vec![1; 3], vec![1; 3], vec![1; 3], vec![1; 3]], &dev).unwrap();
    assert!(m.decode_step(&mut st, &c4).is_err());
    // Strings.
    assert!(speech_layers_from_string("<spch></spch>", 1024).is_err());
    let tok = TextTokenizer::load(&mio_tests::tiny_model()).unwrap();
    assert!(speech_string(tok.vocab(), &[vec![1, 2]], true).is_err());
    assert!(speech_string(tok.vocab(), &[vec![1024]], false).is_err());
    // Files.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("x.wav");
    std::fs::write(&bad, b"not a wav").unwrap();
    assert!(read_wav(&bad).unwrap_err().to_string().contains("RIFF"));
    assert!(SpeechTokenizer::load(dir.path(), &dev).is_err());
}

/// Tiny inputs (shorter than the reflect padding) work as upstream's `pad1d` makes them.
#[test]
fn very_short_clips_encode_and_decode() {
    let xs = Tensor::ones((1, 1, 5), DType::F32, &dev()).unwrap();
    let codes = model().encode(&xs).unwrap();
    assert_eq!(codes.dims(), [8, 1, 1]);
    let one = codes_tensor(&[vec![3]], &dev()).unwrap();
    let whole = model().decode(&one, 0).unwrap();
    assert_eq!(whole.dims(), [1, 1, 320]);
    let mut st = model().new_decode_state();
    assert_close("1-frame stream", &streamed(&one, 1, &mut st), &whole);
}

/// The release layout links `SpeechTokenizer/` from `model/`: same codes and strings.
#[test]
fn release_layout_loads_the_same_codec() {
    let root = mio_tests::release_layout();
    let codec = SpeechTokenizer::load(&root.join("SpeechTokenizer"), &dev()).unwrap();
    let tok = TextTokenizer::load(&root).unwrap();
    let audio = read_wav(wav_path("s16k")).unwrap();
    let codes = codec.encode_audio(&audio).unwrap();
    assert_eq!(codes, golden_codes("s16k.codes"));
    let timbre = speech_string(tok.vocab(), &codes, true).unwrap();
    assert_eq!(
        timbre,
        input("s16k")["speech_string_with_timbre"].as_str().unwrap()
    );
    // The `transform` feature of layer 0: (1, frames, semantic_dimension).
    let feats = codec.semantic_features(&codes_tensor(&codes, &dev()).unwrap());
    assert_eq!(feats.unwrap().dims(), [1, 100, 16]);
    let cfg = codec.config();
    assert_eq!(
        (
            cfg.dimension,
            cfg.semantic_dimension,
            cfg.n_q,
            cfg.hop_length()
        ),
        (24, 16, 8, 320)
    );
}
