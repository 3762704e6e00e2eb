//! transformers 4.34 `LlamaForCausalLM` (`LlamaModel` + `lm_head`) as MIO runs it.
//!
//! Tensor names: `model.embed_tokens.weight` `(vocab, hidden)`, `model.layers.N.*`
//! ([`LlamaDecoderLayer`]), `model.norm.weight` `(hidden)`, `lm_head.weight`
//! `(vocab, hidden)` (the embedding when `tie_word_embeddings`). Input: token ids `(b, t)`
//! plus the attention mask of the whole rows `(b, past + t)`; output hidden states
//! `(b, t, hidden)` and f32 logits `(b, t, vocab)`. Position ids and masks: [`super::masks`].
//! A failed forward pass leaves the KV cache as it was (see [`super::cache`]).

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};

use super::attention::{LlamaAttention, LlamaMlp};
use super::cache::KvCache;
use super::config::Config;
use super::linear::{Linear, LlamaRmsNorm};
use super::loader::{expected_tensors, CheckpointWeights, LoadWeights};
use super::masks::{additive_mask, check_mask, dense_positions, position_ids};
use super::rotary::LlamaRotaryEmbedding;
use super::weights::Checkpoint;
use crate::{Error, Result};

/// One pre-norm decoder block: attention and MLP, each with a residual.
#[derive(Debug, Clone)]
pub struct LlamaDecoderLayer {
    input_layernorm: LlamaRmsNorm,
    self_attn: LlamaAttention,
    post_attention_layernorm: LlamaRmsNorm,
    mlp: LlamaMlp,
}

