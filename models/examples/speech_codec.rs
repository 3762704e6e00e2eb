//! Encodes a WAV file with SpeechTokenizer (resampling to 16 kHz when needed), prints the
//! RVQ codes and the MIO speech strings, then decodes the 4 MIO layers back to audio chunk
//! by chunk (the streaming decoder) and writes a float32 WAV.
//!
//! ```text
//! cargo run -p mio-models --example speech_codec -- tests/fixtures/model \
//!     tests/fixtures/golden/inputs/speech_22k.wav /tmp/speech_decoded.wav
//! ```

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use mio_models::speech_codec::{
    codes_tensor, read_wav, speech_string, write_wav, SpeechTokenizer, WavAudio, WavEncoding,
};
use mio_models::text::TextTokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, audio, out] = args.as_slice() else {
        return Err("usage: speech_codec MODEL_DIR AUDIO.wav OUT.wav".into());
    };
    let model_dir = PathBuf::from(model_dir);
    let dev = Device::Cpu;
    let codec = SpeechTokenizer::load(&model_dir.join("SpeechTokenizer"), &dev)?;
    let vocab = TextTokenizer::load(&model_dir)?.vocab().clone();

    let audio = read_wav(audio)?;
    println!(
        "input: {} Hz, {} channel(s), {} samples",
        audio.sample_rate,
        audio.samples.len(),
        audio.len()
    );
    let t = Instant::now();
    let codes = codec.encode_audio(&audio)?;
    println!(
        "encode: {} layers x {} frames in {:.2?}",
        codes.len(),
        codes[0].len(),
        t.elapsed()
    );
    for (k, layer) in codes.iter().enumerate() {
        let head: Vec<String> = layer.iter().take(12).map(u32::to_string).collect();
        println!("  layer {k}: {} ...", head.join(" "));
    }
    let content = speech_string(&vocab, &codes, false)?;
    let timbre = speech_string(&vocab, &codes, true)?;
    println!(
        "content-only string: {} chars, with timbre: {} chars",
        content.len(),
        timbre.len()
    );

    // Streaming decode of the 4 MIO layers, 10 frames (200 ms) per chunk.
    let mio_layers = codes_tensor(&codes[..4], &dev)?;
    let mut state = codec.new_decode_state();
    let mut parts: Vec<Tensor> = Vec::new();
    let t = Instant::now();
    let frames = mio_layers.dim(2)?;
    for start in (0..frames).step_by(10) {
        let chunk = mio_layers.narrow(2, start, 10.min(frames - start))?;
        parts.extend(codec.decode_step(&mut state, &chunk)?);
    }
    parts.extend(codec.decode_finish(&mut state)?);
    let wav = Tensor::cat(&parts, 2)?.flatten_all()?.to_vec1::<f32>()?;
    println!(
        "decode (streamed, {} chunks out): {} samples in {:.2?}",
        parts.len(),
        wav.len(),
        t.elapsed()
    );
    let decoded = WavAudio {
        sample_rate: codec.config().sample_rate,
        samples: vec![wav],
    };
    write_wav(out, &decoded, WavEncoding::Float32)?;
    println!("wrote {out}");
    Ok(())
}
