//! Tauri's build step; the app manifest lists every command so each gets an `allow-*`
//! permission and the capability file grants exactly these.

fn main() {
    let commands = &[
        "model_status",
        "generation_presets",
        "load_model",
        "send_message",
        "regenerate",
        "cancel",
        "prepare_media",
        "mic_start",
        "mic_stop",
        "camera_start",
        "camera_snapshot",
        "camera_clip",
        "camera_stop",
        "resend_message",
        "import_conversation",
        "inspect_model",
        "import_release_folder",
        "download_release",
        "cancel_import",
        "serve_start",
        "serve_stop",
        "serve_status",
        "list_conversations",
        "get_conversation",
        "delete_conversation",
        "search_conversations",
        "export_conversation",
        "import_media",
    ];
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(commands));
    if let Err(e) = tauri_build::try_build(attributes) {
        println!("cargo:warning=tauri build step failed: {e:#}");
        std::process::exit(1);
    }
}
