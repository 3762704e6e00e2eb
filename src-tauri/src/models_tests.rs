#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ipc::LoadArgs;
use crate::models_ipc::{Quant, RemoteArgs};
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
        remote: None,
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
    // Progress never goes back and ends at 100 % (each step counts exactly its share of
    // the work, whatever its writes add up to).
    let done: Vec<u64> = events
        .iter()
        .map(|e| {
            let ImportEvent::Progress { bytes_done, .. } = e;
            *bytes_done
        })
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    let ImportEvent::Progress {
        bytes_done,
        bytes_total,
        eta_s,
        ..
    } = events.last().unwrap();
    assert_eq!(bytes_done, bytes_total);
    assert_eq!(*eta_s, Some(0.0));

    // The model manager's view of the imported folder: one GGUF, its quant, sizes.
    let folder = inspect(&out).unwrap();
    assert_eq!(folder.imported_quant.as_deref(), Some("q8_0"));
    assert_eq!(folder.lm_files, vec!["model-q8_0.gguf".to_string()]);
    let lm = folder.components.iter().find(|c| c.name == "lm").unwrap();
    assert_eq!(lm.format, "gguf");
    assert!(lm.bytes > 0 && folder.total_bytes >= lm.bytes);

    // It loads on the worker thread with the options the app sends.
    let worker = EngineWorker::spawn().unwrap();
    let opts = load_options(&out, &load_args(None)).unwrap();
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
    let o = load_options(dir, &a).unwrap();
    assert_eq!(o.backend, LmBackend::LlamaCpp);
    assert_eq!(o.precision, Precision::F16);
    assert_eq!(o.gpu_layers, GpuLayers::Count(12));
    assert_eq!(o.lm_file, Some(PathBuf::from("/m/model-q4_k_m.gguf")));
    let o = load_options(dir, &load_args(None)).unwrap();
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

#[test]
fn the_remote_backend_needs_a_url_and_maps_to_remote_lm() {
    let dir = Path::new("/m");
    let mut a = load_args(None);
    a.backend = Backend::Remote;
    let e = load_options(dir, &a).unwrap_err();
    assert_eq!(e.code, ErrorCode::ModelLoad);
    assert!(e.message.contains("URL"), "{}", e.message);
    a.remote = Some(RemoteArgs {
        url: "  http://gpu-box:8080 ".into(),
        api: RemoteApiArg::Openai,
        api_key: Some(" ".into()),
        model: Some("mio".into()),
    });
    let o = load_options(dir, &a).unwrap();
    let r = o.remote_lm.unwrap();
    assert_eq!(r.url, "http://gpu-box:8080");
    assert_eq!(r.api, RemoteLmApi::OpenAi);
    assert_eq!(r.api_key, None);
    assert_eq!(r.model.as_deref(), Some("mio"));
    // Remote settings are ignored by the local backends.
    a.backend = Backend::Candle;
    assert!(load_options(dir, &a).unwrap().remote_lm.is_none());
}

/// TEST DOUBLE: a stand-in for huggingface.co (no network here) speaking the two endpoints a
/// download uses: the tree listing with LFS sha256s and `resolve` for the bytes. Serves
/// `files` to every connection until the test ends; returns its endpoint.
fn fake_hub(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let files = files.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = if path.starts_with("/api/models/owner/mio/tree/main") {
                    let list: Vec<_> = files
                        .iter()
                        .map(|(p, b)| {
                            let sha: String = Sha256::digest(b)
                                .iter()
                                .map(|x| format!("{x:02x}"))
                                .collect();
                            serde_json::json!({"type": "file", "path": p, "size": b.len(),
                                "oid": "0", "lfs": {"oid": sha, "size": b.len()}})
                        })
                        .collect();
                    ("200 OK", serde_json::to_vec(&list).unwrap())
                } else if let Some(f) = path.strip_prefix("/owner/mio/resolve/main/") {
                    match files.iter().find(|(p, _)| *p == f) {
                        Some((_, b)) => ("200 OK", b.clone()),
                        None => ("404 Not Found", vec![]),
                    }
                } else {
                    ("404 Not Found", vec![])
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    endpoint
}

#[test]
fn download_streams_progress_verifies_and_a_second_run_fetches_nothing() {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let config = b"{\"model_type\": \"llama\"}".to_vec();
    let hub = fake_hub(vec![
        ("config.json", config.clone()),
        ("pytorch_model-00001-of-00001.bin", big.clone()),
    ]);
    let data = tempfile::tempdir().unwrap();
    let args = DownloadArgs {
        repo: "owner/mio".into(),
        out_dir: None,
    };
    let mut events = vec![];
    let r = run_download(
        data.path(),
        Some(hub.clone()),
        &args,
        Arc::new(AtomicBool::new(false)),
        &mut |e| events.push(e),
    )
    .unwrap();
    let out = data.path().join("downloads/mio");
    assert_eq!(PathBuf::from(&r.out_dir), out);
    assert_eq!(r.files, 2);
    assert_eq!(r.bytes_total, (big.len() + config.len()) as u64);
    assert_eq!(r.bytes_fetched, r.bytes_total);
    assert_eq!(
        std::fs::read(out.join("pytorch_model-00001-of-00001.bin")).unwrap(),
        big
    );
    let ImportEvent::Progress {
        stage,
        bytes_done,
        bytes_total,
        ..
    } = events.last().unwrap();
    assert_eq!(stage, "download");
    assert_eq!((*bytes_done, *bytes_total), (r.bytes_total, r.bytes_total));
    // Again: everything is there and verified, nothing is fetched.
    let again = run_download(
        data.path(),
        Some(hub),
        &args,
        Arc::new(AtomicBool::new(false)),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!((again.files, again.bytes_fetched), (2, 0));
}

#[test]
fn a_cancelled_or_impossible_download_is_one_clear_error() {
    let big: Vec<u8> = vec![7; 200_000];
    let hub = fake_hub(vec![("model.safetensors", big)]);
    let data = tempfile::tempdir().unwrap();
    let args = DownloadArgs {
        repo: "owner/mio".into(),
        out_dir: Some(data.path().join("r").display().to_string()),
    };
    let e = run_download(
        data.path(),
        Some(hub.clone()),
        &args,
        Arc::new(AtomicBool::new(true)),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Import);
    assert!(e.message.contains("cancelled"), "{}", e.message);
    assert!(!data.path().join("r/model.safetensors").exists());
    let bad = DownloadArgs {
        repo: "not a repo".into(),
        out_dir: None,
    };
    let e = run_download(
        data.path(),
        Some(hub.clone()),
        &bad,
        Arc::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(e.message.contains("owner/name"), "{}", e.message);
    let missing = DownloadArgs {
        repo: "owner/other".into(),
        out_dir: None,
    };
    // A repository the hub does not have.
    let e = run_download(
        data.path(),
        Some(hub),
        &missing,
        Arc::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Import);
}
