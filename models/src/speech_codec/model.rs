//! `SpeechTokenizer` of `speech_tokenizer/model.py`: SEANet encoder (BiLSTM) → 8-layer RVQ
//! → SEANet decoder, plus the `transform` linear (`dimension → semantic_dimension`, used by
//! upstream `forward` for the semantic distillation feature of RVQ layer 0), and the audio
//! front end of `MIOTokenizer.tokenize_speeches` (`torchaudio.load`, resample to 16 kHz).
//!
//! Tensor prefixes: `encoder.*`, `transform.{weight,bias}`, `quantizer.vq.layers.*`,
//! `decoder.*`, read from `SpeechTokenizer/SpeechTokenizer.pt` through the safe pickle reader.
//!
//! Shapes: encode `(B, 1, T)` (16 kHz) → codes `(n_q, B, ⌈T / 320⌉)` (u32); decode codes
//! `(n, B, F)` of layers `st..st + n` → `(B, 1, F · 320)`. Decoding fewer layers than
//! `n_q` (MIO's 4, or the content layer alone for a preview) sums only those layers, as
//! upstream `decode`. Streaming decode: [`SpeechTokenizer::decode_step`] /
//! [`SpeechTokenizer::decode_finish`] with a [`SpeechDecodeState`].

use std::collections::BTreeSet;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::checkpoint::tracked_var_builder;
use super::config::{Config, SpeechTokenizerConfig};
use super::quantization::ResidualVectorQuantizer;
use super::resample::resample;
use super::seanet::{SEANetDecoder, SEANetDecoderState, SEANetEncoder};
use super::tokens::speech_layers_from_string;
use super::wav::WavAudio;
use crate::weights_file::{preferred_weights, WeightFile};
use crate::{Error, Result};

/// File names inside the release's `SpeechTokenizer/` folder.
pub const CONFIG_FILE: &str = "config.json";
/// The checkpoint (a `torch.save` state dict).
pub const CHECKPOINT_FILE: &str = "SpeechTokenizer.pt";

/// The SpeechTokenizer codec.
#[derive(Debug, Clone)]
pub struct SpeechTokenizer {
    cfg: Config,
    encoder: SEANetEncoder,
    /// `None` when `dimension == semantic_dimension` (`nn.Identity`).
    transform: Option<Linear>,
    quantizer: ResidualVectorQuantizer,
    decoder: SEANetDecoder,
    device: Device,
}

/// Streaming decode state (one per audio stream).
#[derive(Debug, Clone)]
pub struct SpeechDecodeState {
    decoder: SEANetDecoderState,
    /// RVQ layers of the stream, fixed by its first chunk.
    layers: Option<usize>,
}

impl SpeechDecodeState {
    /// Back to the start of a new stream.
    pub fn reset(&mut self) {
        self.decoder.reset();
        self.layers = None;
    }
}

/// Whether `name` is a training-only buffer of the checkpoint (never read at inference).
pub fn is_training_buffer(name: &str) -> bool {
    name.starts_with("quantizer.")
        && [".inited", ".cluster_size", ".embed_avg"]
            .iter()
            .any(|s| name.ends_with(s))
}

