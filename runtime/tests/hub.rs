//! `mio download` / `mio_runtime::hub` against a fake Hugging Face Hub.
//!
//! TEST DOUBLE: the server below is a stand-in for huggingface.co written for these tests
//! (no network here). It speaks the two endpoints a download uses, the way the hub does:
//! the paginated tree listing (`Link: <…>; rel="next"`) with git blob ids and LFS sha256s,
//! and `resolve` with `Range`. It can drop a connection mid-file, corrupt a file, and refuse
//! a gated repo.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use mio_runtime::hub::{download, DownloadOptions, HubClient};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Hub {
    files: Vec<(String, Vec<u8>)>,
    /// Paths whose next response stops after this many bytes (then the connection drops).
    drop_after: HashMap<String, usize>,
    /// Paths served with one byte flipped.
    corrupt: Vec<String>,
    /// `Range` headers received, per path.
    ranges: Vec<(String, String)>,
    /// Requests for file bytes, per path.
    gets: HashMap<String, usize>,
}

type Shared = Arc<Mutex<Hub>>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn entry(path: &str, bytes: &[u8]) -> serde_json::Value {
    let mut git = Sha1::new();
    git.update(format!("blob {}\0", bytes.len()).as_bytes());
    git.update(bytes);
    let mut v = serde_json::json!({
        "type": "file", "path": path, "size": bytes.len(), "oid": hex(&git.finalize()),
    });
    if path.ends_with(".bin") || path.ends_with(".safetensors") {
        v["lfs"] = serde_json::json!({
            "oid": hex(&Sha256::digest(bytes)), "size": bytes.len(), "pointerSize": 134
        });
    }
    v
}

async fn tree(
    State(hub): State<Shared>,
    UrlPath((owner, _name, _rev)): UrlPath<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if owner == "gated" {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let hub = hub.lock().unwrap();
    let mut all: Vec<serde_json::Value> =
        vec![serde_json::json!({"type": "directory", "path": "sub", "size": 0, "oid": "x"})];
    all.extend(hub.files.iter().map(|(p, b)| entry(p, b)));
    // Two pages, as the hub paginates long listings.
    let half = all.len() / 2;
    let (page, next) = if q.is_some_and(|q| q.contains("cursor=")) {
        (all[half..].to_vec(), None)
    } else {
        (all[..half].to_vec(), Some("?recursive=true&cursor=p2"))
    };
    let mut resp = axum::Json(page).into_response();
    if let Some(next) = next {
        let host = headers["host"].to_str().unwrap();
        let link =
            format!("<http://{host}/api/models/{owner}/{_name}/tree/{_rev}{next}>; rel=\"next\"");
        resp.headers_mut().insert("link", link.parse().unwrap());
    }
    resp
}

async fn resolve(
    State(hub): State<Shared>,
    UrlPath((_owner, _name, _rev, path)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut hub = hub.lock().unwrap();
    let Some(bytes) = hub
        .files
        .iter()
        .find(|(p, _)| *p == path)
        .map(|f| f.1.clone())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    *hub.gets.entry(path.clone()).or_default() += 1;
    let mut bytes = bytes;
    if hub.corrupt.contains(&path) {
        bytes[0] ^= 0xff;
    }
    let from = headers.get("range").and_then(|r| r.to_str().ok()).map(|r| {
        hub.ranges.push((path.clone(), r.to_string()));
        r.trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse::<usize>()
            .unwrap()
    });
    let body = bytes[from.unwrap_or(0)..].to_vec();
    let len = body.len();
    let status = if from.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body = match hub.drop_after.remove(&path) {
        Some(n) => {
            let chunk: Result<Bytes, std::io::Error> = Ok(Bytes::from(body[..n].to_vec()));
            // The cut comes a moment later, so the first bytes leave the server first.
            let cut = futures_util::stream::once(async {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "dropped",
                ))
            });
            use futures_util::StreamExt;
            Body::from_stream(futures_util::stream::iter([chunk]).chain(cut))
        }
        None => Body::from(body),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert("content-length", len.to_string().parse().unwrap());
    resp
}

/// Starts the fake hub on a loopback port; returns its URL.
fn serve(hub: Shared) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = Router::new()
                .route("/api/models/{owner}/{name}/tree/{rev}", get(tree))
                .route("/{owner}/{name}/resolve/{rev}/{*path}", get(resolve))
                .with_state(hub);
            tx.send(format!("http://{addr}")).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn release() -> Shared {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let files = vec![
        ("config.json".to_string(), br#"{"hidden_size": 8}"#.to_vec()),
        ("pytorch_model-00001-of-00001.bin".to_string(), big),
        (
            "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.safetensors".to_string(),
            vec![1u8; 5000],
        ),
        (
            "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.fp16.safetensors".to_string(),
            vec![2u8; 2500],
        ),
        (".gitattributes".to_string(), b"*.bin filter=lfs\n".to_vec()),
    ];
    Arc::new(Mutex::new(Hub {
        files,
        ..Default::default()
    }))
}

fn opts(out: &Path, repo: &str) -> DownloadOptions {
    DownloadOptions {
        repo: repo.into(),
        revision: "main".into(),
        out: out.to_path_buf(),
        all_files: false,
    }
}

const BIG: &str = "pytorch_model-00001-of-00001.bin";

#[test]
fn downloads_verified_files_resumes_after_a_drop_and_skips_what_is_done() {
    let hub = release();
    hub.lock().unwrap().drop_after.insert(BIG.into(), 100_000);
    let url = serve(hub.clone());
    let client = HubClient::new(Some(url), None);
    let dir = tempfile::tempdir().unwrap();
    let mut last = None;
    let report = download(&client, &opts(dir.path(), "m-a-p/tiny"), None, &mut |p| {
        last = Some(p.clone())
    })
    .unwrap();

    // Every kept file is whole; the unread fp16 variant and repo metadata are skipped.
    let files = hub.lock().unwrap().files.clone();
    for (path, bytes) in &files[..3] {
        assert_eq!(
            &std::fs::read(dir.path().join(path)).unwrap(),
            bytes,
            "{path}"
        );
    }
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(!dir.path().join(&files[3].0).exists());
    // The dropped connection was resumed from where it stopped, not restarted.
    let ranges = hub.lock().unwrap().ranges.clone();
    assert_eq!(ranges, vec![(BIG.to_string(), "bytes=100000-".to_string())]);
    let last = last.unwrap();
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(report.bytes_fetched, last.bytes_total);
    // No partial files remain.
    let parts = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".part"));
    assert_eq!(parts.count(), 0);

    // Again: nothing is fetched.
    let gets_before = hub.lock().unwrap().gets.values().sum::<usize>();
    let again = download(&client, &opts(dir.path(), "m-a-p/tiny"), None, &mut |_| {}).unwrap();
    assert_eq!((again.already_present, again.bytes_fetched), (3, 0));
    assert_eq!(
        hub.lock().unwrap().gets.values().sum::<usize>(),
        gets_before
    );
}

