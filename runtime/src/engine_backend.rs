//! The real engine behind the worker.

use std::sync::atomic::AtomicBool;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use mio_models::engine::{Engine, EngineInfo, Event, LmBackend, LoadOptions, Request, Response};
use mio_models::text::TextTokenizer;

use crate::device::DeviceKind;
use crate::llamacpp::{load_llamacpp, LlamaCppOptions};
use crate::remote::connect_remote_lm;
use crate::worker::{Backend, Worker};

/// [`Engine`] as a worker [`Backend`]: loads on the worker thread, on the chosen device.
pub struct EngineBackend(Engine);

/// The worker type the CLI and the app use.
pub type EngineWorker = Worker<EngineBackend>;

impl Backend for EngineBackend {
    type Load = (LoadOptions, DeviceKind);
    type Ready = EngineInfo;
    type Request = Request;
    type Event = Event;
    type Response = Response;

    fn load((opts, device): Self::Load) -> Result<(Self, EngineInfo)> {
        let dev = device.open()?;
        let engine = match (opts.backend, opts.skip_lm) {
            (_, false) if opts.remote_lm.is_some() => {
                let tokenizer = TextTokenizer::load(&opts.model_dir)?;
                let remote = opts.remote_lm.as_ref().context("remote LM options")?;
                let lm = connect_remote_lm(remote, &opts.model_dir, &tokenizer)?;
                Engine::load_with_lm(&opts, &dev, lm)?
            }
            (LmBackend::LlamaCpp, false) => {
                let gguf = llamacpp_file(&opts)?;
                let vocab = TextTokenizer::load(&opts.model_dir)?.vocab().clone();
                let lopts = LlamaCppOptions {
                    gpu_layers: opts.gpu_layers,
                    gpu_device: device != DeviceKind::Cpu,
                    ..LlamaCppOptions::default()
                };
                let lm = load_llamacpp(&gguf, &vocab, &lopts)?;
                Engine::load_with_lm(&opts, &dev, lm)?
            }
            _ => Engine::load(&opts, &dev)?,
        };
        let info = engine.info().clone();
        Ok((EngineBackend(engine), info))
    }

    fn run(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Response> {
        Ok(self.0.run(request, cancel, emit)?)
    }
}

/// The GGUF the llama.cpp backend runs: `--lm`, else the LM of an imported folder's
/// manifest, else the one `.gguf` in the model folder.
fn llamacpp_file(opts: &LoadOptions) -> Result<PathBuf> {
    if let Some(f) = &opts.lm_file {
        return Ok(f.clone());
    }
    if let Some(f) = mio_models::imported::imported_lm(&opts.model_dir)? {
        return Ok(f);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(&opts.model_dir)
        .with_context(|| format!("cannot read {}", opts.model_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!(
            "the llama.cpp backend runs a GGUF LM: pass --lm FILE.gguf (make one with `mio convert`)"
        ),
        _ => bail!(
            "{} has several .gguf files: choose one with --lm",
            opts.model_dir.display()
        ),
    }
}
