//! The engine's media codecs: SpeechTokenizer today (image encoder and decoder attach
//! here too). Loaded with the engine when their folders exist in the release.

use std::path::Path;

use candle_core::Device;

use super::types::{AudioInput, OutputSegment};
use crate::speech_codec::{speech_string, SpeechTokenizer, WavAudio};
use crate::text::MioVocab;
use crate::{Error, Result};

/// Media codecs found in a release folder.
pub(crate) struct Codecs {
    speech: Option<SpeechTokenizer>,
}

impl Codecs {
    /// Loads every codec whose folder is present.
    pub(crate) fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let speech_dir = dir.join("SpeechTokenizer");
        let speech = if speech_dir.is_dir() {
            Some(SpeechTokenizer::load(&speech_dir, dev)?)
        } else {
            None
        };
        Ok(Self { speech })
    }

    fn speech(&self) -> Result<&SpeechTokenizer> {
        self.speech.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "this model folder has no SpeechTokenizer/ (speech input and output need it)"
                    .into(),
            )
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

    /// Audio of a speech string.
    pub(crate) fn decode_speech_string(&self, tokens: &str) -> Result<Vec<f32>> {
        self.speech()?.decode_speech_string(tokens)
    }

    /// Attaches decoded audio to speech segments (when the codec is loaded).
    pub(crate) fn render(&self, segments: &mut [OutputSegment]) -> Result<()> {
        let Some(codec) = self.speech.as_ref() else {
            return Ok(());
        };
        for seg in segments {
            if let OutputSegment::Speech {
                content,
                timbre,
                audio,
            } = seg
            {
                let mut layers = vec![content.clone()];
                layers.extend(timbre.iter().flatten().cloned());
                *audio = Some(codec.decode_layers(&layers)?);
            }
        }
        Ok(())
    }
}
