//! The engine's media codecs: SpeechTokenizer, the SEED image encoder and the unCLIP image
//! decoder, each available when its folder exists in the release. By default each is loaded
//! when a request first needs it ([`CodecLoading::OnFirstUse`]): a text conversation never
//! holds the image encoder's 4 GB of f32 weights (nor the unCLIP UNet's 3.5 GB), and the
//! engine starts in the time its tokenizer and LM take. [`CodecLoading::AtLoad`] loads
//! every present codec with the engine (benchmarks, and callers that want bad weights
//! reported at start).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;

use std::sync::atomic::AtomicBool;

use super::types::{
    AudioInput, CodecLoading, Conversation, DecodedImage, Event, ImageInput, MediaInputs,
    OutputSegment,
};
use crate::image_decoder::{DecodeOptions, UnclipDecoder, UNCLIP_DIR};
use crate::image_tokenizer::{decode_rgb, SeedImageEncoder};
use crate::speech_codec::{speech_string, SpeechTokenizer, WavAudio};
use crate::text::image_block;
use crate::text::MioVocab;
use crate::{Error, Result};

/// Media codecs found in a release folder.
pub(crate) struct Codecs {
    dir: PathBuf,
    dev: Device,
    cache_dir: Option<PathBuf>,
    speech: Slot<SpeechTokenizer>,
    image_encoder: Slot<SeedImageEncoder>,
    image_decoder: Slot<UnclipDecoder>,
}

/// A codec: whether the release has it, and the loaded codec once loaded.
struct Slot<T> {
    present: bool,
    loaded: OnceLock<T>,
}

impl<T> Slot<T> {
    fn new(present: bool) -> Self {
        Self {
            present,
            loaded: OnceLock::new(),
        }
    }

    /// Whether the codec still has to be loaded.
    fn pending(&self) -> bool {
        self.present && self.loaded.get().is_none()
    }

    /// The codec, loaded by `load` the first time (a failed load is not kept: the next
    /// call tries again and reports the same error); `missing` when the release lacks it.
    fn get(&self, missing: &str, load: impl FnOnce() -> Result<T>) -> Result<&T> {
        if !self.present {
            return Err(Error::Unsupported(missing.into()));
        }
        if let Some(codec) = self.loaded.get() {
            return Ok(codec);
        }
        let codec = load()?;
        Ok(self.loaded.get_or_init(|| codec))
    }
}

const NO_SPEECH: &str =
    "this model folder has no SpeechTokenizer/ (speech input and output need it)";
const NO_ENCODER: &str = "this model folder has no seed-tokenizer-2/ (image input needs it)";
const NO_DECODER: &str =
    "this model folder has no stable-diffusion-2-1-unclip/ (image output needs it)";

/// Which codecs a request needs (see [`Codecs::prepare`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Needs {
    pub speech: bool,
    pub image_encoder: bool,
    pub image_decoder: bool,
}

/// The stage of a codec's [`Event::Progress`] events begins with this.
pub const LOADING_STAGE: &str = "loading the ";

/// How the pictures of an answer are drawn.
pub(crate) struct Render<'a> {
    /// unCLIP options.
    pub opts: DecodeOptions,
    /// Checked between denoising steps.
    pub cancel: &'a AtomicBool,
}

impl Codecs {
    /// Finds the codecs of `dir` (`cache_dir`: where unCLIP's empty-prompt embedding is
    /// cached) and, with [`CodecLoading::AtLoad`], loads them.
    pub(crate) fn load(
        dir: &Path,
        dev: &Device,
        cache_dir: Option<&Path>,
        loading: CodecLoading,
    ) -> Result<Self> {
        let has_seed = dir.join("seed-tokenizer-2").is_dir();
        let codecs = Self {
            dir: dir.to_path_buf(),
            dev: dev.clone(),
            cache_dir: cache_dir.map(Path::to_path_buf),
            speech: Slot::new(dir.join("SpeechTokenizer").is_dir()),
            image_encoder: Slot::new(has_seed),
            image_decoder: Slot::new(dir.join(UNCLIP_DIR).is_dir() && has_seed),
        };
        if loading == CodecLoading::AtLoad {
            let all = Needs {
                speech: true,
                image_encoder: true,
                image_decoder: true,
            };
            codecs.prepare(all, &mut |_| {})?;
        }
        Ok(codecs)
    }

    /// Loads the codecs of `needs` that the release has and that are not loaded yet, each
    /// between two [`Event::Progress`] events (`stage` = "loading the …", step 0 then 1 of
    /// 1) so that a user sees why the first image or speech turn waits.
    pub(crate) fn prepare(&self, needs: Needs, emit: &mut dyn FnMut(Event)) -> Result<()> {
        let mut step = |what: &str, pending: bool, load: &dyn Fn() -> Result<()>| {
            if !pending {
                return Ok(());
            }
            let stage = format!("{LOADING_STAGE}{what}");
            emit(Event::Progress {
                stage: stage.clone(),
                step: 0,
                total: 1,
            });
            load()?;
            emit(Event::Progress {
                stage,
                step: 1,
                total: 1,
            });
            Ok(())
        };
        step(
            "SpeechTokenizer",
            needs.speech && self.speech.pending(),
            &|| self.speech().map(|_| ()),
        )?;
        step(
            "SEED image encoder",
            needs.image_encoder && self.image_encoder.pending(),
            &|| self.image_encoder().map(|_| ()),
        )?;
        step(
            "unCLIP image decoder",
            needs.image_decoder && self.image_decoder.pending(),
            &|| self.image_decoder().map(|_| ()),
        )
    }

