//! MIO Desktop: the Tauri 2 shell. Thin commands over mio-runtime (the engine runs on the
//! runtime's worker thread), per-request streams over `tauri::ipc::Channel`, history in
//! SQLite with media files beside it, served to the UI by the scoped `media:` protocol.

pub mod camera;
pub mod commands;
pub mod error;
pub mod export;
pub mod files;
pub mod import_json;
pub mod ipc;
pub mod mic;
pub mod models;
pub mod models_ipc;
pub mod modes;
pub mod protocol;
pub mod serving;
pub mod session;
pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tauri::{Manager, Runtime};

use crate::commands::AppState;
use crate::files::MediaDir;
use crate::session::History;
use crate::store::Store;

/// Opens the history and starts the worker in `data_dir`.
pub fn app_state(data_dir: PathBuf) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&data_dir)?;
    let store = Store::open(&data_dir.join("history.sqlite"))?;
    let media = MediaDir::open(data_dir.join("media"))?;
    let worker = mio_runtime::engine_backend::EngineWorker::spawn()?;
    Ok(AppState {
        worker: Arc::new(worker),
        history: History {
            store: Arc::new(Mutex::new(store)),
            media,
        },
        model: Mutex::new(None),
        import_cancel: Mutex::new(None),
        mic_stop: Mutex::new(None),
        camera: Mutex::new(None),
        server: Mutex::new(None),
        data_dir,
    })
}

/// Builds and runs the app on `builder` (tests pass a mock runtime's builder).
pub fn run_app<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Result<()> {
    builder
        .setup(|app| {
            let data_dir = match std::env::var_os("MIO_DATA_DIR") {
                Some(d) => PathBuf::from(d),
                None => app.path().app_data_dir()?,
            };
            app.manage(app_state(data_dir)?);
            Ok(())
        })
        .register_asynchronous_uri_scheme_protocol("media", |ctx, request, responder| {
            let state = ctx.app_handle().state::<AppState>();
            let media = state.history.media.clone();
            let path = request.uri().path().to_string();
            let range = request
                .headers()
                .get("range")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            std::thread::spawn(move || {
                responder.respond(protocol::respond(&media, &path, range.as_deref()));
            });
        })
        .invoke_handler(tauri::generate_handler![
            commands::model_status,
            commands::generation_presets,
            commands::load_model,
            commands::send_message,
            commands::regenerate,
            commands::cancel,
            commands::prepare_media,
            commands::mic_start,
            commands::mic_stop,
            commands::camera_start,
            commands::camera_snapshot,
            commands::camera_clip,
            commands::camera_stop,
            commands::resend_message,
            commands::import_conversation,
            models::inspect_model,
            models::import_release_folder,
            models::download_release,
            models::cancel_import,
            serving::serve_start,
            serving::serve_stop,
            serving::serve_status,
            commands::list_conversations,
            commands::get_conversation,
            commands::delete_conversation,
            commands::search_conversations,
            commands::export_conversation,
            commands::import_media,
        ])
        .run(tauri::generate_context!())
}

/// Runs the desktop app.
pub fn run() {
    mio_runtime::memory::tune_allocator();
    if let Err(e) = run_app(tauri::Builder::default()) {
        eprintln!("MIO Desktop could not start: {e}");
        std::process::exit(1);
    }
}
