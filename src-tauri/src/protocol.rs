//! The `media:` protocol: serves files of the media folder (and nothing else) to the UI,
//! with byte ranges for audio seeking.

use tauri::http::{header, Response, StatusCode};

use crate::commands::percent_decode;
use crate::files::{mime_of, MediaDir};

/// The response to a GET of `path` (the URL path, `/NAME`) with an optional `Range` header.
pub fn respond(media: &MediaDir, path: &str, range: Option<&str>) -> Response<Vec<u8>> {
    let name = percent_decode(path.trim_start_matches('/'));
    let bytes = match media.resolve(&name).and_then(|p| Ok(std::fs::read(p)?)) {
        Ok(b) => b,
        Err(_) => return status(StatusCode::NOT_FOUND),
    };
    let builder = Response::builder()
        .header(header::CONTENT_TYPE, mime_of(&name))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "no-store")
        // The page fetches audio into a blob (WebKitGTK's media player cannot read custom
        // schemes), and a fetch from the app's origin to `media:` is cross-origin.
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    let len = bytes.len();
    let Some((start, end)) = range.and_then(|r| parse_range(r, len)) else {
        return builder
            .status(StatusCode::OK)
            .body(bytes)
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR));
    };
    builder
        .status(StatusCode::PARTIAL_CONTENT)
        .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"))
        .body(bytes[start..=end].to_vec())
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

fn status(code: StatusCode) -> Response<Vec<u8>> {
    let mut r = Response::new(Vec::new());
    *r.status_mut() = code;
    r
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `len` bytes, inclusive.
pub fn parse_range(header: &str, len: usize) -> Option<(usize, usize)> {
    let spec = header.strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    let last = len.checked_sub(1)?;
    let (start, end) = match (a.parse::<usize>().ok(), b.parse::<usize>().ok()) {
        (Some(s), Some(e)) => (s, e.min(last)),
        (Some(s), None) => (s, last),
        (None, Some(n)) => (len.saturating_sub(n), last),
        (None, None) => return None,
    };
    (start <= end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serves_only_media_files_with_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("secret.txt"), b"no").unwrap();
        let media = MediaDir::open(tmp.path().join("media")).unwrap();
        media.write("a.wav", b"0123456789").unwrap();
        let r = respond(&media, "/a.wav", None);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "audio/wav");
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let r = respond(&media, "/a.wav", Some("bytes=2-4"));
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body(), b"234");
        assert_eq!(
            respond(&media, "/..%2Fsecret.txt", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&media, "/../secret.txt", None).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&media, "/missing.png", None).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some((0, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=12-", 10), None);
        assert_eq!(parse_range("items=1-2", 10), None);
    }
}