    fn image_encoder(&self) -> Result<&SeedImageEncoder> {
        self.image_encoder
            .get(NO_ENCODER, || SeedImageEncoder::load(&self.dir, &self.dev))
    }

    fn image_decoder(&self) -> Result<&UnclipDecoder> {
        self.image_decoder.get(NO_DECODER, || {
            UnclipDecoder::load_with_cache(&self.dir, &self.dev, self.cache_dir.as_deref())
        })
    }

    fn speech(&self) -> Result<&SpeechTokenizer> {
        self.speech.get(NO_SPEECH, || {
            SpeechTokenizer::load(&self.dir.join("SpeechTokenizer"), &self.dev)
        })
    }

    /// RVQ codes (`n_q × frames`) of a clip.
    pub(crate) fn encode_speech(&self, audio: &AudioInput) -> Result<Vec<Vec<u32>>> {
        if audio.samples.is_empty() || audio.sample_rate == 0 {
            return Err(Error::InvalidArgument("the audio clip is empty".into()));
        }
        let wav = WavAudio {
            sample_rate: audio.sample_rate,
            samples: vec![audio.samples.clone()],
        };
        self.speech()?.encode_audio(&wav)
    }

    /// The MIO speech strings of clips: content only, or with timbre (voice mode).
    pub(crate) fn speech_strings(
        &self,
        vocab: &MioVocab,
        clips: &[AudioInput],
        timbre: bool,
    ) -> Result<Vec<String>> {
        clips
            .iter()
            .map(|clip| speech_string(vocab, &self.encode_speech(clip)?, timbre))
            .collect()
    }

    /// Audio of speech layers (`[content]` alone gives the progressive preview).
    pub(crate) fn decode_speech_layers(&self, layers: &[Vec<u32>]) -> Result<Vec<f32>> {
        self.speech()?.decode_layers(layers)
    }

    /// Audio of a speech string.
    pub(crate) fn decode_speech_string(&self, tokens: &str) -> Result<Vec<f32>> {
        self.speech()?.decode_speech_string(tokens)
    }

    /// SEED codes (32) of one image file's bytes.
    pub(crate) fn encode_image(&self, image: &ImageInput) -> Result<Vec<u32>> {
        let rgb = decode_rgb(&image.bytes).map_err(|message| Error::ImageDecode {
            path: image.name.clone().into(),
            message,
        })?;
        self.image_encoder()?.encode_rgb(&rgb)
    }

    /// The MIO image strings of images.
    pub(crate) fn image_strings(
        &self,
        vocab: &MioVocab,
        images: &[ImageInput],
    ) -> Result<Vec<String>> {
        images
            .iter()
            .map(|img| image_block(vocab, &self.encode_image(img)?))
            .collect()
    }

    /// The picture of 32 codes, reporting each denoising step.
    pub(crate) fn decode_image(
        &self,
        codes: &[u32],
        render: &Render<'_>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<DecodedImage> {
        let decoder = self.image_decoder()?;
        let mut progress = |p: crate::image_decoder::DecodeStep| report_step(p, emit);
        let img = decoder.decode(codes, &render.opts, &mut progress, render.cancel)?;
        Ok(DecodedImage {
            width: img.width as u32,
            height: img.height as u32,
            rgb: img.data,
        })
    }

    /// The picture of 32 codes from pinned initial latents and embedding noise (one-tensor
    /// safetensors files), as the reference goldens pin them.
    pub(crate) fn decode_image_pinned(
        &self,
        codes: &[u32],
        latents: &Path,
        noise: &Path,
        render: &Render<'_>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<DecodedImage> {
        let decoder = self.image_decoder()?;
        let dev = decoder.device().clone();
        let latents = one_tensor(latents, &dev)?;
        let noise = one_tensor(noise, &dev)?;
        let embeds = decoder.image_embedding(codes)?;
        let (b, c, h, w) = decoder.latent_shape();
        if latents.dims() != [b, c, h, w] || noise.dims() != embeds.dims() {
            return Err(Error::InvalidArgument(format!(
                "pinned latents {:?} / noise {:?} do not fit this decoder (latents {:?}, noise {:?})",
                latents.dims(),
                noise.dims(),
                decoder.latent_shape(),
                embeds.dims()
            )));
        }
        let mut progress = |p: crate::image_decoder::DecodeStep| report_step(p, emit);
        let out = decoder.decode_pinned(
            &embeds,
            &latents,
            &noise,
            &render.opts,
            &mut progress,
            render.cancel,
        )?;
        Ok(DecodedImage {
            width: out.image.width as u32,
            height: out.image.height as u32,
            rgb: out.image.data,
        })
    }

