//! SpeechTokenizer configuration: [`SpeechTokenizerConfig`] mirrors
//! `SpeechTokenizer/config.json` field for field (the training-only fields are kept, unused);
//! [`Config`] is what the networks are built from (`SpeechTokenizer.__init__` of
//! `speech_tokenizer/model.py` plus the SEANet constructor defaults it relies on).

use std::path::Path;

use serde::Deserialize;

use crate::{Error, Result};

/// `SpeechTokenizer/config.json`, as shipped (hifigan-style training config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpeechTokenizerConfig {
    /// Training: HiFi-GAN resblock type.
    #[serde(default)]
    pub resblock: Option<String>,
    /// Training: GPUs.
    #[serde(default)]
    pub num_gpus: Option<u32>,
    /// Training: batch size.
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Training: learning rate.
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Training: Adam beta 1.
    #[serde(default)]
    pub adam_b1: Option<f64>,
    /// Training: Adam beta 2.
    #[serde(default)]
    pub adam_b2: Option<f64>,
    /// Training: learning-rate decay.
    #[serde(default)]
    pub lr_decay: Option<f64>,
    /// Training: seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Training: distillation loss weight.
    #[serde(default)]
    pub lambda_distill: Option<f64>,
    /// SEANet base width.
    pub n_filters: usize,
    /// SEANet up-sampling ratios (decoder order; the encoder uses them reversed).
    pub strides: Vec<usize>,
    /// Latent (codebook) dimension.
    pub dimension: usize,
    /// Output size of the `transform` linear (distillation target width).
    pub semantic_dimension: usize,
    /// Whether the encoder LSTM is bidirectional (the decoder's never is).
    pub bidirectional: bool,
    /// Dilation growth of the residual layers.
    pub dilation_base: usize,
    /// Kernel of the first residual convolution.
    pub residual_kernel_size: usize,
    /// Residual blocks per SEANet stage.
    pub n_residual_layers: usize,
    /// LSTM layers (0 = none).
    pub lstm_layers: usize,
    /// Activation class name (`ELU`).
    pub activation: String,
    /// Training: segment size in samples.
    #[serde(default)]
    pub segment_size: Option<usize>,
    /// Training: mel bins of the loss.
    #[serde(default)]
    pub num_mels: Option<usize>,
    /// Training: frequency bins of the loss.
    #[serde(default)]
    pub num_freq: Option<usize>,
    /// Training: FFT size of the loss.
    #[serde(default)]
    pub n_fft: Option<usize>,
    /// Training: hop of the loss.
    #[serde(default)]
    pub hop_size: Option<usize>,
    /// Training: window of the loss.
    #[serde(default)]
    pub win_size: Option<usize>,
    /// Training: sampling rate of the data set.
    #[serde(default)]
    pub sampling_rate: Option<u32>,
    /// Sample rate of the codec (`SpeechTokenizer.sample_rate`).
    pub sample_rate: u32,
    /// Entries per RVQ codebook.
    pub codebook_size: usize,
    /// RVQ layers.
    pub n_q: usize,
    /// Training: mel fmin.
    #[serde(default)]
    pub fmin: Option<f64>,
    /// Training: mel fmax.
    #[serde(default)]
    pub fmax: Option<f64>,
    /// Training: mel fmax of the loss.
    #[serde(default)]
    pub fmax_for_loss: Option<f64>,
    /// Training: data loader workers.
    #[serde(default)]
    pub num_workers: Option<u32>,
    /// Training: distributed settings.
    #[serde(default)]
    pub dist_config: Option<serde_json::Value>,
}

impl SpeechTokenizerConfig {
    /// Reads `config.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// What the SpeechTokenizer networks are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Audio channels (1).
    pub channels: usize,
    /// SEANet base width.
    pub n_filters: usize,
    /// Latent dimension.
    pub dimension: usize,
    /// Width of the `transform` output.
    pub semantic_dimension: usize,
    /// Up-sampling ratios, decoder order.
    pub ratios: Vec<usize>,
    /// LSTM layers of encoder and decoder.
    pub lstm_layers: usize,
    /// Whether the encoder LSTM is bidirectional.
    pub encoder_bidirectional: bool,
    /// Dilation growth of residual layers.
    pub dilation_base: usize,
    /// Kernel of the first residual convolution.
    pub residual_kernel_size: usize,
    /// Residual blocks per stage.
    pub n_residual_layers: usize,
    /// First convolution kernel (SEANet default 7).
    pub kernel_size: usize,
    /// Last convolution kernel (SEANet default 7).
    pub last_kernel_size: usize,
    /// Channel reduction inside residual blocks (SEANet default 2).
    pub compress: usize,
    /// Codec sample rate (Hz).
    pub sample_rate: u32,
    /// Entries per codebook.
    pub codebook_size: usize,
    /// RVQ layers.
    pub n_q: usize,
}

