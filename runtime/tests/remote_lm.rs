//! Remote LM engines against the real llama-server: built from the llama.cpp the
//! llama-cpp-sys-2 crate vendors by `scripts/build-llama-tools.sh` (cached under
//! ~/.cache/mio-llama-tools), serving the tiny model's F16 GGUF made by `mio convert`, on a
//! free loopback port. `mio generate --lm-url` must give the golden greedy and beam ids on
//! both APIs and the local backends' constrained ids; a killed server, a wrong URL and a
//! foreign vocabulary give one clear error, and `mio serve` stays usable across a restart
//! of the LM server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mio_models::engine::{Event, GenerationParams, LoadOptions, RemoteLm, Request, Response};
use mio_runtime::device::DeviceKind;
use mio_runtime::engine_backend::EngineWorker;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model() -> String {
    fixtures().join("model").display().to_string()
}

/// The llama-server binary (built once, cached) and the tiny model's F16 GGUF.
struct Setup {
    server: PathBuf,
    gguf: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = Command::new("bash")
            .arg(root.join("scripts/build-llama-tools.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "build-llama-tools.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Overwritten by every run (one file, not one per run).
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remote-lm");
        std::fs::create_dir_all(&dir).unwrap();
        let gguf = dir.join("tiny-f16.gguf");
        let r = mio(&[
            "convert",
            "--model",
            &model(),
            "--out",
            gguf.to_str().unwrap(),
            "--type",
            "f16",
            "--force",
        ]);
        assert!(
            r.status.success(),
            "convert: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        Setup {
            server: Path::new(&bin).join("llama-server"),
            gguf,
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A llama-server process; killed on drop.
struct LlamaServer {
    child: Child,
    port: u16,
}

impl LlamaServer {
    fn start(gguf: &Path, port: u16) -> LlamaServer {
        let child = Command::new(&setup().server)
            .args(["-m", gguf.to_str().unwrap(), "--host", "127.0.0.1"])
            .args([
                "--port",
                &port.to_string(),
                "-c",
                "4096",
                "-np",
                "1",
                "-t",
                "2",
            ])
            .args(["--no-webui", "--log-disable"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = LlamaServer { child, port };
        let start = Instant::now();
        while http_status(port, "/health") != Some(200) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "llama-server never got healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET path`, `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .output()
        .unwrap()
}

fn new_ids(out: &Output) -> Vec<u64> {
    assert!(
        out.status.success(),
        "mio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["new_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn golden_tokens(run: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(fixtures().join("golden/lm.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["runs"][run]["new_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// The golden multimodal prompt, comma-separated.
fn prompt() -> String {
    let bytes = std::fs::read(fixtures().join("golden/lm.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("mm.input_ids").unwrap();
    t.data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn generate(extra: &[&str]) -> Output {
    let (m, p) = (model(), prompt());
    let mut args = vec![
        "generate", "--model", &m, "--ids", &p, "--eos-id", "7", "--json",
    ];
    args.extend(extra);
    mio(&args)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn remote_greedy_and_beam_equal_the_local_backends() {
    let s = setup();
    let server = LlamaServer::start(&s.gguf, free_port());
    let url = server.url();
    let greedy = golden_tokens("greedy");
    let plain = ["--max-new-tokens", "20", "--no-constraints"];
    let local = new_ids(&generate(&plain));
    assert_eq!(local, greedy);
    for api in ["llamacpp", "openai"] {
        let mut args = plain.to_vec();
        args.extend(["--lm-url", &url, "--lm-api", api]);
        assert_eq!(new_ids(&generate(&args)), greedy, "--lm-api {api}");
    }
    let mut beam = plain.to_vec();
    beam.extend(["--num-beams", "5", "--lm-url", &url]);
    assert_eq!(new_ids(&generate(&beam)), golden_tokens("beam5"));

    // Modality constraints on (the tiny model's unconstrained answer breaks them at once):
    // the same ids as the candle and llama.cpp backends.
    let constrained = ["--max-new-tokens", "40"];
    let candle = new_ids(&generate(&constrained));
    let gguf = s.gguf.to_str().unwrap();
    let mut llama = constrained.to_vec();
    llama.extend(["--lm", gguf, "--backend", "llamacpp"]);
    assert_eq!(new_ids(&generate(&llama)), candle);
    for api in ["llamacpp", "openai"] {
        let mut remote = constrained.to_vec();
        remote.extend(["--lm-url", &url, "--lm-api", api]);
        assert_eq!(
            new_ids(&generate(&remote)),
            candle,
            "constrained, --lm-api {api}"
        );
    }
}

#[test]
fn unreachable_or_foreign_servers_are_one_clear_error() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = generate(&["--max-new-tokens", "2", "--lm-url", &url]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains("cannot connect") && err.contains("is the server running"),
        "{err}"
    );

    // https is spoken (rustls): to a port that only speaks plain HTTP, the handshake fails
    // with one clear error instead of a hang.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let https_url = format!("https://{}", plain.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in plain.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = generate(&["--max-new-tokens", "2", "--lm-url", &https_url]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(
        err.contains(&https_url) && err.contains("remote LM"),
        "{err}"
    );
    let out = generate(&["--max-new-tokens", "2", "--lm-url", "ftp://gpu-box:8080"]);
    assert!(
        stderr_of(&out).contains("not an http:// or https:// URL"),
        "{}",
        stderr_of(&out)
    );

    // A fake LM server (test-only) that claims a 32000-token vocabulary.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_url = format!("http://{}", fake.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in fake.incoming().flatten() {
            answer_foreign(stream);
        }
    });
    for api in ["llamacpp", "openai"] {
        let out = generate(&[
            "--max-new-tokens",
            "2",
            "--lm-url",
            &fake_url,
            "--lm-api",
            api,
        ]);
        assert!(!out.status.success());
        let err = stderr_of(&out);
        assert!(
            err.contains("not MIO's 13294-token vocabulary"),
            "{api}: {err}"
        );
    }
}

/// Answers one request like a llama-server that serves a 32000-token LM.
fn answer_foreign(mut stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let answer =
        r#"{"object":"list","data":[{"id":"other.gguf","meta":{"n_vocab":32000,"n_ctx":4096}}]}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

/// The worker's generate request: `n` tokens, greedy, no constraints, no eos in reach.
fn long_greedy(n: usize) -> Request {
    let ids = prompt().split(',').map(|t| t.parse().unwrap()).collect();
    Request::Generate {
        ids,
        params: GenerationParams {
            max_new_tokens: Some(n),
            num_beams: Some(1),
            do_sample: Some(false),
            eos_ids: Some(vec![7]),
            constraints: Some(false),
            ..Default::default()
        },
    }
}

#[test]
fn a_killed_server_is_one_clear_error_and_the_worker_stays_usable() {
    let s = setup();
    let port = free_port();
    let mut server = LlamaServer::start(&s.gguf, port);
    let worker = EngineWorker::spawn().unwrap();
    let opts = LoadOptions {
        model_dir: fixtures().join("model"),
        remote_lm: Some(RemoteLm {
            url: server.url(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let info = worker.load((opts, DeviceKind::Cpu)).unwrap();
    assert_eq!(info.backend, "remote-llamacpp");

    // Kill the server after the 5th streamed token of a long answer.
    let mut seen = 0;
    let handle = worker.run(long_greedy(500)).unwrap();
    let result = handle.wait(|e| {
        if let Event::Token { .. } = e {
            seen += 1;
            if seen == 5 {
                let _ = server.child.kill();
                let _ = server.child.wait();
            }
        }
    });
    let err = format!("{:#}", result.expect_err("the answer must fail"));
    assert!(
        err.contains("remote LM") && err.contains("is the server running"),
        "{err}"
    );
    assert!(seen >= 5, "{seen}");

    // The same worker answers again once the server is back on its port.
    let _server = LlamaServer::start(&s.gguf, port);
    let response = worker.run(long_greedy(20)).unwrap().wait(|_| {}).unwrap();
    let Response::Generated { new_ids, .. } = response else {
        panic!("unexpected response {response:?}");
    };
    let got: Vec<u64> = new_ids.iter().map(|&t| u64::from(t)).collect();
    assert_eq!(got, golden_tokens("greedy"));
}
