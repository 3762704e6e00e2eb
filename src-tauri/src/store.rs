//! Conversation history: SQLite (WAL) in the app data folder, media as files beside it.
//!
//! An assistant message is stored as `streaming` before generation starts and rewritten as
//! its segments arrive, each write one transaction; the final status (`done`, `cancelled`,
//! `failed`) is set at the end. A crash leaves `streaming` rows, which the next open marks
//! `interrupted`: the conversation stays consistent and keeps what was produced.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{AppError, AppResult, ErrorCode};
use crate::ipc::{
    ConversationSummary, ConversationView, MessageStatus, MessageView, Mode, Role, Segment,
};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A stored message with the text the model saw or wrote (for the next turn's prompt).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// What the UI shows.
    pub view: MessageView,
    /// The user's text, or the assistant's answer with its media blocks as tokens.
    pub model_text: String,
}

/// The history database.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    segments TEXT NOT NULL,
    model_text TEXT NOT NULL,
    error TEXT,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
";

fn enum_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn to_json(segments: &[Segment]) -> AppResult<String> {
    serde_json::to_string(segments).map_err(|e| {
        AppError::new(
            ErrorCode::Internal,
            format!("cannot serialise segments: {e}"),
        )
    })
}

impl Store {
    /// Opens (creating) the database at `path`; marks turns left streaming by a crash as
    /// interrupted.
    pub fn open(path: &Path) -> AppResult<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'",
            [],
        )?;
        Ok(Self { conn })
    }

    /// A new conversation titled from `first_text`.
    pub fn create_conversation(&self, first_text: &str) -> AppResult<i64> {
        let title = title_of(first_text);
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO conversations (title, created_ms, updated_ms) VALUES (?1, ?2, ?2)",
            params![title, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Appends a message.
    pub fn add_message(
        &mut self,
        conversation: i64,
        role: Role,
        mode: Mode,
        status: MessageStatus,
        segments: &[Segment],
        model_text: &str,
    ) -> AppResult<MessageView> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE conversations SET updated_ms = ?2 WHERE id = ?1",
            params![conversation, now],
        )?;
        if n == 0 {
            return Err(AppError::new(ErrorCode::NotFound, "no such conversation"));
        }
        tx.execute(
            "INSERT INTO messages (conversation_id, role, mode, status, segments, model_text, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![conversation, enum_str(&role), enum_str(&mode), enum_str(&status), to_json(segments)?, model_text, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(MessageView {
            id,
            role,
            mode,
            status,
            segments: segments.to_vec(),
            error: None,
            created_ms: now,
        })
    }

    /// Rewrites a message's segments, status, model text and error (one transaction).
    pub fn update_message(
        &self,
        id: i64,
        status: MessageStatus,
        segments: &[Segment],
        model_text: &str,
        error: Option<&str>,
    ) -> AppResult<()> {
        let n = self.conn.execute(
            "UPDATE messages SET status = ?2, segments = ?3, model_text = ?4, error = ?5 WHERE id = ?1",
            params![id, enum_str(&status), to_json(segments)?, model_text, error],
        )?;
        if n == 0 {
            return Err(AppError::new(ErrorCode::NotFound, "no such message"));
        }
        Ok(())
    }

    /// One message.
    pub fn message(&self, id: i64) -> AppResult<StoredMessage> {
        Ok(self.conn.query_row(
            "SELECT id, role, mode, status, segments, error, created_ms, model_text FROM messages WHERE id = ?1",
            params![id],
            row_to_message,
        )?)
    }

    /// Messages of a conversation, oldest first.
    pub fn messages(&self, conversation: i64) -> AppResult<Vec<StoredMessage>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, role, mode, status, segments, error, created_ms, model_text FROM messages
             WHERE conversation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![conversation], row_to_message)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a message (a regenerated answer).
    pub fn delete_message(&self, id: i64) -> AppResult<Vec<String>> {
        let files = self.message(id).map(|m| media_files(&m.view.segments))?;
        self.conn
            .execute("DELETE FROM messages WHERE id = ?1", params![id])?;
        Ok(files)
    }

    /// Conversations, most recent first.
    pub fn list(&self) -> AppResult<Vec<ConversationSummary>> {
        self.summaries("", &[])
    }

    /// Conversations whose title or messages contain `query` (case-insensitive).
    pub fn search(&self, query: &str) -> AppResult<Vec<ConversationSummary>> {
        let pattern = format!(
            "%{}%",
            query
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.summaries(
            "WHERE c.title LIKE ?1 ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m2
               WHERE m2.conversation_id = c.id AND m2.model_text LIKE ?1 ESCAPE '\\')",
            &[&pattern],
        )
    }

    fn summaries(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> AppResult<Vec<ConversationSummary>> {
        let sql = format!(
            "SELECT c.id, c.title, c.updated_ms,
                (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
             FROM conversations c {filter} ORDER BY c.updated_ms DESC, c.id DESC"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(ConversationSummary {
                id: r.get(0)?,
                title: r.get(1)?,
                updated_ms: r.get(2)?,
                messages: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A conversation with its messages.
    pub fn conversation(&self, id: i64) -> AppResult<ConversationView> {
        let summary = self
            .conn
            .query_row(
                "SELECT c.id, c.title, c.updated_ms,
                    (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id)
                 FROM conversations c WHERE c.id = ?1",
                params![id],
                |r| {
                    Ok(ConversationSummary {
                        id: r.get(0)?,
                        title: r.get(1)?,
                        updated_ms: r.get(2)?,
                        messages: r.get(3)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| AppError::new(ErrorCode::NotFound, "no such conversation"))?;
        let messages = self.messages(id)?.into_iter().map(|m| m.view).collect();
        Ok(ConversationView { summary, messages })
    }

    /// A new conversation titled `title` holding `messages` (view, model text) in order,
    /// in one transaction (an imported export).
    pub fn import_conversation(
        &mut self,
        title: &str,
        messages: &[(MessageView, String)],
    ) -> AppResult<i64> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO conversations (title, created_ms, updated_ms) VALUES (?1, ?2, ?2)",
            params![title_of(title), now],
        )?;
        let id = tx.last_insert_rowid();
        for (m, model_text) in messages {
            tx.execute(
                "INSERT INTO messages (conversation_id, role, mode, status, segments, model_text, error, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, enum_str(&m.role), enum_str(&m.mode), enum_str(&m.status),
                        to_json(&m.segments)?, model_text, m.error, m.created_ms],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Deletes a conversation; returns the media files it referenced (the caller removes
    /// them once the delete is committed).
    pub fn delete_conversation(&self, id: i64) -> AppResult<Vec<String>> {
        let files = self
            .messages(id)?
            .iter()
            .flat_map(|m| media_files(&m.view.segments))
            .collect();
        let n = self
            .conn
            .execute("DELETE FROM conversations WHERE id = ?1", params![id])?;
        if n == 0 {
            return Err(AppError::new(ErrorCode::NotFound, "no such conversation"));
        }
        Ok(files)
    }
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let segments: String = r.get(4)?;
    let segments = serde_json::from_str(&segments).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(StoredMessage {
        view: MessageView {
            id: r.get(0)?,
            role: parse_enum(&r.get::<_, String>(1)?)?,
            mode: parse_enum(&r.get::<_, String>(2)?)?,
            status: parse_enum(&r.get::<_, String>(3)?)?,
            segments,
            error: r.get(5)?,
            created_ms: r.get(6)?,
        },
        model_text: r.get(7)?,
    })
}

/// Media files named by `segments`.
pub fn media_files(segments: &[Segment]) -> Vec<String> {
    segments
        .iter()
        .flat_map(|s| match s {
            Segment::Image { file, .. } | Segment::Audio { file, .. } => vec![file.clone()],
            Segment::Step { file, .. } => file.iter().cloned().collect(),
            Segment::Video { file, frames, .. } => std::iter::once(file.clone())
                .chain(frames.iter().cloned())
                .collect(),
            Segment::Text { .. } => vec![],
        })
        .collect()
}

/// A title: the first line of `text`, at most 48 characters.
pub fn title_of(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut title: String = line.chars().take(48).collect();
    if line.chars().count() > 48 {
        title.push('…');
    }
    if title.is_empty() {
        "New conversation".to_string()
    } else {
        title
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
