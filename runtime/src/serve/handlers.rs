//! The endpoints: `GET /v1/models`, `POST /v1/chat/completions` (JSON or SSE stream),
//! `POST /v1/audio/transcriptions` (multipart file to text) and `POST /v1/audio/speech`
//! (JSON text to WAV).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use futures_util::Stream;
use mio_models::engine::{Event, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{self, ChatRequest};
use super::error::ApiError;
use super::queue::{Message, Running};
use super::server::AppState;
use crate::worker::RunMessage;

type St = State<Arc<AppState>>;

/// Ids and timestamps of one completion.
struct Meta {
    include_usage: bool,
    id: String,
    created: u64,
    model: String,
}

impl Meta {
    fn new(state: &AppState, running: &Running, include_usage: bool) -> Self {
        Self {
            include_usage,
            id: format!("chatcmpl-{}", running.id),
            created: now(),
            model: state.model_id.clone(),
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn model_object(state: &AppState) -> Value {
    json!({ "id": state.model_id, "object": "model", "created": state.created, "owned_by": "mio" })
}

/// `GET /v1/models`.
pub async fn models(State(state): St) -> Json<Value> {
    Json(json!({ "object": "list", "data": [model_object(&state)] }))
}

/// `GET /v1/models/{id}`.
pub async fn model(State(state): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if id != state.model_id {
        return Err(ApiError::model_not_found(&id));
    }
    Ok(Json(model_object(&state)))
}

/// Any other path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

fn body_json<T: for<'de> Deserialize<'de>>(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body =
        body.map_err(|e| ApiError::from_body(e.status(), e.body_text(), state.max_body_mb))?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(state): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<HttpResponse, ApiError> {
    let req: ChatRequest = body_json(&state, body)?;
    let stream = req.stream;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let mut request = api::chat_request(req)?;
    state.cap_tokens(&mut request);
    let running = state.queue.submit(request)?;
    let meta = Meta::new(&state, &running, include_usage);
    if stream {
        return Ok(Sse::new(sse(meta, running))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(1)))
            .into_response());
    }
    let Response::Chat {
        segments,
        prompt_ids,
        new_ids,
        finish_reason,
        ..
    } = running.finish().await?
    else {
        return Err(ApiError::engine("unexpected engine answer"));
    };
    let out = api::outputs(&segments)?;
    let content = if out.text.is_empty() && (out.wav.is_some() || !out.images.is_empty()) {
        Value::Null
    } else {
        json!(out.text)
    };
    let mut message = json!({ "role": "assistant", "content": content });
    api::add_media(&mut message, &out, &meta.id, meta.created);
    Ok(Json(json!({
        "id": meta.id, "object": "chat.completion", "created": meta.created, "model": meta.model,
        "choices": [{ "index": 0, "message": message,
                      "finish_reason": api::finish_reason(finish_reason) }],
        "usage": api::usage(prompt_ids.len(), new_ids.len()),
    }))
    .into_response())
}

struct StreamState {
    meta: Meta,
    running: Running,
    pending: VecDeque<SseEvent>,
    over: bool,
    usage: Option<Value>,
}

fn data(value: &Value) -> SseEvent {
    SseEvent::default().data(value.to_string())
}

/// The SSE stream of a completion: a role chunk, content chunks as tokens come, a last
/// chunk with the media and the finish reason, a usage chunk if asked, then `[DONE]`.
/// Dropping it (the client hung up) drops `running`, which cancels the generation.
fn sse(meta: Meta, running: Running) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let first = data(&meta.chunk(json!({ "role": "assistant", "content": "" }), None));
    let state = StreamState {
        meta,
        running,
        pending: VecDeque::from([first]),
        over: false,
        usage: None,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.over {
                return None;
            }
            let message = st.running.next().await;
            on_message(&mut st, message);
        }
    })
}

