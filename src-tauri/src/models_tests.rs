#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ipc::LoadArgs;
use crate::models_ipc::Quant;
use mio_runtime::device::DeviceKind;
use mio_runtime::engine_backend::EngineWorker;

fn release() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/release-layout"
    ))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn args(quant: Quant, out: Option<&Path>) -> ImportArgs {
    ImportArgs {
        release_dir: release().display().to_string(),
        out_dir: out.map(|p| p.display().to_string()),
        quant,
    }
}

fn load_args(lm_file: Option<&str>) -> LoadArgs {
    LoadArgs {
        model_dir: None,
        device: "cpu".into(),
        backend: Backend::Candle,
        precision: PrecisionArg::F32,
        gpu_layers: None,
        lm_file: lm_file.map(str::to_string),
    }
}

#[test]
fn import_streams_paced_progress_and_the_result_loads() {
    let data = tempfile::tempdir().unwrap();
    let mut events = vec![];
    let result = run_import(
        data.path(),
        &args(Quant::Q80, None),
        Arc::new(AtomicBool::new(false)),
        &mut |e| events.push(e),
    )
    .unwrap();
    let out = PathBuf::from(&result.out_dir);
    assert_eq!(out, data.path().join("models/release-layout-q8_0"));
    assert!(result.written.iter().any(|f| f == "model-q8_0.gguf"));
    assert!(!events.is_empty());
    let mut stages = vec![];
    for e in &events {
        let ImportEvent::Progress {
            stage,
            bytes_done,
            bytes_total,
            rate_bytes_per_s,
            eta_s,
            ..
        } = e;
        assert!(bytes_done <= bytes_total);
        assert!(*rate_bytes_per_s >= 0.0);
        assert!(eta_s.is_none_or(|s| s >= 0.0));
        stages.push(stage.clone());
    }
    assert!(stages.iter().any(|s| s == "verify"), "{stages:?}");
    assert!(stages.iter().any(|s| s == "write"), "{stages:?}");
    // Progress advanced (the runtime's byte total is an estimate of the work: the import
    // may end short of it).
    assert!(events.iter().any(|e| {
        let ImportEvent::Progress { bytes_done, .. } = e;
        *bytes_done > 0
    }));

    // The model manager's view of the imported folder: one GGUF, its quant, sizes.
    let folder = inspect(&out).unwrap();
    assert_eq!(folder.imported_quant.as_deref(), Some("q8_0"));
    assert_eq!(folder.lm_files, vec!["model-q8_0.gguf".to_string()]);
    let lm = folder.components.iter().find(|c| c.name == "lm").unwrap();
    assert_eq!(lm.format, "gguf");
    assert!(lm.bytes > 0 && folder.total_bytes >= lm.bytes);

    // It loads on the worker thread with the options the app sends.
    let worker = EngineWorker::spawn().unwrap();
    let opts = load_options(&out, &load_args(None));
    let info = worker.load((opts, DeviceKind::Cpu)).unwrap();
    assert!(info.layers > 0);
}

#[test]
fn a_cancelled_import_says_so_and_leaves_no_partial_file() {
    let data = tempfile::tempdir().unwrap();
    let out = data.path().join("m");
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let err = run_import(
        data.path(),
        &args(Quant::F16, Some(&out)),
        cancel,
        &mut |e| {
            let ImportEvent::Progress { stage, .. } = &e;
            if stage == "write" {
                flag.store(true, Ordering::Relaxed);
            }
        },
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Import);
    assert!(err.message.contains("cancelled"), "{}", err.message);
    let partial: Vec<_> = files_under(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    assert!(!out.join(mio_models::imported::MANIFEST_FILE).exists());
}

#[test]
fn a_bad_release_is_one_clear_error() {
    let data = tempfile::tempdir().unwrap();
    let mut a = args(Quant::Q4KM, None);
    a.release_dir = data.path().join("nowhere").display().to_string();
    let err = run_import(
        data.path(),
        &a,
        Arc::new(AtomicBool::new(false)),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::Import);
    assert!(err.message.contains("nowhere"), "{}", err.message);
    assert!(!data.path().join("models").exists());
}

#[test]
fn inspecting_the_release_shows_sizes_and_memory_per_format() {
    let folder = inspect(&release()).unwrap();
    let lm = folder.components.iter().find(|c| c.name == "lm").unwrap();
    assert_eq!(lm.format, "pytorch-pickle");
    let weights: Vec<_> = folder.memory.iter().map(|m| m.weights.as_str()).collect();
    assert_eq!(weights, ["f32", "f16", "q8_0", "q4_k_m"]);
    assert!(folder.memory[0].total_bytes > folder.memory[3].total_bytes);
    assert!(folder.imported_quant.is_none() && folder.lm_files.is_empty());
    assert_eq!(
        inspect(Path::new("/nonexistent/mio")).unwrap_err().code,
        ErrorCode::ModelLoad
    );
}

#[test]
fn load_options_follow_the_manager() {
    let dir = Path::new("/m");
    let mut a = load_args(Some("model-q4_k_m.gguf"));
    a.backend = Backend::Llamacpp;
    a.precision = PrecisionArg::F16;
    a.gpu_layers = Some(12);
    let o = load_options(dir, &a);
    assert_eq!(o.backend, LmBackend::LlamaCpp);
    assert_eq!(o.precision, Precision::F16);
    assert_eq!(o.gpu_layers, GpuLayers::Count(12));
    assert_eq!(o.lm_file, Some(PathBuf::from("/m/model-q4_k_m.gguf")));
    let o = load_options(dir, &load_args(None));
    assert_eq!(o.gpu_layers, GpuLayers::Auto);
    assert_eq!(o.lm_file, None);
}

#[test]
fn default_out_is_under_the_data_folder() {
    assert_eq!(
        default_out(Path::new("/d"), Path::new("/x/MIO-7B-Instruct/"), "q4_k_m"),
        PathBuf::from("/d/models/MIO-7B-Instruct-q4_k_m")
    );
}
