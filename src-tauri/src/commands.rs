//! The IPC commands: validate, forward to the worker or the history, map the error. All are
//! `async` so none runs on the window's main thread.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use mio_runtime::device::DeviceKind;
use mio_runtime::engine_backend::EngineWorker;
use tauri::ipc::{Channel, InvokeBody, Request};
use tauri::State;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::export;
use crate::ipc::{
    Attachment, ConversationSummary, ConversationView, ExportFormat, ExportResult, LoadArgs,
    LoadEvent, MediaKind, ModelInfo, SendArgs, StreamEvent, TurnStarted,
};
use crate::session::{self, History};

/// What the commands share.
pub struct AppState {
    /// The engine's worker thread.
    pub worker: Arc<EngineWorker>,
    /// Conversations and media.
    pub history: History,
    /// The loaded model.
    pub model: Mutex<Option<ModelInfo>>,
    /// The app data folder.
    pub data_dir: PathBuf,
    /// Cancel flag of the running import, when one runs.
    pub import_cancel: Mutex<Option<Arc<AtomicBool>>>,
    /// Stop flag of the running recording, when one runs.
    pub mic_stop: Mutex<Option<Arc<AtomicBool>>>,
    /// The open camera's command channel.
    pub camera: Mutex<Option<std::sync::mpsc::Sender<crate::camera::CameraCmd>>>,
    /// The OpenAI-API server over this worker, when it is switched on.
    pub server: Mutex<Option<crate::serving::Serving>>,
}

/// The bundled tiny model (random weights) used when no folder is chosen.
pub fn bundled_model_dir() -> PathBuf {
    std::env::var_os("MIO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/model"
            ))
        })
}

fn sink(channel: Channel<StreamEvent>) -> session::Sink {
    Box::new(move |e| {
        let _ = channel.send(e);
    })
}

#[tauri::command]
pub async fn model_status(state: State<'_, AppState>) -> AppResult<Option<ModelInfo>> {
    Ok(state.model.lock().map(|m| m.clone()).unwrap_or(None))
}

#[tauri::command]
pub async fn generation_presets() -> AppResult<Vec<crate::ipc::ModePreset>> {
    Ok(session::presets())
}

#[tauri::command]
pub async fn load_model(
    state: State<'_, AppState>,
    args: LoadArgs,
    on_event: Channel<LoadEvent>,
) -> AppResult<ModelInfo> {
    stage(&on_event, "checking the folder and device", 1);
    let device: DeviceKind = args
        .device
        .parse()
        .map_err(|e| AppError::from_chain(ErrorCode::InvalidInput, &e))?;
    let bundled = args.model_dir.is_none();
    let dir = args
        .model_dir
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(bundled_model_dir);
    if !dir.join("config.json").is_file() {
        return Err(AppError::new(
            ErrorCode::ModelLoad,
            format!(
                "{} is not a MIO release folder (no config.json)",
                dir.display()
            ),
        ));
    }
    stage(&on_event, "loading the weights on the worker thread", 2);
    let mut opts = crate::models::load_options(&dir, &args)?;
    opts.cache_dir = Some(state.data_dir.join("cache"));
    let worker = state.worker.clone();
    let started = std::time::Instant::now();
    let info = tauri::async_runtime::spawn_blocking(move || worker.load((opts, device)))
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("load task failed: {e}")))?
        .map_err(|e| AppError::from_chain(ErrorCode::ModelLoad, &e))?;
    let label = dir
        .file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
    let model = ModelInfo {
        model_dir: dir.display().to_string(),
        label: if bundled {
            "Tiny test model".into()
        } else {
            label
        },
        random_weights: bundled,
        layers: info.layers as u32,
        hidden_size: info.hidden_size as u32,
        vocab_size: info.vocab_size as u32,
        device: info.device,
        load_s: started.elapsed().as_secs_f64(),
    };
    if let Ok(mut m) = state.model.lock() {
        *m = Some(model.clone());
    }
    Ok(model)
}