fn on_message(st: &mut StreamState, message: Option<Message>) {
    let done = match message {
        Some(RunMessage::Event(Event::Token { text, .. })) if !text.is_empty() => {
            let chunk = st.meta.chunk(json!({ "content": text }), None);
            st.pending.push_back(data(&chunk));
            return;
        }
        Some(RunMessage::Event(_)) => return,
        Some(RunMessage::Done(Ok(Response::Chat {
            segments,
            finish_reason,
            prompt_ids,
            new_ids,
            ..
        }))) => api::outputs(&segments).map(|out| {
            let mut delta = json!({});
            api::add_media(&mut delta, &out, &st.meta.id, st.meta.created);
            if st.meta.include_usage {
                let mut last = st.meta.chunk(json!({}), None);
                last["choices"] = json!([]);
                last["usage"] = api::usage(prompt_ids.len(), new_ids.len());
                st.usage = Some(last);
            }
            st.meta
                .chunk(delta, Some(api::finish_reason(finish_reason)))
        }),
        Some(RunMessage::Done(Ok(_))) => Err(ApiError::engine("unexpected engine answer")),
        Some(RunMessage::Done(Err(e))) => Err(ApiError::engine(e)),
        None => Err(ApiError::engine("the model worker stopped")),
    };
    st.over = true;
    match done {
        Ok(chunk) => st.pending.push_back(data(&chunk)),
        Err(e) => st.pending.push_back(data(&e.body())),
    }
    if let Some(usage) = st.usage.take() {
        st.pending.push_back(data(&usage));
    }
    st.pending.push_back(SseEvent::default().data("[DONE]"));
}

/// `POST /v1/audio/transcriptions`: multipart `file` (wav, mp3, flac, ogg) to text;
/// `response_format` `json` (default) or `text`; extension field `max_tokens`.
pub async fn transcribe(
    State(state): St,
    form: Result<Multipart, MultipartRejection>,
) -> Result<HttpResponse, ApiError> {
    let form = form.map_err(|e| ApiError::bad_request(e.body_text()).param("file"))?;
    let (bytes, name, format, max_tokens) = read_form(&state, form).await?;
    let ext = std::path::Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_string);
    let audio = api::decode_audio(bytes, ext.as_deref(), &name)?;
    let mut request = api::transcription_request(audio, max_tokens);
    state.cap_tokens(&mut request);
    let answer = state.queue.submit(request)?.finish().await?;
    let Response::Chat { segments, .. } = answer else {
        return Err(ApiError::engine("unexpected engine answer"));
    };
    let text = api::outputs(&segments)?.text.trim().to_string();
    Ok(match format.as_deref() {
        Some("text") => text.into_response(),
        _ => Json(json!({ "text": text })).into_response(),
    })
}

/// A transcription form: the `file` (bytes, file name), `response_format` and the
/// extension field `max_tokens`.
async fn read_form(
    state: &AppState,
    mut form: Multipart,
) -> Result<(Vec<u8>, String, Option<String>, Option<usize>), ApiError> {
    let fail = |e: axum::extract::multipart::MultipartError| {
        ApiError::from_body(e.status(), e.body_text(), state.max_body_mb)
    };
    let mut file = None;
    let mut format = None;
    let mut max_tokens = None;
    while let Some(field) = form.next_field().await.map_err(fail)? {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or("audio").to_string();
                file = Some((field.bytes().await.map_err(fail)?.to_vec(), name));
            }
            Some("response_format") => format = Some(field.text().await.map_err(fail)?),
            Some("max_tokens") => {
                let text = field.text().await.map_err(fail)?;
                max_tokens = Some(text.trim().parse().map_err(|_| {
                    ApiError::bad_request("max_tokens is not a number").param("max_tokens")
                })?);
            }
            _ => {}
        }
    }
    let (bytes, name) =
        file.ok_or_else(|| ApiError::bad_request("the form has no `file`").param("file"))?;
    if matches!(format.as_deref(), Some(f) if f != "json" && f != "text") {
        return Err(
            ApiError::bad_request("response_format must be json or text").param("response_format"),
        );
    }
    Ok((bytes, name, format, max_tokens))
}

#[derive(Deserialize)]
struct SpeechBody {
    input: String,
    response_format: Option<String>,
    /// Extension: most new tokens.
    max_tokens: Option<usize>,
}

/// `POST /v1/audio/speech`: `{"input": text}` to WAV bytes (voice mode, TTS prompt);
/// extension field `max_tokens`.
pub async fn speech(
    State(state): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<HttpResponse, ApiError> {
    let req: SpeechBody = body_json(&state, body)?;
    if matches!(req.response_format.as_deref(), Some(f) if f != "wav") {
        return Err(ApiError::bad_request("MIO answers with wav only").param("response_format"));
    }
    if req.input.trim().is_empty() {
        return Err(ApiError::bad_request("the input is empty").param("input"));
    }
    let mut request = api::speech_request(&req.input, req.max_tokens);
    state.cap_tokens(&mut request);
    let answer = state.queue.submit(request)?.finish().await?;
    let Response::Chat { segments, .. } = answer else {
        return Err(ApiError::engine("unexpected engine answer"));
    };
    let wav = api::outputs(&segments)?
        .wav
        .ok_or_else(|| ApiError::engine("the model answered without speech; try again"))?;
    Ok(([(header::CONTENT_TYPE, "audio/wav")], wav).into_response())
}
