#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::ipc::ModelInfo;
use mio_models::engine::LoadOptions;
use mio_runtime::device::DeviceKind;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

fn http(addr: &str, request: &str) -> (u16, String) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string()
}

fn loopback(port: u16) -> ServeArgs {
    ServeArgs {
        port,
        lan: false,
        api_key: None,
    }
}

#[test]
fn the_switch_serves_the_loaded_model_over_the_apps_worker_and_stops() {
    let data = tempfile::tempdir().unwrap();
    let state = crate::app_state(data.path().to_path_buf()).unwrap();
    // No model yet: one clear error.
    assert_eq!(
        start(&state, &loopback(0)).unwrap_err().code,
        ErrorCode::NoModel
    );

    let dir = crate::commands::bundled_model_dir();
    let opts = LoadOptions {
        model_dir: dir.clone(),
        ..LoadOptions::default()
    };
    state.worker.load((opts, DeviceKind::Cpu)).unwrap();
    *state.model.lock().unwrap() = Some(ModelInfo {
        model_dir: dir.display().to_string(),
        label: "Tiny test model".into(),
        random_weights: true,
        layers: 2,
        hidden_size: 64,
        vocab_size: 100,
        device: "cpu".into(),
        load_s: 0.0,
    });

    // The network needs a key.
    let lan = ServeArgs {
        port: 0,
        lan: true,
        api_key: None,
    };
    assert_eq!(
        start(&state, &lan).unwrap_err().code,
        ErrorCode::InvalidInput
    );

    let served = start(&state, &loopback(0)).unwrap();
    assert!(
        served.url.starts_with("http://127.0.0.1:"),
        "{}",
        served.url
    );
    assert_eq!(served.model, "Tiny-test-model");
    assert_eq!(status(&state), Some(served.clone()));
    // One server at a time.
    let e = start(&state, &loopback(0)).unwrap_err();
    assert!(e.message.contains("already serving"), "{}", e.message);

    let host = host_of(&served.url);
    let (code, body) = http(
        &host,
        &format!("GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"Tiny-test-model\""), "{body}");
    // A chat completion runs on the app's worker with the app's model.
    let req =
        r#"{"model":"Tiny-test-model","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}"#;
    let (code, body) = http(
        &host,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{req}",
            req.len()
        ),
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);

    // Stop closes the port, and the same port can serve again.
    let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
    stop(&state);
    assert_eq!(status(&state), None);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let again = start(&state, &loopback(port)).unwrap();
    assert_eq!(host_of(&again.url), host);
    // A port something else holds is one clear error.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = busy.local_addr().unwrap().port();
    stop(&state);
    let e = start(&state, &loopback(taken)).unwrap_err();
    assert!(e.message.contains("another port"), "{}", e.message);
}
