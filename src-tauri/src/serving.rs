//! The app's "Serve the OpenAI API" switch: mio-runtime's `mio serve` server
//! ([`mio_runtime::serve::Server`]) over the app's own worker and loaded model, so other
//! programs on this machine (or, with a key, the network) use the model the app has loaded.
//! Their requests wait on the same worker as the app's turns.

use mio_runtime::serve::{ServeOptions, Server};
use tauri::State;

use crate::commands::AppState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::models_ipc::{ServeArgs, ServeStatus};

/// The running server and what the UI shows of it.
pub struct Serving {
    server: Server,
    status: ServeStatus,
}

/// Starts serving the loaded model with `args`; one server at a time.
pub fn start(state: &AppState, args: &ServeArgs) -> AppResult<ServeStatus> {
    let label = match state.model.lock() {
        Ok(m) => m.as_ref().map(|m| m.label.clone()),
        Err(_) => None,
    }
    .ok_or_else(|| {
        AppError::new(
            ErrorCode::NoModel,
            "load a model first: the server answers with the loaded model",
        )
    })?;
    let api_key = args.api_key.clone().filter(|k| !k.trim().is_empty());
    if args.lan && api_key.is_none() {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "serving on the local network needs an API key (anyone there could use the model)",
        ));
    }
    let mut slot = state
        .server
        .lock()
        .map_err(|_| AppError::new(ErrorCode::Internal, "the server state is unavailable"))?;
    if let Some(s) = slot.as_ref() {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            format!("already serving on {}; stop it first", s.status.url),
        ));
    }
    let opts = ServeOptions {
        host: if args.lan { "0.0.0.0" } else { "127.0.0.1" }.into(),
        port: args.port,
        api_key: api_key.clone(),
        queue: 8,
        max_body_mb: 64,
        cors_origin: None,
        max_tokens: None,
    };
    let model = model_id(&label);
    let server = Server::start(state.worker.clone(), &model, &opts).map_err(|e| {
        AppError::new(
            ErrorCode::InvalidInput,
            format!(
                "cannot serve on port {}: {} (pick another port)",
                args.port,
                mio_runtime::commands::one_sentence(&e)
            ),
        )
    })?;
    let status = ServeStatus {
        url: format!("http://{}/v1", server.addr()),
        model,
        lan: args.lan,
        api_key: api_key.is_some(),
    };
    *slot = Some(Serving {
        server,
        status: status.clone(),
    });
    Ok(status)
}

/// The model name clients ask for: the loaded folder's name, as `mio serve` uses.
fn model_id(label: &str) -> String {
    let id: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "mio".into()
    } else {
        id
    }
}

/// Stops the server (open streams end; their requests are cancelled).
pub fn stop(state: &AppState) {
    if let Some(s) = take(state) {
        s.server.stop();
    }
}

/// The running server, no longer registered.
fn take(state: &AppState) -> Option<Serving> {
    state.server.lock().ok().and_then(|mut s| s.take())
}

/// What is being served, if anything.
pub fn status(state: &AppState) -> Option<ServeStatus> {
    state
        .server
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|s| s.status.clone()))
}

#[tauri::command]
pub async fn serve_start(state: State<'_, AppState>, args: ServeArgs) -> AppResult<ServeStatus> {
    start(&state, &args)
}

#[tauri::command]
pub async fn serve_stop(state: State<'_, AppState>) -> AppResult<()> {
    // Joining the server thread blocks: not on the async runtime.
    if let Some(s) = take(&state) {
        tauri::async_runtime::spawn_blocking(move || s.server.stop())
            .await
            .map_err(|e| AppError::new(ErrorCode::Internal, format!("stop task failed: {e}")))?;
    }
    Ok(())
}

#[tauri::command]
pub async fn serve_status(state: State<'_, AppState>) -> AppResult<Option<ServeStatus>> {
    Ok(status(&state))
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;
