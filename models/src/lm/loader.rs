//! What the model's constructors read weights through, by HF tensor name.
//!
//! [`LoadWeights`] is implemented by [`CheckpointWeights`] (safetensors / any
//! [`super::weights::TensorSource`], HF names as stored) and by the GGUF reader (which
//! maps each HF name to its llama.cpp name). The list of tensors the model reads, with the
//! shapes the config implies, is [`expected_tensors`].

use candle_core::{DType, Device, Tensor};

use super::config::Config;
use super::linear::Linear;
use super::weights::Checkpoint;
use crate::{Error, Result};

/// A source of the model's weights, addressed by HF tensor name.
pub trait LoadWeights {
    /// Device the model lives on.
    fn device(&self) -> &Device;
    /// Activation dtype of the model.
    fn dtype(&self) -> DType;
    /// A bias-free linear layer with weight `name` of shape `(out, inp)`.
    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear>;
    /// A dense tensor of shape `shape`, in `dtype`.
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;
    /// The token embedding table `(vocab, hidden)`: rows are gathered, then cast to the
    /// activation dtype. By default in the activation dtype; a source may keep it more
    /// compact (a quantized GGUF table is held as f16, not f32).
    fn embedding(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let dtype = self.dtype();
        self.tensor(name, shape, dtype)
    }
}

/// Every tensor `LlamaForCausalLM` reads, HF names, with its shape under `cfg`.
pub fn expected_tensors(cfg: &Config) -> Vec<(String, Vec<usize>)> {
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![i, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, i]),
        ]);
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}

/// Checks a tensor's shape.
pub(crate) fn check_shape(name: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(Error::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// Weights from a [`Checkpoint`] (HF names), loaded in one dtype.
#[derive(Debug)]
pub struct CheckpointWeights<'a> {
    ckpt: &'a mut Checkpoint,
    dtype: DType,
    dev: Device,
}

impl<'a> CheckpointWeights<'a> {
    /// Weights of `ckpt`, converted to `dtype` on `dev`.
    pub fn new(ckpt: &'a mut Checkpoint, dtype: DType, dev: &Device) -> Self {
        CheckpointWeights {
            ckpt,
            dtype,
            dev: dev.clone(),
        }
    }

    fn read(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let meta = self
            .ckpt
            .meta(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        check_shape(name, shape, &meta.shape)?;
        self.ckpt.read(name, dtype, &self.dev)
    }
}

impl LoadWeights for CheckpointWeights<'_> {
    fn device(&self) -> &Device {
        &self.dev
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear::dense(self.read(name, &[out, inp], self.dtype)?))
    }

    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.read(name, shape, dtype)
    }
}