impl LlamaDecoderLayer {
    /// Reads `{prefix}.{input_layernorm,self_attn,post_attention_layernorm,mlp}.*`.
    pub fn new(cfg: &Config, w: &mut dyn LoadWeights, prefix: &str) -> Result<Self> {
        let h = cfg.hidden_size;
        let mut norm = |name: &str| -> Result<LlamaRmsNorm> {
            let weight = w.tensor(&format!("{prefix}.{name}.weight"), &[h], DType::F32)?;
            LlamaRmsNorm::new(weight, cfg.rms_norm_eps)
        };
        let input_layernorm = norm("input_layernorm")?;
        let post_attention_layernorm = norm("post_attention_layernorm")?;
        Ok(LlamaDecoderLayer {
            input_layernorm,
            self_attn: LlamaAttention::new(cfg, w, &format!("{prefix}.self_attn"))?,
            post_attention_layernorm,
            mlp: LlamaMlp::new(cfg, w, &format!("{prefix}.mlp"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        cos_sin: (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        cache: &mut KvCache,
        layer: usize,
    ) -> Result<Tensor> {
        let attn = self.self_attn.forward(
            &self.input_layernorm.forward(xs)?,
            cos_sin,
            mask,
            cache,
            layer,
        )?;
        let xs = (xs + attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&xs)?)?;
        Ok((xs + mlp)?)
    }
}

/// Hidden states of one forward pass.
#[derive(Debug, Clone)]
pub struct HiddenStates {
    /// As HF `output_hidden_states`: `n_layers + 1` tensors `(b, t, hidden)`, `[0]` the
    /// embeddings, `[k]` the output of layer `k - 1`, the last one after the final norm.
    /// Empty unless asked for.
    pub all: Vec<Tensor>,
    /// After the final norm, `(b, t, hidden)`.
    pub last: Tensor,
}

/// The MIO LM: Llama decoder stack plus `lm_head`.
#[derive(Debug, Clone)]
pub struct LlamaForCausalLm {
    cfg: Config,
    embed_tokens: Tensor,
    layers: Vec<LlamaDecoderLayer>,
    norm: LlamaRmsNorm,
    lm_head: Linear,
    rotary: LlamaRotaryEmbedding,
    dtype: DType,
    device: Device,
}

impl LlamaForCausalLm {
    /// Loads a release folder's LM (`config.json` + safetensors shards) as `dtype`
    /// (f32, f16 or bf16) on `dev`.
    pub fn load(model_dir: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        let cfg = Config::from_dir(model_dir)?;
        let mut ckpt = Checkpoint::open(model_dir)?;
        LlamaForCausalLm::from_checkpoint(&cfg, &mut ckpt, dtype, dev)
    }

    /// Builds the model from an opened checkpoint, checking every name and shape first.
    pub fn from_checkpoint(
        cfg: &Config,
        ckpt: &mut Checkpoint,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(Error::InvalidArgument(format!(
                "LM dtype {dtype:?} (use f32, f16 or bf16)"
            )));
        }
        if dtype == DType::BF16 && dev.is_cpu() {
            return Err(Error::Unsupported(
                "bf16 matmul on the CPU (candle has none): use f32 or f16".to_string(),
            ));
        }
        cfg.validate()?;
        ckpt.check_shapes(&expected_tensors(cfg))?;
        LlamaForCausalLm::new(cfg, &mut CheckpointWeights::new(ckpt, dtype, dev))
    }

    /// Builds the model from any weight source (HF names).
    pub fn new(cfg: &Config, w: &mut dyn LoadWeights) -> Result<Self> {
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        let dtype = w.dtype();
        let embed_tokens = w.embedding("model.embed_tokens.weight", &[v, h])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| LlamaDecoderLayer::new(cfg, w, &format!("model.layers.{l}")))
            .collect::<Result<Vec<_>>>()?;
        let norm = LlamaRmsNorm::new(
            w.tensor("model.norm.weight", &[h], DType::F32)?,
            cfg.rms_norm_eps,
        )?;
        let head_name = if cfg.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        let lm_head = w.linear(head_name, v, h)?;
        let device = w.device().clone();
        let rotary = LlamaRotaryEmbedding::new(
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            dtype,
            &device,
        )?;
        Ok(LlamaForCausalLm {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            dtype,
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Activation dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.cfg.num_hidden_layers)
    }

    fn embed(&self, tokens: &[Vec<u32>]) -> Result<Tensor> {
        let (b, t) = (tokens.len(), tokens.first().map_or(0, Vec::len));
        if t == 0 {
            return Err(Error::EmptyPrompt);
        }
        if tokens.iter().any(|r| r.len() != t) {
            return Err(Error::InvalidArgument(
                "rows of new tokens differ in length".to_string(),
            ));
        }
        let vocab_size = self.cfg.vocab_size;
        if let Some(&id) = tokens
            .iter()
            .flatten()
            .find(|&&id| id as usize >= vocab_size)
        {
            return Err(Error::UnknownTokenId { id, vocab_size });
        }
        let ids = Tensor::from_iter(tokens.iter().flatten().copied(), &self.device)?;
        Ok(self
            .embed_tokens
            .index_select(&ids, 0)?
            .to_dtype(self.dtype)?
            .reshape((b, t, self.cfg.hidden_size))?)
    }

    /// Runs the new `tokens` (`b` rows of `t`) on top of `cache`.
    ///
    /// `attention_mask` covers whole rows (`past + t` entries, 1 = real, 0 = left padding);
    /// `None` means no padding. With `collect_all`, every layer's hidden state is returned.
    pub fn forward_hidden(
        &self,
        tokens: &[Vec<u32>],
        attention_mask: Option<&[Vec<u8>]>,
        cache: &mut KvCache,
        collect_all: bool,
    ) -> Result<HiddenStates> {
        let mut xs = self.embed(tokens)?;
        let (b, t) = (tokens.len(), tokens.first().map_or(0, Vec::len));
        let past = cache.seq_len();
        if cache.batch_size().is_some_and(|cb| cb != b) {
            return Err(Error::InvalidArgument(format!(
                "batch of {b} rows on a cache of {:?} rows",
                cache.batch_size()
            )));
        }
        let positions = match attention_mask {
            Some(mask) => {
                check_mask(mask, b, past, t)?;
                position_ids(mask, t)
            }
            None => dense_positions(b, past, t),
        };
        let mask = additive_mask(attention_mask, b, past, t, &self.device)?;
        let (cos, sin) = self.rotary.cos_sin(&positions)?;
        let mut all = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            if collect_all {
                all.push(xs.clone());
            }
            xs = layer.forward(&xs, (&cos, &sin), mask.as_ref(), cache, l)?;
        }
        cache.advance(t);
        let last = self.norm.forward(&xs)?;
        if collect_all {
            all.push(last.clone());
        }
        Ok(HiddenStates { all, last })
    }

    /// f32 logits of hidden states `(…, hidden)` → `(…, vocab)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?.to_dtype(DType::F32)?)
    }

    /// f32 logits of every new position, `(b, t, vocab)`.
    pub fn forward_logits(
        &self,
        tokens: &[Vec<u32>],
        attention_mask: Option<&[Vec<u8>]>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(tokens, attention_mask, cache, false)?;
        self.logits(&hidden.last)
    }

    /// f32 logits of the last new position of each row, `(b, vocab)`.
    pub fn forward_last(
        &self,
        tokens: &[Vec<u32>],
        attention_mask: Option<&[Vec<u8>]>,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let hidden = self
            .forward_hidden(tokens, attention_mask, cache, false)?
            .last;
        let t = hidden.dim(1)?;
        self.logits(&hidden.narrow(1, t - 1, 1)?.squeeze(1)?)
    }
}