fn stage(channel: &Channel<LoadEvent>, stage: &str, index: u32) {
    let _ = channel.send(LoadEvent::Stage {
        stage: stage.into(),
        index,
        total: 2,
    });
}

fn require_model(state: &AppState) -> AppResult<()> {
    match state.model.lock().map(|m| m.is_some()) {
        Ok(true) => Ok(()),
        _ => Err(AppError::new(
            ErrorCode::NoModel,
            "load a model first (Model ▸ Load)",
        )),
    }
}

#[tauri::command]
pub async fn send_message(
    state: State<'_, AppState>,
    args: SendArgs,
    on_event: Channel<StreamEvent>,
) -> AppResult<TurnStarted> {
    require_model(&state)?;
    session::send(&state.worker, &state.history, args, sink(on_event))
}

#[tauri::command]
pub async fn regenerate(
    state: State<'_, AppState>,
    conversation_id: i64,
    on_event: Channel<StreamEvent>,
) -> AppResult<TurnStarted> {
    require_model(&state)?;
    session::regenerate(
        &state.worker,
        &state.history,
        conversation_id,
        sink(on_event),
    )
}

#[tauri::command]
pub async fn resend_message(
    state: State<'_, AppState>,
    conversation_id: i64,
    message_id: i64,
    text: String,
    on_event: Channel<StreamEvent>,
) -> AppResult<TurnStarted> {
    require_model(&state)?;
    session::resend(
        &state.worker,
        &state.history,
        conversation_id,
        message_id,
        &text,
        sink(on_event),
    )
}

#[tauri::command]
pub async fn import_conversation(
    state: State<'_, AppState>,
    request: Request<'_>,
) -> AppResult<ConversationSummary> {
    let InvokeBody::Raw(bytes) = request.body() else {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "send the file's bytes as the body",
        ));
    };
    let media = state.history.media.clone();
    state
        .history
        .with(|s| crate::import_json::import(s, &media, bytes))
}

