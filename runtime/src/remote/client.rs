//! [`Client`]: blocking JSON over HTTP or HTTPS (ureq with rustls, the client `mio
//! download` uses too) to the LM server, with timeouts, retries with exponential back-off on
//! connection errors and on "server busy / loading" answers, and errors that say what failed
//! where.

use std::io::Read;
use std::time::Duration;

use mio_models::engine::{RemoteLm as RemoteLmOptions, RemoteLmApi};
use mio_models::{Error, Result};
use serde_json::Value;

/// Connection attempts per request (the first one included).
const ATTEMPTS: u32 = 4;
/// First back-off delay; doubles after every failed attempt (0.25 + 0.5 + 1 s in all).
const BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one answer (a long prompt on a slow server is the worst case).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A connection to one LM server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    api: RemoteLmApi,
    api_key: Option<String>,
}

fn remote(msg: String) -> Error {
    Error::RemoteLm(msg)
}

/// Largest answer read (top-k log-probs of one step are a few kB).
const MAX_ANSWER: u64 = 64 << 20;

impl Client {
    /// A client for `opts.url` (`http://` or `https://`; a trailing `/` or `/v1` is dropped).
    pub fn new(opts: &RemoteLmOptions) -> Result<Self> {
        let url = opts.url.trim().trim_end_matches('/');
        let url = url.strip_suffix("/v1").unwrap_or(url);
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(remote(format!(
                "{url:?} is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)"
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        Ok(Client {
            agent,
            base: url.to_string(),
            api: opts.api,
            api_key: opts.api_key.clone(),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API it speaks.
    pub fn api(&self) -> RemoteLmApi {
        self.api
    }

    /// `GET path` as JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.send(path, None)
    }

    /// `POST path` with a JSON body, as JSON.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(path, Some(body))
    }

    fn send(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut delay = BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match self.once(&url, body) {
                Err(Attempt::Retry(_)) if attempt < ATTEMPTS => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(Attempt::Retry(msg)) => {
                    return Err(remote(format!(
                        "{url}: {msg} (after {ATTEMPTS} attempts; is the server running?)"
                    )))
                }
                Err(Attempt::Fail(msg)) => return Err(remote(format!("{url}: {msg}"))),
                Ok(v) => return Ok(v),
            }
        }
        Err(remote(format!("{url}: no attempt made")))
    }

    fn once(&self, url: &str, body: Option<&Value>) -> std::result::Result<Value, Attempt> {
        let mut req = match body {
            Some(_) => self.agent.post(url),
            None => self.agent.get(url),
        };
        if let Some(key) = &self.api_key {
            req = req.set("Authorization", &format!("Bearer {key}"));
        }
        let sent = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match sent {
            Ok(r) => r,
            Err(ureq::Error::Status(503, r)) => {
                return Err(Attempt::Retry(format!(
                    "server busy or loading (503): {}",
                    text_of(r)
                )))
            }
            Err(ureq::Error::Status(code, r)) => {
                let detail: String = text_of(r).chars().take(400).collect();
                return Err(Attempt::Fail(format!("HTTP {code}: {detail}")));
            }
            Err(ureq::Error::Transport(t)) => return Err(classify(&t)),
        };
        let mut text = String::new();
        resp.into_reader()
            .take(MAX_ANSWER)
            .read_to_string(&mut text)
            .map_err(|e| Attempt::Fail(format!("the answer broke off: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| Attempt::Fail(format!("the answer is not JSON ({e})")))
    }
}

fn text_of(r: ureq::Response) -> String {
    r.into_string().unwrap_or_default()
}

/// How one attempt failed.
enum Attempt {
    /// Worth another try (no connection, server loading).
    Retry(String),
    /// Final.
    Fail(String),
}

fn classify(t: &ureq::Transport) -> Attempt {
    let msg = chain(t);
    match t.kind() {
        ureq::ErrorKind::ConnectionFailed => Attempt::Retry(format!("cannot connect ({msg})")),
        ureq::ErrorKind::Dns => Attempt::Fail(format!("cannot find the host ({msg})")),
        ureq::ErrorKind::Io if msg.contains("timed out") => {
            Attempt::Fail(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
        }
        // The connection broke before an answer came (server killed or restarted); every
        // request is stateless, so sending it again is safe.
        ureq::ErrorKind::Io | ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
            Attempt::Retry(format!("the connection broke ({msg})"))
        }
        _ => Attempt::Fail(format!("the request failed: {msg}")),
    }
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
