//! Loading a MIO GGUF into llama.cpp: validation first, then GPU offload (a layer count,
//! or `auto`: as many layers as llama.cpp's fitter places into free GPU memory), then a
//! context with one unified KV cache for every beam.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::path::Path;
use std::pin::pin;
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::{send_logs_to_tracing, LogOptions};
use mio_models::engine::{ExternalLm, GpuLayers, LmBackend};
use mio_models::lm::{validate_gguf, Config};
use mio_models::text::MioVocab;
use mio_models::{Error, Result};

use super::lm::{LlamaCppLm, ModelContext};

/// How to run the LM in llama.cpp.
#[derive(Debug, Clone, Copy)]
pub struct LlamaCppOptions {
    /// Layers on the GPU.
    pub gpu_layers: GpuLayers,
    /// Whether the user chose a GPU device (`auto` offloads only then).
    pub gpu_device: bool,
    /// KV-cache cells shared by all rows (`None`: the model's context length, at most 4096).
    pub n_ctx: Option<u32>,
    /// Most rows of a batch (beams).
    pub max_rows: u32,
    /// CPU threads (`None`: every core).
    pub threads: Option<i32>,
}

impl Default for LlamaCppOptions {
    fn default() -> Self {
        LlamaCppOptions {
            gpu_layers: GpuLayers::Auto,
            gpu_device: false,
            n_ctx: None,
            max_rows: 32,
            threads: None,
        }
    }
}

static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();

/// The process-wide llama.cpp backend (initialised once, logs silenced: errors come back
/// as values).
fn backend() -> Result<&'static LlamaBackend> {
    let b = BACKEND.get_or_init(|| {
        send_logs_to_tracing(LogOptions::default().with_logs_enabled(false));
        LlamaBackend::init().map_err(|e| e.to_string())
    });
    b.as_ref()
        .map_err(|e| Error::Unsupported(format!("llama.cpp cannot start: {e}")))
}

fn threads(opts: &LlamaCppOptions) -> i32 {
    opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| i32::try_from(n.get()).unwrap_or(1))
    })
}

fn context_params(opts: &LlamaCppOptions, n_ctx: u32) -> LlamaContextParams {
    let t = threads(opts);
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(opts.max_rows)
        .with_kv_unified(true)
        .with_n_threads(t)
        .with_n_threads_batch(t)
}

/// Model params without mmap: on the CPU llama.cpp repacks quantized weights into its
/// SIMD layout in anonymous memory, so with the file mapped too the resident size peaks at
/// about twice the weights; read into memory once, the 7B q4_k_m peaks near its size.
fn base_params() -> LlamaModelParams {
    LlamaModelParams::default().with_use_mmap(false)
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::checkpoint(path, format!("llama.cpp cannot load it ({e})"))
}

/// Loads the model with the GPU offload chosen; the notes say what happened.
fn load_model(
    path: &Path,
    opts: &LlamaCppOptions,
    n_ctx: u32,
    layers: u32,
    notes: &mut Vec<String>,
) -> Result<LlamaModel> {
    let backend = backend()?;
    let load = |p: &LlamaModelParams| {
        LlamaModel::load_from_file(backend, path, p).map_err(|e| load_error(path, e))
    };
    let gpu = backend.supports_gpu_offload();
    let params = base_params();
    let cpu = || base_params().with_n_gpu_layers(0);
    match (opts.gpu_layers, gpu) {
        (GpuLayers::Count(0), _) => load(&cpu()),
        (GpuLayers::Count(n), true) => {
            notes.push(format!(
                "{} of {layers} LM layers on the GPU",
                n.min(layers)
            ));
            load(&params.with_n_gpu_layers(n))
        }
        (GpuLayers::Count(n), false) => {
            notes.push(format!(
                "{n} GPU layers were asked for but this build of llama.cpp has no GPU support: the LM runs on the CPU"
            ));
            load(&cpu())
        }
        (GpuLayers::Auto, false) => {
            if opts.gpu_device {
                notes.push(
                    "this build of llama.cpp has no GPU support: the LM runs on the CPU".into(),
                );
            }
            load(&cpu())
        }
        (GpuLayers::Auto, true) if !opts.gpu_device => load(&cpu()),
        (GpuLayers::Auto, true) => fit_and_load(path, opts, n_ctx, layers, notes),
    }
}

