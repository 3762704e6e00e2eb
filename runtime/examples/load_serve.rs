//! Load test of `mio serve` (bounded count and time, loopback only): starts the server on
//! a free 127.0.0.1 port, runs N concurrent clients sending chat completions until the time
//! or the request budget is spent, and reports throughput, p50/p99 latency, and whether
//! every request got exactly one answer (response ids unique, and each matches one
//! `finished` line of the server's log).
//!
//! `cargo run -p mio-runtime --example load_serve -- MIO_BIN MODEL_DIR [CLIENTS] [SECONDS]
//! [MAX_REQUESTS] [MAX_TOKENS]` (see scripts/load-serve.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// One completion; the status and the answer's id.
fn post(addr: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let id = out
        .split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string();
    Ok((status, id))
}

#[derive(Default)]
struct Tally {
    latencies: Vec<f64>,
    ids: Vec<String>,
    busy: usize,
    failed: usize,
    sent: usize,
}

fn main() {
    let bin = std::env::args().nth(1).expect("give the mio binary");
    let model = std::env::args().nth(2).expect("give the model folder");
    let clients: usize = arg(3, 4);
    let seconds: u64 = arg::<u64>(4, 60).min(60);
    let max_requests: usize = arg(5, 2000);
    let max_tokens: usize = arg(6, 16);
    let mut server = Command::new(bin)
        .args([
            "serve",
            "--model",
            &model,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .args(["--queue", &clients.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = server.stderr.take().unwrap();
    let sink = log.clone();
    let drain = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .trim_start_matches("mio serve: listening on http://")
        .trim_end_matches("/v1")
        .to_string();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let body = format!(
        r#"{{"model":"mio","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"Hello, who are you?"}}]}}"#
    );
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (tally, addr, body) = (tally.clone(), addr.clone(), body.clone());
            std::thread::spawn(move || loop {
                {
                    let mut t = tally.lock().unwrap();
                    if Instant::now() >= deadline || t.sent >= max_requests {
                        return;
                    }
                    t.sent += 1;
                }
                let t0 = Instant::now();
                let result = post(&addr, &body);
                let mut t = tally.lock().unwrap();
                match result {
                    Ok((200, id)) => {
                        t.latencies.push(t0.elapsed().as_secs_f64());
                        t.ids.push(id);
                    }
                    Ok((429, _)) => t.busy += 1,
                    _ => t.failed += 1,
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    let wall = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.kill();
    let _ = server.wait();
    let _ = drain.join();
    report(&tally.lock().unwrap(), &log.lock().unwrap(), clients, wall);
}

fn report(t: &Tally, log: &str, clients: usize, wall: f64) {
    let mut lat = t.latencies.clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    let unique: HashSet<&String> = t.ids.iter().collect();
    let finished = log.lines().filter(|l| l.contains(": finished (")).count();
    let logged: HashSet<String> = log
        .lines()
        .filter(|l| l.contains(": finished ("))
        .filter_map(|l| l.strip_prefix("request ").and_then(|r| r.split(':').next()))
        .map(|n| format!("chatcmpl-{n}"))
        .collect();
    let matched = t.ids.iter().all(|id| logged.contains(id));
    println!(
        "clients {clients}, wall {wall:.1} s, sent {}, ok {}, 429 {}, failed {}",
        t.sent,
        t.ids.len(),
        t.busy,
        t.failed
    );
    println!(
        "throughput {:.2} req/s; latency p50 {:.3} s, p99 {:.3} s",
        t.ids.len() as f64 / wall,
        pct(0.5),
        pct(0.99)
    );
    let lost = t.sent - t.ids.len() - t.busy;
    let once = unique.len() == t.ids.len() && finished == t.ids.len() && matched;
    println!("lost {lost}; every answer unique and matched to one finished request: {once}");
    if lost > 0 || !once {
        std::process::exit(1);
    }
}
