//! The model manager's commands: inspect a folder (sizes, memory estimates, GGUF files),
//! download a release from Hugging Face and import a release folder, both with streamed
//! progress and cancel. The work is mio-runtime's
//! (`import::import_release`, `info::estimates`); this file maps it to the IPC types.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio_models::engine::{GpuLayers, LmBackend, LoadOptions, Precision, RemoteLm, RemoteLmApi};
use mio_models::imported::ImportManifest;
use mio_models::lm::Config;
use mio_models::release::ReleaseInfo;
use mio_runtime::hub::{download, DownloadOptions, DownloadProgress, HubClient};
use mio_runtime::import::{import_release, ImportOptions, ImportProgress, PaceMeter};
use tauri::ipc::Channel;
use tauri::State;

use crate::commands::AppState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::ipc::LoadArgs;
use crate::models_ipc::{
    Backend, ComponentInfo, DownloadArgs, DownloadResult, ImportArgs, ImportEvent, ImportResult,
    MemoryOption, ModelFolder, PrecisionArg, RemoteApiArg,
};

/// The engine's load options for `args` on the folder `dir`; a remote backend needs a URL.
pub fn load_options(dir: &Path, args: &LoadArgs) -> AppResult<LoadOptions> {
    let remote_lm = match (args.backend, &args.remote) {
        (Backend::Remote, Some(r)) if !r.url.trim().is_empty() => Some(RemoteLm {
            url: r.url.trim().to_string(),
            api: match r.api {
                RemoteApiArg::Llamacpp => RemoteLmApi::LlamaCpp,
                RemoteApiArg::Openai => RemoteLmApi::OpenAi,
            },
            api_key: r.api_key.clone().filter(|k| !k.trim().is_empty()),
            model: r.model.clone().filter(|m| !m.trim().is_empty()),
        }),
        (Backend::Remote, _) => {
            return Err(AppError::new(
                ErrorCode::ModelLoad,
                "the remote backend needs the LM server's URL, e.g. http://gpu-box:8080",
            ))
        }
        _ => None,
    };
    Ok(LoadOptions {
        model_dir: dir.to_path_buf(),
        precision: match args.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
            PrecisionArg::Bf16 => Precision::Bf16,
        },
        lm_file: args.lm_file.as_ref().map(|f| dir.join(f)),
        skip_lm: false,
        backend: match args.backend {
            Backend::Candle | Backend::Remote => LmBackend::Candle,
            Backend::Llamacpp => LmBackend::LlamaCpp,
        },
        gpu_layers: args.gpu_layers.map_or(GpuLayers::Auto, GpuLayers::Count),
        remote_lm,
        ..LoadOptions::default()
    })
}

/// What `dir` holds: components with sizes, memory estimates, GGUF files.
pub fn inspect(dir: &Path) -> AppResult<ModelFolder> {
    let info = ReleaseInfo::scan(dir).map_err(|e| {
        AppError::new(
            ErrorCode::ModelLoad,
            format!("cannot read the model folder {}: {e}", dir.display()),
        )
    })?;
    let components: Vec<ComponentInfo> = info
        .components
        .iter()
        .map(|c| ComponentInfo {
            name: c.name.clone(),
            format: c.format.clone(),
            bytes: c.bytes,
            dtypes: c.dtypes.clone(),
        })
        .collect();
    let memory = Config::from_dir(dir)
        .map(|cfg| mio_runtime::info::estimates(&cfg))
        .unwrap_or_default()
        .into_iter()
        .map(|m| MemoryOption {
            weights: m.weights.into(),
            weight_bytes: m.weight_bytes,
            kv_cache_bytes: m.kv_cache_bytes,
            total_bytes: m.total_bytes,
        })
        .collect();
    let mut lm_files: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    lm_files.sort();
    let imported_quant = ImportManifest::read(dir).ok().flatten().map(|m| m.quant);
    Ok(ModelFolder {
        model_dir: dir.display().to_string(),
        total_bytes: components.iter().map(|c| c.bytes).sum(),
        components,
        missing: info.missing,
        memory,
        lm_files,
        imported_quant,
    })
}

/// The folder an import writes when none is given: `models/<release>-<quant>` under `data_dir`.
pub fn default_out(data_dir: &Path, release: &Path, quant: &str) -> PathBuf {
    let name = release
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    data_dir.join("models").join(format!("{name}-{quant}"))
}