/// `auto`: llama.cpp's fitter picks the layers that fit free GPU memory (1 GiB margin).
fn fit_and_load(
    path: &Path,
    opts: &LlamaCppOptions,
    n_ctx: u32,
    layers: u32,
    notes: &mut Vec<String>,
) -> Result<LlamaModel> {
    let backend = backend()?;
    let cpath = CString::new(path.to_string_lossy().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{}: path has a NUL byte", path.display())))?;
    let mut params = pin!(base_params());
    let mut cparams = context_params(opts, n_ctx);
    let mut margins = vec![1usize << 30; llama_cpp_2::max_devices().max(1)];
    match params
        .as_mut()
        .fit_params(&cpath, &mut cparams, &mut margins, n_ctx.min(512), 4)
    {
        Ok(_) => {
            let n = params.n_gpu_layers();
            notes.push(format!(
                "{} of {layers} LM layers on the GPU (auto)",
                n.clamp(0, layers as i32)
            ));
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| load_error(path, e))
        }
        Err(e) => {
            notes.push(format!(
                "GPU offload could not be fitted ({e}): the LM runs on the CPU"
            ));
            let cpu = base_params().with_n_gpu_layers(0);
            LlamaModel::load_from_file(backend, path, &cpu).map_err(|e| load_error(path, e))
        }
    }
}

/// A model loaded into llama.cpp, with its architecture and the load notes.
pub struct LlamaCppLoad {
    /// The LM.
    pub lm: LlamaCppLm,
    /// Its architecture (from the GGUF header).
    pub config: Config,
    /// What the user should know (GPU offload), one sentence each.
    pub notes: Vec<String>,
}

/// Loads `gguf` into llama.cpp after checking it is a complete MIO LM whose tokens match
/// `vocab`.
pub fn open_llamacpp(
    gguf: &Path,
    vocab: &MioVocab,
    opts: &LlamaCppOptions,
) -> Result<LlamaCppLoad> {
    let summary = validate_gguf(gguf, Some(vocab))?;
    if !summary.has_tokenizer {
        return Err(Error::checkpoint(
            gguf,
            "it has no tokenizer, which llama.cpp needs (convert the release with `mio convert`)",
        ));
    }
    let config = summary.config;
    let layers = config.num_hidden_layers as u32;
    let train = u32::try_from(config.max_position_embeddings).unwrap_or(u32::MAX);
    let n_ctx = opts
        .n_ctx
        .unwrap_or(train.min(4096))
        .clamp(16, train.max(16));
    let mut notes = vec![];
    let model = load_model(gguf, opts, n_ctx, layers, &mut notes)?;
    let backend = backend()?;
    let inner = ModelContext::try_new(model, |m| {
        m.new_context(backend, context_params(opts, n_ctx))
    })
    .map_err(|e| {
        Error::Unsupported(format!(
            "llama.cpp cannot create a context of {n_ctx} tokens: {e}"
        ))
    })?;
    Ok(LlamaCppLoad {
        lm: LlamaCppLm::new(inner, opts.max_rows as usize),
        config,
        notes,
    })
}

/// [`open_llamacpp`] as the engine's [`ExternalLm`].
pub fn load_llamacpp(gguf: &Path, vocab: &MioVocab, opts: &LlamaCppOptions) -> Result<ExternalLm> {
    let l = open_llamacpp(gguf, vocab, opts)?;
    Ok(ExternalLm {
        lm: Box::new(l.lm),
        config: l.config,
        source: format!("{} (llama.cpp)", gguf.display()),
        backend: LmBackend::LlamaCpp.name().to_string(),
        notes: l.notes,
    })
}
