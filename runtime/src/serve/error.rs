//! OpenAI-style error objects, `{"error": {"message", "type", "param", "code"}}`, with the
//! matching HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// An error answer of the API.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// One sentence for the user.
    pub message: String,
    /// OpenAI's `type`.
    pub kind: &'static str,
    /// OpenAI's `code`.
    pub code: Option<&'static str>,
    /// The request field at fault.
    pub param: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
        }
    }

    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// Sets `code`.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets `param`.
    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// 401: missing or wrong API key.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or incorrect API key (send `Authorization: Bearer <key>`)",
        )
        .code("invalid_api_key")
    }

    /// 429: the queue in front of the model is full.
    pub fn queue_full(waiting: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "the server is busy ({waiting} requests already wait for the model); retry later"
            ),
        )
        .code("rate_limit_exceeded")
    }

    /// 413: the body is over `--max-body-mb`.
    pub fn too_large(limit_mb: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body is larger than {limit_mb} MB (--max-body-mb)"),
        )
        .code("request_too_large")
    }

    /// 404: no such endpoint.
    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("no endpoint {path}; see GET /v1/models, POST /v1/chat/completions, /v1/audio/transcriptions, /v1/audio/speech"),
        )
        .code("unknown_url")
    }

    /// 404: no such model.
    pub fn model_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model {id} does not exist (this server has one, see GET /v1/models)"),
        )
        .param("model")
        .code("model_not_found")
    }

    /// 500: the engine failed.
    pub fn engine(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON error object.
    pub fn body(&self) -> Value {
        json!({ "error": {
            "message": self.message, "type": self.kind, "param": self.param, "code": self.code,
        }})
    }

    /// Maps a body-reading failure (too large, unreadable) onto the API's errors.
    pub fn from_body(status: StatusCode, text: String, limit_mb: usize) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large(limit_mb)
        } else {
            Self::new(status, "invalid_request_error", text)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
