//! The Hugging Face Hub's HTTP API, the two calls a download needs: the file list of a repo
//! revision (`GET /api/models/{repo}/tree/{rev}?recursive=true`, paginated by `Link` headers)
//! and a file's bytes (`GET /{repo}/resolve/{rev}/{path}`, with `Range` to resume; the hub
//! redirects large files to its CDN, and the token is not sent along a redirect).
//! The endpoint is `$HF_ENDPOINT` (mirrors, tests) or `https://huggingface.co`; the token
//! `$HF_TOKEN` for gated or private repos.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One file of a repo revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    /// Path inside the repo (`/`-separated).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The git blob id (sha1 of `blob <size>\0<bytes>`): what a small file is checked against.
    pub git_oid: String,
    /// The LFS sha256 (lower-case hex) of a large file: what it is checked against.
    pub sha256: Option<String>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    oid: String,
}

/// A client of one hub endpoint.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A failed request: the status when the server answered, for the caller's wording.
#[derive(Debug)]
pub(crate) enum Fetch {
    /// The server answered with this status.
    Status(u16),
    /// No answer (connection refused, reset, timeout): worth a retry.
    Transport(String),
}

impl HubClient {
    /// A client of `endpoint` (default: `$HF_ENDPOINT`, else `https://huggingface.co`) with
    /// `token` (default: `$HF_TOKEN`).
    pub fn new(endpoint: Option<String>, token: Option<String>) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = endpoint
            .or_else(|| env("HF_ENDPOINT"))
            .unwrap_or_else(|| "https://huggingface.co".into());
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(15))
            .timeout_read(Duration::from_secs(60))
            .build();
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.or_else(|| env("HF_TOKEN")),
            agent,
        }
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every file of `repo` at `revision`.
    pub fn list(&self, repo: &str, revision: &str) -> Result<Vec<RepoFile>> {
        let mut url = Some(format!(
            "{}/api/models/{repo}/tree/{}?recursive=true",
            self.endpoint,
            encode_path(revision)
        ));
        let mut files = vec![];
        while let Some(u) = url.take() {
            let resp = self
                .get(&u, None)
                .map_err(|e| self.explain(e, repo, "the file list"))?;
            url = next_link(resp.header("link"));
            let entries: Vec<TreeEntry> =
                serde_json::from_reader(resp.into_reader().take(64 << 20)).with_context(|| {
                    format!("{} did not answer with a file list", self.endpoint)
                })?;
            files.extend(
                entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| RepoFile {
                        path: e.path,
                        size: e.size,
                        git_oid: e.oid,
                        sha256: e.lfs.map(|l| l.oid.to_ascii_lowercase()),
                    }),
            );
        }
        if files.is_empty() {
            bail!("{repo} at {revision} has no files");
        }
        Ok(files)
    }

    /// Opens `path` of `repo` at `revision`, from byte `from` on.
    pub(crate) fn open(
        &self,
        repo: &str,
        revision: &str,
        path: &str,
        from: u64,
    ) -> std::result::Result<ureq::Response, Fetch> {
        let url = format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            encode_path(revision),
            encode_path(path)
        );
        self.get(&url, (from > 0).then_some(from))
    }

    fn get(&self, url: &str, from: Option<u64>) -> std::result::Result<ureq::Response, Fetch> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if let Some(from) = from {
            req = req.set("Range", &format!("bytes={from}-"));
        }
        match req.call() {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, _)) => Err(Fetch::Status(code)),
            Err(ureq::Error::Transport(t)) => Err(Fetch::Transport(t.to_string())),
        }
    }

    /// One sentence for a failed request about `what` of `repo`.
    pub(crate) fn explain(&self, e: Fetch, repo: &str, what: &str) -> anyhow::Error {
        match e {
            Fetch::Status(401 | 403) => anyhow::anyhow!(
                "{} refused {what} of {repo}: the repo is gated or private; accept its terms on the hub and set HF_TOKEN",
                self.endpoint
            ),
            Fetch::Status(404) => anyhow::anyhow!("{repo}: {what} not found on {}", self.endpoint),
            Fetch::Status(code) => {
                anyhow::anyhow!("{} answered {code} for {what} of {repo}", self.endpoint)
            }
            Fetch::Transport(t) => anyhow::anyhow!("cannot reach {}: {t}", self.endpoint),
        }
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(link: Option<&str>) -> Option<String> {
    link?.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Percent-encodes a path, keeping `/` and the unreserved characters.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_and_paths() {
        let h = r#"<https://hf.co/api/models/a/b/tree/main?cursor=xyz>; rel="next""#;
        assert_eq!(
            next_link(Some(h)).as_deref(),
            Some("https://hf.co/api/models/a/b/tree/main?cursor=xyz")
        );
        assert_eq!(next_link(Some(r#"<u>; rel="prev""#)), None);
        assert_eq!(next_link(None), None);
        assert_eq!(encode_path("a b/c+d.bin"), "a%20b/c%2Bd.bin");
    }
}
