//! Generation parameters: a subset of transformers 4.34 `GenerationConfig`
//! (`generation/configuration_utils.py`) plus MIO's own knobs (stop sequences, modality
//! constraints, seed), the per-task presets of the reference `infer.py`, and validation.
//!
//! Defaults equal transformers' (`top_k` 50, `early_stopping` False, ...) except
//! `max_new_tokens` (no HF default; 512 as in `infer.py`) and `eos_token_ids` /
//! `pad_token_id` (HF takes them from the model's `generation_config.json`; here the caller
//! sets them, the presets take them from [`MioVocab`]).
//!
//! Deviations: one returned sequence per prompt (`num_return_sequences` = 1, as `infer.py`);
//! no group beam search, contrastive search or the rarer processors (min length, n-gram
//! blocking, ...) that MIO never uses; `temperature`, `repetition_penalty` and `top_p` are
//! checked even where HF would only warn or ignore them.

use crate::text::MioVocab;
use crate::{Error, Result};

/// When beam search stops (HF `early_stopping`: `False`, `True` or `"never"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// HF `False` (the default): stop a prompt once its best running beam, with the current
    /// length, cannot beat the worst of `num_beams` finished hypotheses.
    #[default]
    Heuristic,
    /// HF `True`: stop a prompt as soon as it has `num_beams` finished hypotheses.
    OnFull,
    /// HF `"never"`: stop only when no better hypothesis is possible (canonical beam search).
    Never,
}

/// The tasks of the reference `infer.py`, each with its recommended settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Text generation (captioning, ASR, chat): beam 5.
    Text,
    /// Image generation: beam 5, repetition penalty 1.15.
    ImageGeneration,
    /// Text to speech: sampling, top-p 0.7, repetition penalty 1.15.
    Tts,
    /// Speech generation other than TTS: beam 5, repetition penalty 2.0.
    SpeechGeneration,
    /// Speech to speech: beam 5, repetition penalty 1.15.
    SpeechToSpeech,
    /// Video generation (keyframe sequences): sampling, top-p 0.7, repetition penalty 1.15.
    VideoGeneration,
    /// Multimodal interleaved generation: sampling, top-p 0.7, repetition penalty 1.15.
    Interleaved,
}

impl Task {
    /// The task's search from `infer.py`: (beams, sampling, repetition penalty).
    pub fn search(self) -> (usize, bool, f32) {
        match self {
            Task::Text => (5, false, 1.0),
            Task::ImageGeneration => (5, false, 1.15),
            Task::Tts => (1, true, 1.15),
            Task::SpeechGeneration => (5, false, 2.0),
            Task::SpeechToSpeech => (5, false, 1.15),
            Task::VideoGeneration | Task::Interleaved => (1, true, 1.15),
        }
    }

    /// The task's name as `infer.py`'s docstring groups them.
    pub fn name(self) -> &'static str {
        match self {
            Task::Text => "text generation",
            Task::ImageGeneration => "image generation",
            Task::Tts => "text to speech",
            Task::SpeechGeneration => "speech generation",
            Task::SpeechToSpeech => "speech to speech",
            Task::VideoGeneration => "video generation",
            Task::Interleaved => "interleaved generation",
        }
    }
}

/// Everything that controls one `generate` call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Most tokens generated per prompt (HF `max_new_tokens`), at least 1.
    pub max_new_tokens: usize,
    /// Beams; 1 = greedy or sampling.
    pub num_beams: usize,
    /// Sample instead of taking the arg-max (with `num_beams` > 1: HF beam sampling).
    pub do_sample: bool,
    /// Sampling temperature (> 0); 1.0 = no `TemperatureLogitsWarper`.
    pub temperature: f32,
    /// Keep the `top_k` best tokens when sampling; 0 = off. HF default 50.
    pub top_k: usize,
    /// Nucleus sampling mass in `[0, 1]`; 1.0 = off (f64 like HF's Python float).
    pub top_p: f64,
    /// HF `RepetitionPenaltyLogitsProcessor` (> 0); 1.0 = off.
    pub repetition_penalty: f32,
    /// Beam score = sum of log-probs / length^`length_penalty` (length includes the prompt;
    /// f64 like HF's Python float arithmetic).
    pub length_penalty: f64,
    /// When beam search stops.
    pub early_stopping: EarlyStopping,
    /// Tokens that end a sequence; the first one is what HF's beam finalize appends.
    pub eos_token_ids: Vec<u32>,
    /// Token for left padding and for rows that already finished.
    pub pad_token_id: u32,
    /// Seed of the sampling RNG (same seed, same model → same output).
    pub seed: u64,
    /// Token sequences that end generation like an eos (kept in the output). Greedy and
    /// sampling only.
    pub stop_sequences: Vec<Vec<u32>>,
    /// Apply MIO's modality constraints (well-formed image and speech blocks).
    pub constraints: bool,
    /// Under constraints, speech blocks carry the three timbre layers after the content
    /// layer (MIO's speech output); otherwise content only.
    pub speech_timbre: bool,
    /// Keep the processed scores of every step (HF `output_scores`) in the output.
    pub output_scores: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 512,
            num_beams: 1,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            repetition_penalty: 1.0,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            eos_token_ids: Vec::new(),
            pad_token_id: 0,
            seed: 0,
            stop_sequences: Vec::new(),
            constraints: false,
            speech_timbre: false,
            output_scores: false,
        }
    }
}