#[tauri::command]
pub async fn mic_start(
    state: State<'_, AppState>,
    args: crate::ipc::MicArgs,
    on_event: Channel<crate::ipc::MicEvent>,
) -> AppResult<crate::ipc::MicStarted> {
    let stop = Arc::new(AtomicBool::new(false));
    if let Ok(mut slot) = state.mic_stop.lock() {
        if let Some(old) = slot.replace(stop.clone()) {
            old.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let sink: Box<dyn FnMut(crate::ipc::MicEvent) + Send> = Box::new(move |e| {
        let _ = on_event.send(e);
    });
    let test_double = crate::mic::start(args, state.history.media.clone(), stop, sink)?;
    Ok(crate::ipc::MicStarted { test_double })
}

#[tauri::command]
pub async fn mic_stop(state: State<'_, AppState>) -> AppResult<()> {
    if let Ok(mut slot) = state.mic_stop.lock() {
        if let Some(s) = slot.take() {
            s.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

#[tauri::command]
pub async fn camera_start(
    state: State<'_, AppState>,
    on_event: Channel<crate::ipc::CameraEvent>,
) -> AppResult<crate::ipc::CameraStarted> {
    stop_camera(&state);
    let sink: Box<dyn FnMut(crate::ipc::CameraEvent) + Send> = Box::new(move |e| {
        let _ = on_event.send(e);
    });
    let media = state.history.media.clone();
    let (tx, test_double) =
        tauri::async_runtime::spawn_blocking(move || crate::camera::start(media, sink))
            .await
            .map_err(|e| {
                AppError::new(ErrorCode::Internal, format!("camera task failed: {e}"))
            })??;
    if let Ok(mut slot) = state.camera.lock() {
        *slot = Some(tx);
    }
    Ok(crate::ipc::CameraStarted { test_double })
}

/// Asks the open camera for a snapshot (`clip_s: None`) or a clip and waits for it.
async fn camera_capture(state: &AppState, clip_s: Option<f64>) -> AppResult<Attachment> {
    let tx = state
        .camera
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .ok_or_else(|| AppError::new(ErrorCode::Device, "open the camera first"))?;
    let (reply, answer) = std::sync::mpsc::channel();
    let cmd = match clip_s {
        None => crate::camera::CameraCmd::Snapshot(reply),
        Some(s) => crate::camera::CameraCmd::Clip(s, reply),
    };
    tx.send(cmd)
        .map_err(|_| AppError::new(ErrorCode::Device, "the camera has closed"))?;
    tauri::async_runtime::spawn_blocking(move || answer.recv())
        .await
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("camera task failed: {e}")))?
        .map_err(|_| AppError::new(ErrorCode::Device, "the camera has closed"))?
}

#[tauri::command]
pub async fn camera_snapshot(state: State<'_, AppState>) -> AppResult<Attachment> {
    camera_capture(&state, None).await
}

#[tauri::command]
pub async fn camera_clip(state: State<'_, AppState>, seconds: f64) -> AppResult<Attachment> {
    camera_capture(&state, Some(seconds)).await
}

fn stop_camera(state: &AppState) {
    if let Some(tx) = state.camera.lock().ok().and_then(|mut s| s.take()) {
        let _ = tx.send(crate::camera::CameraCmd::Stop);
    }
}

#[tauri::command]
pub async fn camera_stop(state: State<'_, AppState>) -> AppResult<()> {
    stop_camera(&state);
    Ok(())
}

#[tauri::command]
pub async fn prepare_media(
    state: State<'_, AppState>,
    kind: MediaKind,
    on_event: Channel<StreamEvent>,
) -> AppResult<()> {
    require_model(&state)?;
    session::prepare(&state.worker, kind, sink(on_event))
}

#[tauri::command]
pub async fn cancel(state: State<'_, AppState>, request_id: u64) -> AppResult<()> {
    state.worker.cancel(request_id);
    Ok(())
}

#[tauri::command]
pub async fn list_conversations(state: State<'_, AppState>) -> AppResult<Vec<ConversationSummary>> {
    state.history.with(|s| s.list())
}

#[tauri::command]
pub async fn get_conversation(state: State<'_, AppState>, id: i64) -> AppResult<ConversationView> {
    state.history.with(|s| s.conversation(id))
}

#[tauri::command]
pub async fn delete_conversation(state: State<'_, AppState>, id: i64) -> AppResult<()> {
    let files = state.history.with(|s| s.delete_conversation(id))?;
    for f in files {
        if let Ok(p) = state.history.media.resolve(&f) {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}

#[tauri::command]
pub async fn search_conversations(
    state: State<'_, AppState>,
    query: String,
) -> AppResult<Vec<ConversationSummary>> {
    state.history.with(|s| s.search(&query))
}

#[tauri::command]
pub async fn export_conversation(
    state: State<'_, AppState>,
    id: i64,
    format: ExportFormat,
) -> AppResult<ExportResult> {
    let view = state.history.with(|s| s.conversation(id))?;
    let out = state.data_dir.join("exports");
    let path = export::write(&view, &state.history.media, &out, format)?;
    Ok(ExportResult {
        path: path.display().to_string(),
    })
}

#[tauri::command]
pub async fn import_media(
    state: State<'_, AppState>,
    request: Request<'_>,
) -> AppResult<Attachment> {
    let InvokeBody::Raw(bytes) = request.body() else {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "send the file's bytes as the body",
        ));
    };
    let name = request
        .headers()
        .get("x-file-name")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_else(|| "attachment".into());
    state.history.media.import(&name, bytes)
}

/// Decodes `%XX` escapes (`encodeURIComponent`); invalid escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("caf%C3%A9%20photo.png"), "café photo.png");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
    }
}
