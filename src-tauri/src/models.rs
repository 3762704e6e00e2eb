//! The model manager's commands: inspect a folder (sizes, memory estimates, GGUF files) and
//! import a release folder with streamed progress and cancel. The work is mio-runtime's
//! (`import::import_release`, `info::estimates`); this file maps it to the IPC types.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio_models::engine::{GpuLayers, LmBackend, LoadOptions, Precision};
use mio_models::imported::ImportManifest;
use mio_models::lm::Config;
use mio_models::release::ReleaseInfo;
use mio_runtime::import::{import_release, ImportOptions, ImportProgress, PaceMeter};
use tauri::ipc::Channel;
use tauri::State;

use crate::commands::AppState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::ipc::LoadArgs;
use crate::models_ipc::{
    Backend, ComponentInfo, ImportArgs, ImportEvent, ImportResult, MemoryOption, ModelFolder,
    PrecisionArg,
};

/// The engine's load options for `args` on the folder `dir`.
pub fn load_options(dir: &Path, args: &LoadArgs) -> LoadOptions {
    LoadOptions {
        model_dir: dir.to_path_buf(),
        precision: match args.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F16 => Precision::F16,
            PrecisionArg::Bf16 => Precision::Bf16,
        },
        lm_file: args.lm_file.as_ref().map(|f| dir.join(f)),
        skip_lm: false,
        backend: match args.backend {
            Backend::Candle => LmBackend::Candle,
            Backend::Llamacpp => LmBackend::LlamaCpp,
        },
        gpu_layers: args.gpu_layers.map_or(GpuLayers::Auto, GpuLayers::Count),
        ..LoadOptions::default()
    }
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
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let mut slot = state
            .import_cancel
            .lock()
            .map_err(|_| AppError::new(ErrorCode::Internal, "the import state is unavailable"))?;
        if slot.is_some() {
            return Err(AppError::new(
                ErrorCode::Import,
                "an import is already running; wait for it or cancel it",
            ));
        }
        *slot = Some(cancel.clone());
    }
    let data_dir = state.data_dir.clone();
    let result = tauri::async_runtime::spawn_blocking(move || {
        run_import(&data_dir, &args, cancel, &mut |e| {
            let _ = on_event.send(e);
        })
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, format!("import task failed: {e}")));
    if let Ok(mut slot) = state.import_cancel.lock() {
        *slot = None;
    }
    result?
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