/// Imports `args` (output under `data_dir` by default), sending paced progress to `sink`;
/// stops at the next write once `cancel` is set.
pub fn run_import(
    data_dir: &Path,
    args: &ImportArgs,
    cancel: Arc<AtomicBool>,
    sink: &mut dyn FnMut(ImportEvent),
) -> AppResult<ImportResult> {
    let release = PathBuf::from(&args.release_dir);
    let quant = args.quant.name();
    let out = args
        .out_dir
        .as_ref()
        .map_or_else(|| default_out(data_dir, &release, quant), PathBuf::from);
    let opts = ImportOptions {
        release,
        out,
        quant: quant.into(),
        cancel: Some(cancel.clone()),
        ..ImportOptions::default()
    };
    let started = Instant::now();
    let mut pace = PaceMeter::new(Duration::from_millis(100));
    let mut progress = |p: &ImportProgress| {
        if let Some(pc) = pace.observe(p.bytes_done, p.bytes_total, Instant::now()) {
            sink(ImportEvent::Progress {
                stage: p.stage.into(),
                file: p.file.clone(),
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                rate_bytes_per_s: pc.rate_bytes_per_s,
                eta_s: pc.eta_s,
            });
        }
    };
    let report = import_release(&opts, &mut progress).map_err(|e| {
        if cancel.load(Ordering::Relaxed) {
            AppError::new(
                ErrorCode::Import,
                format!(
                    "the import was cancelled; finished files stay in {} and importing again resumes",
                    opts.out.display()
                ),
            )
        } else {
            AppError::from_chain(ErrorCode::Import, &e)
        }
    })?;
    Ok(ImportResult {
        out_dir: report.out.display().to_string(),
        written: report.written,
        kept: report.kept,
        unverified: report.unverified,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The folder a download fills when none is given: `downloads/<name>` under `data_dir`.
pub fn default_download_dir(data_dir: &Path, repo: &str) -> PathBuf {
    let name = repo
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("release");
    data_dir.join("downloads").join(name)
}

/// Downloads `args.repo` from the hub at `endpoint` (`None`: `$HF_ENDPOINT`, else
/// huggingface.co) with paced progress (stage `download`) to `sink`; stops between chunks
/// once `cancel` is set, and a later download of the same folder resumes.
pub fn run_download(
    data_dir: &Path,
    endpoint: Option<String>,
    args: &DownloadArgs,
    cancel: Arc<AtomicBool>,
    sink: &mut dyn FnMut(ImportEvent),
) -> AppResult<DownloadResult> {
    let repo = args.repo.trim();
    if repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(AppError::new(
            ErrorCode::Import,
            format!("{repo:?} is not a Hugging Face repository name (owner/name)"),
        ));
    }
    let out = args
        .out_dir
        .as_ref()
        .filter(|d| !d.trim().is_empty())
        .map_or_else(|| default_download_dir(data_dir, repo), PathBuf::from);
    let opts = DownloadOptions {
        repo: repo.to_string(),
        revision: "main".into(),
        out: out.clone(),
        all_files: false,
    };
    let client = HubClient::new(endpoint, None);
    let started = Instant::now();
    let mut pace = PaceMeter::new(Duration::from_millis(100));
    let mut progress = |p: &DownloadProgress| {
        // The pace counts fetched bytes only: resumed bytes would inflate the rate.
        let resumed = p.bytes_done.saturating_sub(p.bytes_fetched);
        let left = p.bytes_total.saturating_sub(resumed);
        if let Some(pc) = pace.observe(p.bytes_fetched, left, Instant::now()) {
            sink(ImportEvent::Progress {
                stage: "download".into(),
                file: p.file.clone(),
                bytes_done: p.bytes_done,
                bytes_total: p.bytes_total,
                rate_bytes_per_s: pc.rate_bytes_per_s,
                eta_s: pc.eta_s,
            });
        }
    };
    let report = download(&client, &opts, Some(cancel.as_ref()), &mut progress).map_err(|e| {
        if cancel.load(Ordering::Relaxed) {
            AppError::new(
                ErrorCode::Import,
                format!(
                    "the download was cancelled; what arrived stays in {} and downloading again resumes",
                    out.display()
                ),
            )
        } else {
            AppError::from_chain(ErrorCode::Import, &e)
        }
    })?;
    Ok(DownloadResult {
        out_dir: report.out.display().to_string(),
        files: report.files.len() as u32,
        bytes_total: report.files.iter().map(|f| f.size).sum(),
        bytes_fetched: report.bytes_fetched,
        skipped: report.skipped.len() as u32,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `job` as the app's one long model job (import or download), with its cancel flag
/// in `state.import_cancel` while it runs.
async fn long_job<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(Arc<AtomicBool>) -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut slot = state
            .import_cancel
            .lock()
            .map_err(|_| AppError::new(ErrorCode::Internal, "the import state is unavailable"))?;
        if slot.is_some() {
            return Err(AppError::new(
                ErrorCode::Import,
                "an import or download is already running; wait for it or cancel it",
            ));
        }
        *slot = Some(cancel.clone());
    }
    let result = tauri::async_runtime::spawn_blocking(move || job(cancel))
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("model task failed: {e}")));
    if let Ok(mut slot) = state.import_cancel.lock() {
        *slot = None;
    }
    result?
}

#[tauri::command]
pub async fn download_release(
    state: State<'_, AppState>,
    args: DownloadArgs,
    on_event: Channel<ImportEvent>,
) -> AppResult<DownloadResult> {
    let data_dir = state.data_dir.clone();
    long_job(&state, move |cancel| {
        run_download(&data_dir, None, &args, cancel, &mut |e| {
            let _ = on_event.send(e);
        })
    })
    .await
}

#[tauri::command]
pub async fn inspect_model(model_dir: Option<String>) -> AppResult<ModelFolder> {
    let dir = model_dir.map_or_else(crate::commands::bundled_model_dir, PathBuf::from);
    tauri::async_runtime::spawn_blocking(move || inspect(&dir))
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("inspect task failed: {e}")))?
}

#[tauri::command]
pub async fn import_release_folder(
    state: State<'_, AppState>,
    args: ImportArgs,
    on_event: Channel<ImportEvent>,
) -> AppResult<ImportResult> {
    let data_dir = state.data_dir.clone();
    long_job(&state, move |cancel| {
        run_import(&data_dir, &args, cancel, &mut |e| {
            let _ = on_event.send(e);
        })
    })
    .await
}

#[tauri::command]
pub async fn cancel_import(state: State<'_, AppState>) -> AppResult<()> {
    if let Ok(slot) = state.import_cancel.lock() {
        if let Some(c) = slot.as_ref() {
            c.store(true, Ordering::Relaxed);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "models_tests.rs"]
mod tests;