impl Config {
    /// The runtime config of a `config.json`; only the ELU activation is supported.
    pub fn from_file_config(c: &SpeechTokenizerConfig) -> Result<Self> {
        if c.activation != "ELU" {
            return Err(Error::Unsupported(format!(
                "SpeechTokenizer activation {:?} (only ELU is ported)",
                c.activation
            )));
        }
        let cfg = Self {
            channels: 1,
            n_filters: c.n_filters,
            dimension: c.dimension,
            semantic_dimension: c.semantic_dimension,
            ratios: c.strides.clone(),
            lstm_layers: c.lstm_layers,
            encoder_bidirectional: c.bidirectional,
            dilation_base: c.dilation_base,
            residual_kernel_size: c.residual_kernel_size,
            n_residual_layers: c.n_residual_layers,
            kernel_size: 7,
            last_kernel_size: 7,
            compress: 2,
            sample_rate: c.sample_rate,
            codebook_size: c.codebook_size,
            n_q: c.n_q,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The released MIO SpeechTokenizer (`m-a-p/MIO-7B-Instruct/SpeechTokenizer/config.json`,
    /// identical to fnlp/SpeechTokenizer `speechtokenizer_hubert_avg`).
    pub fn mio_7b() -> Self {
        Self {
            channels: 1,
            n_filters: 64,
            dimension: 1024,
            semantic_dimension: 768,
            ratios: vec![8, 5, 4, 2],
            lstm_layers: 2,
            encoder_bidirectional: true,
            dilation_base: 2,
            residual_kernel_size: 3,
            n_residual_layers: 1,
            kernel_size: 7,
            last_kernel_size: 7,
            compress: 2,
            sample_rate: 16000,
            codebook_size: 1024,
            n_q: 8,
        }
    }

    /// Samples per code frame (product of the ratios; 320 = 20 ms at 16 kHz).
    pub fn hop_length(&self) -> usize {
        self.ratios.iter().product()
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(format!("SpeechTokenizer: {m}")));
        if self.ratios.is_empty() || self.ratios.contains(&0) {
            return bad("strides must be non-empty and positive");
        }
        if self.n_q == 0 || self.codebook_size == 0 || self.dimension == 0 {
            return bad("n_q, codebook_size and dimension must be positive");
        }
        if self.n_filters == 0 || self.compress == 0 || self.sample_rate == 0 {
            return bad("n_filters and sample_rate must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_release_config_and_refuses_other_activations() {
        let json = r#"{"resblock": "1", "n_filters": 64, "strides": [8, 5, 4, 2],
            "dimension": 1024, "semantic_dimension": 768, "bidirectional": true,
            "dilation_base": 2, "residual_kernel_size": 3, "n_residual_layers": 1,
            "lstm_layers": 2, "activation": "ELU", "sample_rate": 16000,
            "codebook_size": 1024, "n_q": 8, "fmax_for_loss": null,
            "dist_config": {"dist_backend": "nccl"}}"#;
        let file: SpeechTokenizerConfig = serde_json::from_str(json).unwrap();
        let cfg = Config::from_file_config(&file).unwrap();
        assert_eq!(cfg, Config::mio_7b());
        assert_eq!(cfg.hop_length(), 320);
        let snake = SpeechTokenizerConfig {
            activation: "Snake".into(),
            ..file.clone()
        };
        assert!(matches!(
            Config::from_file_config(&snake),
            Err(Error::Unsupported(_))
        ));
        let no_q = SpeechTokenizerConfig { n_q: 0, ..file };
        assert!(matches!(
            Config::from_file_config(&no_q),
            Err(Error::InvalidConfig(_))
        ));
    }
}