    /// Attaches decoded audio and pictures to the segments whose codec the release has
    /// (loading it if needed).
    pub(crate) fn render(
        &self,
        segments: &mut [OutputSegment],
        render: &Render<'_>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<()> {
        for seg in segments {
            match seg {
                OutputSegment::Speech {
                    content,
                    timbre,
                    audio,
                } => {
                    if !self.speech.present {
                        continue;
                    }
                    let needs = Needs {
                        speech: true,
                        ..Needs::default()
                    };
                    self.prepare(needs, emit)?;
                    let codec = self.speech()?;
                    let mut layers = vec![content.clone()];
                    layers.extend(timbre.iter().flatten().cloned());
                    *audio = Some(codec.decode_layers(&layers)?);
                }
                OutputSegment::Image { codes, image } if self.image_decoder.present => {
                    let needs = Needs {
                        image_decoder: true,
                        ..Needs::default()
                    };
                    self.prepare(needs, emit)?;
                    *image = Some(self.decode_image(codes, render, emit)?);
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The conversation names as many images and clips as `media` holds.
pub(crate) fn check_media(conversation: &Conversation, media: &MediaInputs) -> Result<()> {
    if conversation.images.len() != media.images.len() {
        return Err(Error::InvalidArgument(format!(
            "the conversation names {} image(s) but {} were given",
            conversation.images.len(),
            media.images.len()
        )));
    }
    if conversation.speech.len() != media.speech.len() {
        return Err(Error::InvalidArgument(format!(
            "the conversation names {} audio file(s) but {} clip(s) were given",
            conversation.speech.len(),
            media.speech.len()
        )));
    }
    Ok(())
}

/// A denoising step as events: its preview (when it has one), then its progress.
fn report_step(p: crate::image_decoder::DecodeStep, emit: &mut dyn FnMut(Event)) {
    if let Some(img) = p.preview {
        emit(Event::ImagePreview {
            step: p.step,
            total: p.total,
            width: img.width as u32,
            height: img.height as u32,
            rgb: img.data,
        });
    }
    emit(Event::Progress {
        stage: "image".into(),
        step: p.step,
        total: p.total,
    });
}

/// The single f32 tensor of a safetensors file.
fn one_tensor(path: &Path, dev: &Device) -> Result<candle_core::Tensor> {
    if !path.is_file() {
        return Err(Error::MissingFile(path.to_path_buf()));
    }
    let tensors = candle_core::safetensors::load(path, dev)
        .map_err(|e| Error::checkpoint(path, e.to_string()))?;
    let mut values = tensors.into_values();
    match (values.next(), values.next()) {
        (Some(t), None) => Ok(t.to_dtype(candle_core::DType::F32)?),
        _ => Err(Error::checkpoint(path, "expected exactly one tensor")),
    }
}

/// Watches streamed tokens for the moment a speech block's content layer is complete (the
/// first timbre token arrives) and hands out its content codes once per block.
#[derive(Debug, Default)]
pub(crate) struct SpeechPreview {
    in_block: bool,
    sent: bool,
    blocks: usize,
    content: Vec<u32>,
}

impl SpeechPreview {
    /// Feeds one token; returns `(block index, content codes)` when a preview is due.
    pub(crate) fn push(&mut self, vocab: &MioVocab, token: u32) -> Option<(usize, Vec<u32>)> {
        if token == vocab.speech_start {
            self.in_block = true;
            self.sent = false;
            self.content.clear();
            return None;
        }
        if token == vocab.speech_end || !self.in_block {
            if self.in_block {
                self.in_block = false;
                self.blocks += 1;
            }
            return None;
        }
        let n = vocab.speech_token(token)?;
        if self.sent {
            return None;
        }
        if n < vocab.speech_codebook_size {
            self.content.push(n);
            return None;
        }
        self.sent = true;
        (!self.content.is_empty()).then(|| (self.blocks, self.content.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tiny_vocab as vocab;

    #[test]
    fn preview_fires_once_when_the_content_layer_ends() {
        let v = vocab();
        let mut p = SpeechPreview::default();
        let spch = |n: u32| v.spch0 + n;
        let stream = [
            500,
            v.speech_start,
            spch(5),
            spch(7),
            spch(1024 + 3),
            spch(1024 + 4),
        ];
        let fired: Vec<_> = stream.iter().filter_map(|&t| p.push(&v, t)).collect();
        assert_eq!(fired, vec![(0, vec![5, 7])]);
        // Second block gets index 1; a content-only block never fires.
        let more = [
            v.speech_end,
            v.speech_start,
            spch(9),
            v.speech_end,
            v.speech_start,
            spch(1),
            spch(2048),
        ];
        let fired: Vec<_> = more.iter().filter_map(|&t| p.push(&v, t)).collect();
        assert_eq!(fired, vec![(2, vec![1])]);
    }
}
