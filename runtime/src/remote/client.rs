//! [`Client`]: blocking JSON over HTTP to the LM server, with timeouts, retries with
//! exponential back-off on connection errors and on "server busy / loading" answers, and
//! errors that say what failed where.

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
    http: reqwest::blocking::Client,
    base: String,
    api: RemoteLmApi,
    api_key: Option<String>,
}

fn remote(msg: String) -> Error {
    Error::RemoteLm(msg)
}

impl Client {
    /// A client for `opts.url` (plain `http://`; a trailing `/` or `/v1` is dropped).
    pub fn new(opts: &RemoteLmOptions) -> Result<Self> {
        let url = opts.url.trim().trim_end_matches('/');
        let url = url.strip_suffix("/v1").unwrap_or(url);
        if url.starts_with("https://") {
            return Err(remote(format!(
                "{url}: https is not supported by this build; reach the server over plain http \
                 (e.g. an SSH tunnel: ssh -L 8080:localhost:8080 gpu-box)"
            )));
        }
        if !url.starts_with("http://") {
            return Err(remote(format!(
                "{url:?} is not an http:// URL (e.g. http://127.0.0.1:8080)"
            )));
        }
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| remote(format!("cannot create the HTTP client: {e}")))?;
        Ok(Client {
            http,
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
            Some(b) => self.http.post(url).json(b),
            None => self.http.get(url),
        };
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().map_err(classify)?;
        let status = resp.status();
        let text = resp
            .text()
            .map_err(|e| Attempt::Fail(format!("the answer broke off: {e}")))?;
        if status.as_u16() == 503 {
            return Err(Attempt::Retry(format!(
                "server busy or loading (503): {text}"
            )));
        }
        if !status.is_success() {
            let detail: String = text.chars().take(400).collect();
            return Err(Attempt::Fail(format!("HTTP {status}: {detail}")));
        }
        serde_json::from_str(&text)
            .map_err(|e| Attempt::Fail(format!("the answer is not JSON ({e})")))
    }
}

/// How one attempt failed.
enum Attempt {
    /// Worth another try (no connection, server loading).
    Retry(String),
    /// Final.
    Fail(String),
}

fn classify(e: reqwest::Error) -> Attempt {
    if e.is_connect() {
        Attempt::Retry(format!("cannot connect ({})", chain(&e)))
    } else if e.is_timeout() {
        Attempt::Fail(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()))
    } else if e.is_request() {
        // The connection broke before an answer came (server killed or restarted); every
        // request is stateless, so sending it again is safe.
        Attempt::Retry(format!("the connection broke ({})", chain(&e)))
    } else {
        Attempt::Fail(format!("the request failed: {}", chain(&e)))
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
