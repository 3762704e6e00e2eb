//! The error the UI sees: `{code, message}` with a SCREAMING_SNAKE code it can act on and
//! one clear sentence.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// What went wrong, for the UI to choose its advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No model is loaded yet.
    NoModel,
    /// The model folder could not be loaded.
    ModelLoad,
    /// The engine failed during a turn.
    Engine,
    /// The input was refused (empty message, unsupported or corrupt file).
    InvalidInput,
    /// The conversation or message does not exist.
    NotFound,
    /// The history database or media folder failed (disk full, permissions).
    Storage,
    /// A microphone or camera is missing or failed.
    Device,
    /// Importing a release folder failed or was cancelled.
    Import,
    /// Anything else.
    Internal,
}

/// An error at the IPC edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// What kind.
    pub code: ErrorCode,
    /// One sentence for people.
    pub message: String,
}

impl AppError {
    /// An error of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An error of `code` from any error chain, as one sentence.
    pub fn from_chain(code: ErrorCode, e: &anyhow::Error) -> Self {
        Self::new(code, mio_runtime::commands::one_sentence(e))
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => {
                Self::new(ErrorCode::NotFound, "no such conversation or message")
            }
            other => Self::new(ErrorCode::Storage, format!("history database: {other}")),
        }
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        Self::new(ErrorCode::Storage, format!("cannot write a file: {e}"))
    }
}

/// Results at the IPC edge.
pub type AppResult<T> = std::result::Result<T, AppError>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serialises_as_code_and_message() {
        let e = AppError::new(ErrorCode::NoModel, "load a model first");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"code":"NO_MODEL","message":"load a model first"}"#
        );
    }
}
