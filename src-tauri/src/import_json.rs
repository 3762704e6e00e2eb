//! Import of a conversation exported as JSON (`export_conversation` with `json`): the file is
//! parsed and checked whole before anything is written; its media files (named relative to
//! the media folder) are copied to fresh names so the copy and the original never share a
//! file; the conversation and its messages go in one transaction. Any problem is one error
//! and leaves the history as it was.

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::MediaDir;
use crate::ipc::{ConversationSummary, ConversationView, MessageStatus, Segment};
use crate::store::{media_files, Store};

fn invalid(msg: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidInput, msg)
}

/// Parses and checks an exported conversation.
pub fn parse(bytes: &[u8]) -> AppResult<ConversationView> {
    let view: ConversationView = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("this is not a MIO conversation export (JSON): {e}")))?;
    if view.messages.is_empty() {
        return Err(invalid("the exported conversation has no messages"));
    }
    for m in &view.messages {
        for seg in &m.segments {
            if let Segment::Text { text } | Segment::Step { text, .. } = seg {
                if text.len() > 1 << 24 {
                    return Err(invalid("a message of the export is implausibly long"));
                }
            }
        }
    }
    Ok(view)
}

/// The text the model sees for a message rebuilt from its segments (exports do not carry
/// the media blocks' tokens; the pictures and speech stay visible, the next turn's prompt
/// sees their text only).
fn model_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .filter_map(|s| match s {
            Segment::Text { text } | Segment::Step { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn rename_files(segments: &mut [Segment], map: &std::collections::HashMap<String, String>) {
    for s in segments {
        let files: Vec<&mut String> = match s {
            Segment::Image { file, .. } | Segment::Audio { file, .. } => vec![file],
            Segment::Step { file, .. } => file.iter_mut().collect(),
            Segment::Video { file, frames, .. } => {
                std::iter::once(file).chain(frames.iter_mut()).collect()
            }
            Segment::Text { .. } => vec![],
        };
        for f in files {
            if let Some(new) = map.get(f.as_str()) {
                *f = new.clone();
            }
        }
    }
}

/// Imports an exported conversation; returns its new list entry.
pub fn import(store: &mut Store, media: &MediaDir, bytes: &[u8]) -> AppResult<ConversationSummary> {
    let mut view = parse(bytes)?;
    let mut files: Vec<String> = view
        .messages
        .iter()
        .flat_map(|m| media_files(&m.segments))
        .collect();
    files.sort();
    files.dedup();
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !media.resolve(f).is_ok_and(|p| p.is_file()))
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "the export refers to media not in this app's media folder: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut map = std::collections::HashMap::new();
    let mut copied = vec![];
    for f in &files {
        let ext = f.rsplit_once('.').map_or("bin", |(_, e)| e);
        let new = media.fresh_name("imported", ext);
        let result = media
            .resolve(f)
            .and_then(|p| std::fs::read(p).map_err(AppError::from))
            .and_then(|b| media.write(&new, &b));
        if let Err(e) = result {
            remove(media, &copied);
            return Err(e);
        }
        copied.push(new.clone());
        map.insert(f.clone(), new);
    }
    let messages: Vec<_> = view
        .messages
        .iter_mut()
        .map(|m| {
            rename_files(&mut m.segments, &map);
            if m.status == MessageStatus::Streaming {
                m.status = MessageStatus::Interrupted;
            }
            let text = model_text(&m.segments);
            (m.clone(), text)
        })
        .collect();
    match store.import_conversation(&view.summary.title, &messages) {
        Ok(id) => store.conversation(id).map(|v| v.summary),
        Err(e) => {
            remove(media, &copied);
            Err(e)
        }
    }
}

fn remove(media: &MediaDir, files: &[String]) {
    for f in files {
        if let Ok(p) = media.resolve(f) {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
#[path = "import_json_tests.rs"]
mod tests;