impl SpeechTokenizer {
    /// Builds the codec from `vb` (the checkpoint root).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let encoder = SEANetEncoder::new(cfg, vb.pp("encoder"))?;
        let transform = (cfg.dimension != cfg.semantic_dimension)
            .then(|| candle_nn::linear(cfg.dimension, cfg.semantic_dimension, vb.pp("transform")))
            .transpose()?;
        let quantizer = ResidualVectorQuantizer::new(
            cfg.dimension,
            cfg.n_q,
            cfg.codebook_size,
            vb.pp("quantizer"),
        )?;
        let decoder = SEANetDecoder::new(cfg, vb.pp("decoder"))?;
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            transform,
            quantizer,
            decoder,
            device: vb.device().clone(),
        })
    }

    /// Loads `dir/config.json` and `dir/SpeechTokenizer.pt` (or its `.safetensors` copy, preferred; `dir` = the release's
    /// `SpeechTokenizer/` folder) in float32 on `dev`.
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        Ok(Self::load_with_unread(dir, dev)?.0)
    }

    /// [`Self::load`], also returning the checkpoint tensors that were never read.
    pub fn load_with_unread(dir: &Path, dev: &Device) -> Result<(Self, Vec<String>)> {
        let cfg_path = dir.join(CONFIG_FILE);
        let ckpt_path = preferred_weights(&dir.join(CHECKPOINT_FILE));
        for p in [&cfg_path, &ckpt_path] {
            if !p.is_file() {
                return Err(Error::MissingFile(p.clone()));
            }
        }
        let cfg = Config::from_file_config(&SpeechTokenizerConfig::load(&cfg_path)?)?;
        let file = WeightFile::open(&ckpt_path)?;
        let all: BTreeSet<String> = file.names().map(str::to_string).collect();
        let (vb, log) = tracked_var_builder(file, dev);
        let model = Self::new(&cfg, vb).map_err(|e| match e {
            Error::Candle(e) => Error::checkpoint(&ckpt_path, e.to_string()),
            other => other,
        })?;
        let read = log.names();
        let unread = all.difference(&read).cloned().collect();
        Ok((model, unread))
    }

    /// The runtime config.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// SEANet encoder output `(B, dimension, F)` of `(B, 1, T)` audio.
    pub fn encoder_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (_, channels, len) = xs.dims3().map_err(|_| {
            Error::InvalidArgument(format!(
                "speech input must be (batch, channels, samples), got {:?}",
                xs.dims()
            ))
        })?;
        if channels != self.cfg.channels || len == 0 {
            return Err(Error::InvalidArgument(format!(
                "speech input must have {} channel(s) and samples, got shape {:?}",
                self.cfg.channels,
                xs.dims()
            )));
        }
        self.encoder.forward(&xs.to_dtype(DType::F32)?)
    }

    /// `SpeechTokenizer.encode(x)` (all `n_q` layers): codes `(n_q, B, F)`, u32.
    pub fn encode(&self, xs: &Tensor) -> Result<Tensor> {
        let e = self.encoder_forward(xs)?;
        self.quantizer.encode(&e, self.cfg.n_q, 0)
    }

    /// Sum of the RVQ decodes of codes `(n, B, F)` of layers `st..st + n` (the decoder
    /// input), `(B, dimension, F)`.
    pub fn decoder_input(&self, codes: &Tensor, st: usize) -> Result<Tensor> {
        self.quantizer.decode(codes, st)
    }

    /// `SpeechTokenizer.decode(codes, st)`: audio `(B, 1, F · hop)`.
    pub fn decode(&self, codes: &Tensor, st: usize) -> Result<Tensor> {
        self.decoder.forward(&self.decoder_input(codes, st)?)
    }

    /// The `transform` of RVQ layer 0's quantized latent (upstream `forward`'s `feature`):
    /// `(B, F, semantic_dimension)` from codes `(n ≥ 1, B, F)`.
    pub fn semantic_features(&self, codes: &Tensor) -> Result<Tensor> {
        let first = codes.narrow(0, 0, 1.min(codes.dim(0)?))?;
        let q = self.quantizer.decode(&first, 0)?.transpose(1, 2)?;
        match &self.transform {
            Some(t) => Ok(t.forward(&q)?),
            None => Ok(q),
        }
    }

    /// A fresh streaming decode state.
    pub fn new_decode_state(&self) -> SpeechDecodeState {
        SpeechDecodeState {
            decoder: self.decoder.new_state(),
            layers: None,
        }
    }

    /// Decodes one chunk of codes `(n, B, f)` (layers `0..n`, the same `n` for the whole
    /// stream): the audio samples that are final so far, `(B, 1, k)`, or `None`.
    pub fn decode_step(
        &self,
        state: &mut SpeechDecodeState,
        codes: &Tensor,
    ) -> Result<Option<Tensor>> {
        let n = codes.dims().first().copied().unwrap_or(0);
        match state.layers {
            Some(l) if l != n => {
                return Err(Error::InvalidArgument(format!(
                    "this speech stream decodes {l} RVQ layers, the chunk has {n}"
                )))
            }
            _ => {}
        }
        let latent = self.quantizer.decode(codes, 0)?;
        state.layers = Some(n);
        self.decoder.step(&mut state.decoder, &latent)
    }

    /// Ends the stream: the last samples; the state is reset for a new stream.
    pub fn decode_finish(&self, state: &mut SpeechDecodeState) -> Result<Option<Tensor>> {
        let out = self.decoder.finish(&mut state.decoder);
        state.reset();
        out
    }

    /// The encoder input of `tokenize_speeches`: the `(channels, samples)` audio as
    /// `(1, channels, samples)`, resampled to the codec rate when it differs.
    pub fn prepare_input(&self, audio: &WavAudio) -> Result<Tensor> {
        prepare_input(audio, self.cfg.sample_rate, &self.device)
    }

    /// Codes of one clip, one `Vec` per RVQ layer (`n_q` of them).
    pub fn encode_audio(&self, audio: &WavAudio) -> Result<Vec<Vec<u32>>> {
        let codes = self.encode(&self.prepare_input(audio)?)?;
        Ok(codes.squeeze(1)?.to_vec2::<u32>()?)
    }

    /// Audio samples of a MIO speech string (`<spch>…</spch>` with 4 layers, or the content
    /// layer alone for a preview).
    pub fn decode_speech_string(&self, s: &str) -> Result<Vec<f32>> {
        let layers = speech_layers_from_string(s, self.cfg.codebook_size as u32)?;
        self.decode_layers(&layers)
    }

    /// Audio samples of codes given as layers `0..n` (one `Vec` per layer, equal lengths).
    pub fn decode_layers(&self, layers: &[Vec<u32>]) -> Result<Vec<f32>> {
        let codes = codes_tensor(layers, &self.device)?;
        Ok(self.decode(&codes, 0)?.flatten_all()?.to_vec1::<f32>()?)
    }
}

/// `(n, 1, F)` u32 codes of `n` equal-length layers.
pub fn codes_tensor(layers: &[Vec<u32>], dev: &Device) -> Result<Tensor> {
    let frames = layers.first().map_or(0, Vec::len);
    if frames == 0 || layers.iter().any(|l| l.len() != frames) {
        return Err(Error::InvalidArgument(format!(
            "speech codes need 1+ layers of equal, non-zero length, got lengths {:?}",
            layers.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    let flat: Vec<u32> = layers.iter().flatten().copied().collect();
    Ok(Tensor::from_vec(flat, (layers.len(), 1, frames), dev)?)
}

/// `wav.unsqueeze(0)` of `(channels, samples)` audio, resampled to `rate` when needed.
pub fn prepare_input(audio: &WavAudio, rate: u32, dev: &Device) -> Result<Tensor> {
    let channels = audio.samples.len();
    let len = audio.len();
    if channels == 0 || len == 0 || audio.samples.iter().any(|c| c.len() != len) {
        return Err(Error::InvalidArgument(
            "speech input holds no samples (or channels of unequal length)".into(),
        ));
    }
    let flat: Vec<f32> = audio.samples.iter().flatten().copied().collect();
    let wav = Tensor::from_vec(flat, (1, channels, len), dev)?;
    resample(&wav, audio.sample_rate, rate)
}
