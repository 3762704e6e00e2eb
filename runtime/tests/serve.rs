//! `mio serve` as a real process on the tiny model (random weights: structure, not
//! content), on a free loopback port: the OpenAI Python client (`serve_client.py`, in a
//! cached venv this test creates when missing) for text, image and audio input, audio
//! output, streaming, cancel by disconnect, 429 under load and the refusals; raw HTTP for
//! the error objects, the API key and CORS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The `openai` package version the client test pins.
const OPENAI_VERSION: &str = "3.57.0";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

struct Server {
    child: Child,
    addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let model = fixtures().join("model");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mio"))
            .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first
            .trim()
            .strip_prefix("mio serve: listening on http://")
            .and_then(|a| a.strip_suffix("/v1"))
            .unwrap_or_else(|| panic!("no address in {first:?}; log: {}", log.lock().unwrap()))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        Server { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange: status, head, body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn error_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    let e = v["error"].clone();
    assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
    e
}

/// The venv's python with the pinned `openai` package (created once, then cached).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("MIO_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap();
    let venv = Path::new(&home).join(".cache/mio-test-venv");
    let py = venv.join("bin/python");
    let has = |py: &Path| {
        Command::new(py)
            .args([
                "-c",
                &format!("import openai, sys; sys.exit(openai.__version__ != '{OPENAI_VERSION}')"),
            ])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has(&py) {
        let st = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "python3 -m venv failed (install python3-venv)"
        );
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", &format!("openai=={OPENAI_VERSION}")])
            .status()
            .unwrap();
        assert!(st.success(), "pip install openai failed");
    }
    py
}

#[test]
fn openai_python_client_against_mio_serve() {
    let server = Server::start(&[
        "--queue",
        "1",
        "--api-key",
        "test-key",
        "--max-body-mb",
        "1",
    ]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_client.py");
    let out = Command::new(python())
        .arg(script)
        .env("MIO_BASE_URL", format!("http://{}/v1", server.addr))
        .env("MIO_API_KEY", "test-key")
        .env(
            "MIO_IMAGE",
            fixtures().join("golden/inputs/synthetic_0.png"),
        )
        .env("MIO_AUDIO", fixtures().join("golden/inputs/speech_16k.wav"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "client failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    println!("{stdout}");
    // The hung-up stream was cancelled on the worker before its end (3000 tokens).
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    let gone = log
        .lines()
        .find_map(|l| l.strip_suffix(": client gone, cancelling"))
        .unwrap_or_else(|| panic!("no cancel in the log:\n{log}"));
    let end = log
        .lines()
        .find(|l| {
            l.starts_with(&format!("{gone}: ")) && l.to_lowercase().contains("(cancelled) after ")
        })
        .unwrap_or_else(|| panic!("{gone} was not stopped:\n{log}"));
    let n: usize = end.rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(n < 3000, "{end}");
}

#[test]
fn errors_key_and_cors_over_raw_http() {
    let server = Server::start(&["--api-key", "k1", "--cors-origin", "http://app.local"]);
    let a = server.addr.as_str();
    let key = "Authorization: Bearer k1";
    let (status, _, body) = http(a, "GET", "/v1/models", &[], "");
    assert_eq!(
        (status, error_of(&body)["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let (status, _, body) = http(a, "GET", "/v1/models", &[key], "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, v["object"].as_str(), v["data"][0]["id"].as_str()),
        (200, Some("list"), Some("model"))
    );
    let (status, _, body) = http(a, "GET", "/v1/models/model", &[key], "");
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["id"].as_str()
        ),
        (200, Some("model"))
    );
    let (status, _, body) = http(a, "GET", "/v1/models/gpt-9", &[key], "");
    assert_eq!(
        (status, error_of(&body)["code"].as_str()),
        (404, Some("model_not_found"))
    );
    let (status, _, body) = http(a, "GET", "/v1/nowhere", &[key], "");
    assert_eq!(
        (status, error_of(&body)["code"].as_str()),
        (404, Some("unknown_url"))
    );
    let json = "Content-Type: application/json";
    let (status, _, body) = http(a, "POST", "/v1/chat/completions", &[key, json], "{not json");
    assert_eq!(
        (status, error_of(&body)["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let bad_role = r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#;
    let (status, _, body) = http(a, "POST", "/v1/chat/completions", &[key, json], bad_role);
    assert_eq!(
        (status, error_of(&body)["param"].as_str()),
        (400, Some("messages"))
    );
    let (_, head, _) = http(
        a,
        "GET",
        "/v1/models",
        &[key, "Origin: http://app.local"],
        "",
    );
    assert!(
        head.contains("access-control-allow-origin: http://app.local"),
        "{head}"
    );
    // Without --cors-origin there are no CORS headers.
    let plain = Server::start(&[]);
    let (status, head, _) = http(
        &plain.addr,
        "GET",
        "/v1/models",
        &["Origin: http://app.local"],
        "",
    );
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-allow-origin"), "{head}");
}
