//! Export of a conversation: Markdown (media copied beside it), one self-contained HTML file
//! (media inlined as data URLs) or JSON (the stored messages).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::{mime_of, MediaDir};
use crate::ipc::{ConversationView, ExportFormat, Role, Segment};

/// Writes the export of `view` into `out_dir`; returns the file.
pub fn write(
    view: &ConversationView,
    media: &MediaDir,
    out_dir: &Path,
    format: ExportFormat,
) -> AppResult<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let stem = format!("conversation-{}", view.summary.id);
    let (ext, body) = match format {
        ExportFormat::Markdown => {
            let folder = out_dir.join(format!("{stem}-media"));
            std::fs::create_dir_all(&folder)?;
            for f in crate::store::media_files(
                &view
                    .messages
                    .iter()
                    .flat_map(|m| m.segments.clone())
                    .collect::<Vec<_>>(),
            ) {
                std::fs::copy(media.resolve(&f)?, folder.join(&f))?;
            }
            ("md", markdown(view, &format!("{stem}-media/")))
        }
        ExportFormat::Html => ("html", html(view, media)?),
        ExportFormat::Json => (
            "json",
            serde_json::to_string_pretty(view)
                .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))?,
        ),
    };
    let path = out_dir.join(format!("{stem}.{ext}"));
    let tmp = out_dir.join(format!(".{stem}.{ext}.partial"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn who(role: Role) -> &'static str {
    match role {
        Role::User => "You",
        Role::Assistant => "MIO",
    }
}

/// The conversation as Markdown; media links are `prefix` + file name.
pub fn markdown(view: &ConversationView, prefix: &str) -> String {
    let mut out = format!("# {}\n\n", view.summary.title);
    for m in &view.messages {
        let _ = writeln!(out, "**{}** ({:?}, {:?}):\n", who(m.role), m.mode, m.status);
        for s in &m.segments {
            match s {
                Segment::Text { text } => {
                    let _ = writeln!(out, "{text}\n");
                }
                Segment::Image { file, .. } => {
                    let _ = writeln!(out, "![image]({prefix}{file})\n");
                }
                Segment::Audio { file, duration_s } => {
                    let _ = writeln!(out, "[audio, {duration_s:.1} s]({prefix}{file})\n");
                }
                Segment::Video { file, frames, .. } => {
                    let _ = writeln!(out, "[video]({prefix}{file}), keyframes:\n");
                    for f in frames {
                        let _ = writeln!(out, "![keyframe]({prefix}{f})");
                    }
                    out.push('\n');
                }
                Segment::Step {
                    index, text, file, ..
                } => {
                    let _ = writeln!(out, "{}. {text}\n", index + 1);
                    if let Some(file) = file {
                        let _ = writeln!(out, "   ![step {}]({prefix}{file})\n", index + 1);
                    }
                }
            }
        }
    }
    out
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn data_url(media: &MediaDir, file: &str) -> AppResult<String> {
    let bytes = std::fs::read(media.resolve(file)?)?;
    Ok(format!(
        "data:{};base64,{}",
        mime_of(file),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// The conversation as one self-contained HTML page.
pub fn html(view: &ConversationView, media: &MediaDir) -> AppResult<String> {
    let title = escape(&view.summary.title);
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font:15px system-ui;max-width:760px;margin:2em auto;color:#222}}\
         .m{{margin:1em 0;padding:.6em 1em;border-radius:10px;background:#f3f3f6}}\
         .user{{background:#e6ecff}}img{{max-width:100%}}pre{{white-space:pre-wrap}}</style></head>\
         <body><h1>{title}</h1>"
    );
    for m in &view.messages {
        let class = if m.role == Role::User { "m user" } else { "m" };
        let _ = write!(out, "<div class=\"{class}\"><b>{}</b>", who(m.role));
        for s in &m.segments {
            match s {
                Segment::Text { text } => {
                    let _ = write!(out, "<pre>{}</pre>", escape(text));
                }
                Segment::Image { file, .. } => {
                    let _ = write!(
                        out,
                        "<img alt=\"image\" src=\"{}\">",
                        data_url(media, file)?
                    );
                }
                Segment::Audio { file, .. } => {
                    let _ = write!(
                        out,
                        "<audio controls src=\"{}\"></audio>",
                        data_url(media, file)?
                    );
                }
                Segment::Video { frames, .. } => {
                    out.push_str("<div>");
                    for f in frames {
                        let _ = write!(
                            out,
                            "<img alt=\"keyframe\" style=\"width:120px\" src=\"{}\">",
                            data_url(media, f)?
                        );
                    }
                    out.push_str("</div>");
                }
                Segment::Step {
                    index, text, file, ..
                } => {
                    let _ = write!(
                        out,
                        "<h3>Step {}</h3><pre>{}</pre>",
                        index + 1,
                        escape(text)
                    );
                    if let Some(file) = file {
                        let _ = write!(
                            out,
                            "<img alt=\"step {}\" src=\"{}\">",
                            index + 1,
                            data_url(media, file)?
                        );
                    }
                }
            }
        }
        out.push_str("</div>");
    }
    out.push_str("</body></html>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ipc::{ConversationSummary, MessageStatus, MessageView, Mode};

    fn sample(media: &MediaDir) -> ConversationView {
        let img = media.write_png("x", 1, 1, &[1, 2, 3]).unwrap();
        let msg = |role, segments| MessageView {
            id: 1,
            role,
            mode: Mode::Chat,
            status: MessageStatus::Done,
            segments,
            error: None,
            created_ms: 0,
        };
        ConversationView {
            summary: ConversationSummary {
                id: 7,
                title: "A <b> test".into(),
                updated_ms: 0,
                messages: 2,
            },
            messages: vec![
                msg(
                    Role::User,
                    vec![Segment::Text {
                        text: "draw <it>".into(),
                    }],
                ),
                msg(Role::Assistant, vec![img]),
            ],
        }
    }

    #[test]
    fn exports_in_three_formats() {
        let tmp = tempfile::tempdir().unwrap();
        let media = MediaDir::open(tmp.path().join("media")).unwrap();
        let view = sample(&media);
        let out = tmp.path().join("exports");
        let md = write(&view, &media, &out, ExportFormat::Markdown).unwrap();
        let text = std::fs::read_to_string(&md).unwrap();
        assert!(text.starts_with("# A <b> test"));
        assert!(text.contains("![image](conversation-7-media/x-"));
        assert_eq!(
            std::fs::read_dir(out.join("conversation-7-media"))
                .unwrap()
                .count(),
            1
        );
        let html = std::fs::read_to_string(write(&view, &media, &out, ExportFormat::Html).unwrap())
            .unwrap();
        assert!(html.contains("draw &lt;it&gt;"));
        assert!(html.contains("src=\"data:image/png;base64,"));
        assert!(!html.contains("<it>"));
        let json = std::fs::read_to_string(write(&view, &media, &out, ExportFormat::Json).unwrap())
            .unwrap();
        let back: ConversationView = serde_json::from_str(&json).unwrap();
        assert_eq!(back, view);
    }
}