#[test]
fn a_cancelled_download_resumes_with_range() {
    let hub = release();
    let url = serve(hub.clone());
    let client = HubClient::new(Some(url), None);
    let dir = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let err = download(
        &client,
        &opts(dir.path(), "m-a-p/tiny"),
        Some(&cancel),
        &mut |p| {
            if p.file == BIG && p.bytes_fetched > 0 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
    );
    // Progress is reported every 100 ms, so the cancel may land after the file is done;
    // then nothing is left to resume, which is fine too.
    if let Err(e) = err {
        assert!(e.to_string().contains("cancelled"), "{e}");
        assert!(!dir.path().join(BIG).exists());
        let report = download(&client, &opts(dir.path(), "m-a-p/tiny"), None, &mut |_| {}).unwrap();
        assert_eq!(report.files.len(), 3);
    }
    let want = &hub.lock().unwrap().files[1].1;
    assert_eq!(&std::fs::read(dir.path().join(BIG)).unwrap(), want);
}

#[test]
fn a_corrupt_file_is_one_clear_error_and_not_kept() {
    let hub = release();
    hub.lock().unwrap().corrupt.push(BIG.into());
    let client = HubClient::new(Some(serve(hub)), None);
    let dir = tempfile::tempdir().unwrap();
    let err = download(&client, &opts(dir.path(), "m-a-p/tiny"), None, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(BIG) && msg.contains("corrupt"), "{msg}");
    assert!(!dir.path().join(BIG).exists());
    assert!(!dir.path().join(format!("{BIG}.part")).exists());
}

#[test]
fn gated_and_missing_repos_say_what_to_do() {
    let client = HubClient::new(Some(serve(release())), None);
    let dir = tempfile::tempdir().unwrap();
    let err = download(&client, &opts(dir.path(), "gated/model"), None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    let dead = HubClient::new(Some("http://127.0.0.1:9".into()), None);
    let err = download(&dead, &opts(dir.path(), "m-a-p/tiny"), None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("cannot reach"), "{err}");
}

#[test]
fn mio_download_cli() {
    let url = serve(release());
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mio"))
        .args([
            "download",
            "--repo",
            "m-a-p/tiny",
            "--json",
            "--endpoint",
            &url,
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"].as_array().unwrap().len(), 3);
    assert!(dir.path().join("config.json").is_file());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}
