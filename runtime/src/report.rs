//! The self-contained HTML report of a replay: every input (images and audio embedded as
//! data URLs), every output segment in order, timings and expectation results. No external
//! resources, so the file can be mailed or attached to a bug.

use std::fmt::Write;
use std::path::Path;

use base64::Engine as _;
use mio_models::engine::OutputSegment;

use crate::replay::{Transcript, TurnRecord};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn data_url(path: &Path) -> Option<String> {
    let mime = match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        _ => return None,
    };
    let bytes = std::fs::read(path).ok()?;
    Some(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}\
.turn{border:1px solid #ddd;border-radius:10px;padding:1rem;margin:1rem 0}.user{background:#eef4ff;padding:.5rem .8rem;border-radius:8px;white-space:pre-wrap}\
.answer{white-space:pre-wrap;padding:.5rem .8rem}.codes{font:12px monospace;color:#555;background:#f6f6f6;padding:.4rem;border-radius:6px;word-break:break-all}\
.pass{color:#0a7d28}.fail{color:#c01818;font-weight:600}.meta{color:#666;font-size:13px}img.in{max-width:14rem;border-radius:6px}.strip{display:flex;gap:6px;overflow-x:auto;flex-wrap:wrap;align-items:flex-end}.strip p{flex-basis:100%;margin:4px 0}.strip figure{margin:0}.strip img{height:6rem;border-radius:4px}.strip figcaption{font-size:11px;color:#666;text-align:center}";

/// Renders the report.
pub fn html(t: &Transcript, base: &Path, out: &Path) -> String {
    let mut s = String::new();
    let verdict = if t.failed == 0 {
        "<span class=pass>all expectations hold</span>".to_string()
    } else {
        format!("<span class=fail>{} expectation(s) failed</span>", t.failed)
    };
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=utf-8><title>MIO replay: {name}</title><style>{STYLE}</style></head><body>\
         <h1>MIO replay: {name}</h1><p>{desc}</p><p class=meta>model {model} · mode {mode:?} · load {load:.2} s · {verdict}</p>",
        name = esc(&t.name),
        desc = esc(&t.description),
        model = esc(&t.model.display().to_string()),
        mode = t.mode,
        load = t.load_s,
    );
    for (i, turn) in t.turns.iter().enumerate() {
        turn_html(&mut s, i, turn, base, out);
    }
    s.push_str("</body></html>\n");
    s
}

/// A video input as the strip of keyframes the model saw, with why they were chosen.
fn video_strip(s: &mut String, v: &serde_json::Value) {
    let name = v["video"].as_str().unwrap_or("video");
    let frames = v["frames"].as_array().map_or(&[][..], |f| f.as_slice());
    let _ = write!(
        s,
        "<div class=strip><p class=meta>{} · {} keyframe(s) of {} ({})</p>",
        esc(name),
        frames.len(),
        v["total_frames"],
        esc(v["selection"].as_str().unwrap_or("?"))
    );
    for f in frames {
        let url = f["file"].as_str().and_then(|p| data_url(Path::new(p)));
        let time = f["time_s"].as_f64().unwrap_or(0.0);
        match url {
            Some(url) => {
                let _ = write!(
                    s,
                    "<figure><img src='{url}' alt='frame {}'><figcaption>{time:.1} s</figcaption></figure>",
                    f["index"]
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<figure><figcaption>frame {} ({time:.1} s)</figcaption></figure>",
                    f["index"]
                );
            }
        }
    }
    s.push_str("</div>");
}

fn turn_html(s: &mut String, i: usize, turn: &TurnRecord, base: &Path, out: &Path) {
    let _ = write!(
        s,
        "<div class=turn><h2>Turn {}</h2><div class=user>{}</div>",
        i + 1,
        esc(&turn.user)
    );
    for p in &turn.images {
        match data_url(&base.join(p)) {
            Some(url) => {
                let _ = write!(
                    s,
                    "<img class=in alt='{}' src='{url}'>",
                    esc(&p.display().to_string())
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<p class=meta>image {} (not embeddable)</p>",
                    esc(&p.display().to_string())
                );
            }
        }
    }
    for v in &turn.videos {
        video_strip(s, v);
    }
    for p in &turn.audio {
        if let Some(url) = data_url(&base.join(p)) {
            let _ = write!(s, "<audio controls src='{url}'></audio>");
        }
    }
    s.push_str("<div class=answer>");
    let mut files = turn.files.iter();
    for seg in &turn.segments {
        match seg {
            OutputSegment::Text { text } => s.push_str(&esc(text)),
            OutputSegment::Image { codes, .. } => {
                if let Some(url) = files.next().and_then(|f| data_url(&out.join(f))) {
                    let _ = write!(s, "<img class=in src='{url}'>");
                }
                let _ = write!(s, "<div class=codes>image block, 32 codes: {codes:?}</div>");
            }
            OutputSegment::Speech {
                content, timbre, ..
            } => {
                let layers = if timbre.is_some() { 4 } else { 1 };
                if let Some(url) = files.next().and_then(|f| data_url(&out.join(f))) {
                    let _ = write!(s, "<audio controls src='{url}'></audio>");
                }
                let _ = write!(s, "<div class=codes>speech block, {} frames × {layers} layer(s): {content:?}</div>", content.len());
            }
        }
    }
    s.push_str("</div>");
    let tm = &turn.timings;
    let _ = write!(
        s,
        "<p class=meta>{:?} · {} prompt tokens · {} new tokens · prefill {:.3} s · decode {:.3} s</p>",
        turn.finish_reason, tm.prompt_tokens, tm.new_tokens, tm.prefill_s, tm.decode_s
    );
    for w in &turn.warnings {
        let _ = write!(s, "<p class=fail>warning: {}</p>", esc(w));
    }
    s.push_str("<ul>");
    for c in &turn.checks {
        let (class, mark) = if c.passed {
            ("pass", "✓")
        } else {
            ("fail", "✗")
        };
        let _ = write!(s, "<li class={class}>{mark} {}", esc(&c.what));
        if !c.passed {
            let _ = write!(s, " — found: {}", esc(&c.found));
        }
        s.push_str("</li>");
    }
    s.push_str("</ul></div>");
}