impl GenerationConfig {
    /// The settings `infer.py` recommends for `task` on the Instruct model.
    ///
    /// Common part from `infer.py`'s `generation_config`: `temperature` 1.0, `top_p` 0.7,
    /// `top_k` 0, `length_penalty` 1.0, `max_new_tokens` 512, eos `<|im_end|>`, pad = the
    /// tokenizer's pad (`<unk>`). Beams, sampling and repetition penalty per task from its
    /// docstring. Modality constraints are on (our addition); speech tasks request the
    /// timbre layers.
    pub fn preset(task: Task, vocab: &MioVocab) -> Self {
        let (num_beams, do_sample, repetition_penalty) = task.search();
        let speech_timbre = matches!(
            task,
            Task::Tts | Task::SpeechGeneration | Task::SpeechToSpeech
        );
        Self {
            max_new_tokens: 512,
            num_beams,
            do_sample,
            temperature: 1.0,
            top_k: 0,
            top_p: 0.7,
            repetition_penalty,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
            eos_token_ids: vec![vocab.im_end],
            pad_token_id: vocab.unk,
            seed: 0,
            stop_sequences: Vec::new(),
            constraints: true,
            speech_timbre,
            output_scores: false,
        }
    }

    /// Checks the parameters on their own (the prompt and the model are checked by
    /// `generate`). Errors are [`Error::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidArgument(msg));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.num_beams == 0 {
            return bad("num_beams must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("temperature must be > 0, got {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            ));
        }
        if !self.length_penalty.is_finite() {
            return bad(format!(
                "length_penalty must be finite, got {}",
                self.length_penalty
            ));
        }
        if self.stop_sequences.iter().any(Vec::is_empty) {
            return bad("stop sequences must not be empty".into());
        }
        if self.num_beams > 1 && !self.stop_sequences.is_empty() {
            return bad("stop sequences need num_beams = 1".into());
        }
        Ok(())
    }

    /// Checks the token ids of the config against a vocabulary of `vocab_size` tokens.
    pub fn validate_ids(&self, vocab_size: usize) -> Result<()> {
        let ids = self
            .eos_token_ids
            .iter()
            .chain(std::iter::once(&self.pad_token_id))
            .chain(self.stop_sequences.iter().flatten());
        for &id in ids {
            if id as usize >= vocab_size {
                return Err(Error::UnknownTokenId { id, vocab_size });
            }
        }
        Ok(())
    }

    /// True when `token` is one of the eos tokens.
    pub fn is_eos(&self, token: u32) -> bool {
        self.eos_token_ids.contains(&token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::generation::test_util::tiny_vocab;

    #[test]
    fn presets_follow_infer_py() {
        let v = tiny_vocab();
        let text = GenerationConfig::preset(Task::Text, &v);
        assert_eq!(
            (text.num_beams, text.do_sample, text.repetition_penalty),
            (5, false, 1.0)
        );
        assert_eq!((text.top_k, text.top_p, text.max_new_tokens), (0, 0.7, 512));
        assert_eq!(
            (text.eos_token_ids.clone(), text.pad_token_id),
            (vec![7], 0)
        );
        let img = GenerationConfig::preset(Task::ImageGeneration, &v);
        assert_eq!(
            (img.num_beams, img.do_sample, img.repetition_penalty),
            (5, false, 1.15)
        );
        let tts = GenerationConfig::preset(Task::Tts, &v);
        assert_eq!(
            (tts.num_beams, tts.do_sample, tts.repetition_penalty),
            (1, true, 1.15)
        );
        assert!(tts.speech_timbre && tts.constraints);
        let sg = GenerationConfig::preset(Task::SpeechGeneration, &v);
        assert_eq!(
            (sg.num_beams, sg.do_sample, sg.repetition_penalty),
            (5, false, 2.0)
        );
        let s2s = GenerationConfig::preset(Task::SpeechToSpeech, &v);
        assert_eq!((s2s.num_beams, s2s.repetition_penalty), (5, 1.15));
        for t in [Task::VideoGeneration, Task::Interleaved] {
            let c = GenerationConfig::preset(t, &v);
            assert_eq!(
                (c.num_beams, c.do_sample, c.repetition_penalty),
                (1, true, 1.15)
            );
            assert!(!c.speech_timbre);
        }
        for t in [
            Task::Text,
            Task::ImageGeneration,
            Task::Tts,
            Task::SpeechGeneration,
            Task::SpeechToSpeech,
            Task::VideoGeneration,
            Task::Interleaved,
        ] {
            GenerationConfig::preset(t, &v).validate().unwrap();
        }
    }

    #[test]
    fn validation_rejects_bad_values() {
        let ok = GenerationConfig::default();
        ok.validate().unwrap();
        let cases: Vec<GenerationConfig> = vec![
            GenerationConfig {
                max_new_tokens: 0,
                ..ok.clone()
            },
            GenerationConfig {
                num_beams: 0,
                ..ok.clone()
            },
            GenerationConfig {
                temperature: 0.0,
                ..ok.clone()
            },
            GenerationConfig {
                temperature: f32::NAN,
                ..ok.clone()
            },
            GenerationConfig {
                top_p: 1.5,
                ..ok.clone()
            },
            GenerationConfig {
                top_p: -0.1,
                ..ok.clone()
            },
            GenerationConfig {
                repetition_penalty: 0.0,
                ..ok.clone()
            },
            GenerationConfig {
                length_penalty: f64::INFINITY,
                ..ok.clone()
            },
            GenerationConfig {
                stop_sequences: vec![vec![]],
                ..ok.clone()
            },
            GenerationConfig {
                num_beams: 2,
                stop_sequences: vec![vec![3]],
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(
                matches!(c.validate(), Err(Error::InvalidArgument(_))),
                "{c:?}"
            );
        }
        let c = GenerationConfig {
            eos_token_ids: vec![5],
            ..ok
        };
        assert!(c.validate_ids(6).is_ok());
        assert!(matches!(
            c.validate_ids(5),
            Err(Error::UnknownTokenId { id: 5, .. })
        ));
    }
}
