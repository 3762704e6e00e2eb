//! One chat turn: the user's message is stored, the request goes to the worker thread, and
//! a drain thread turns engine events into stream events, writes media files and keeps the
//! stored assistant message current. Generic over the worker's backend so tests drive it
//! with a fake engine.

use std::sync::{Arc, Mutex};

use mio_models::engine::{
    Conversation, Event, FinishReason, Message, OutputSegment, Request, Response,
    SPEECH_SAMPLE_RATE,
};
use mio_runtime::worker::{Backend, RunHandle, RunMessage, Worker};

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::MediaDir;
use crate::ipc::{
    GenOverrides, MediaKind, MessageStatus, Mode, Role, Segment, SendArgs, StreamEvent, TurnStarted,
};
pub use crate::modes::{chat_mode, close_step, generation_params, presets, PREVIEW_EVERY};
use crate::store::Store;

/// A backend the app can drive: the engine's request, event and response types.
pub trait ChatBackend: Backend<Request = Request, Event = Event, Response = Response> {}
impl<B: Backend<Request = Request, Event = Event, Response = Response>> ChatBackend for B {}

/// Where stream events go (the IPC channel in the app, a vector in tests).
pub type Sink = Box<dyn FnMut(StreamEvent) + Send>;

/// The shared history and media folder.
#[derive(Clone)]
pub struct History {
    /// The database.
    pub store: Arc<Mutex<Store>>,
    /// The media folder.
    pub media: MediaDir,
}

impl History {
    /// Runs `f` with the store locked.
    pub fn with<T>(&self, f: impl FnOnce(&mut Store) -> AppResult<T>) -> AppResult<T> {
        let mut guard = self
            .store
            .lock()
            .map_err(|_| AppError::new(ErrorCode::Internal, "the history is unavailable"))?;
        f(&mut guard)
    }
}

/// Starts loading the codec an attachment of `kind` will need (the engine loads each
/// once; a loaded one costs nothing), so that the turn it belongs to does not wait for it.
/// The loading's `progress` events go to `sink`, then nothing (loaded) or one `failed`.
pub fn prepare<B: ChatBackend>(
    worker: &Worker<B>,
    kind: MediaKind,
    mut sink: Sink,
) -> AppResult<()> {
    let request = Request::Prepare {
        speech: kind == MediaKind::Audio,
        image_encoder: matches!(kind, MediaKind::Image | MediaKind::Video),
        image_decoder: false,
    };
    let handle = worker
        .run(request)
        .map_err(|e| AppError::from_chain(ErrorCode::Engine, &e))?;
    std::thread::Builder::new()
        .name(format!("mio-prepare-{}", handle.id))
        .spawn(move || {
            let done = handle.wait(|e| {
                if let Event::Progress { stage, step, total } = e {
                    sink(progress(stage, step, total));
                }
            });
            if let Err(e) = done {
                sink(StreamEvent::Failed {
                    error: AppError::from_chain(ErrorCode::Engine, &e),
                    message: None,
                });
            }
        })
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot start a thread: {e}")))?;
    Ok(())
}

/// The stream event of the engine's `Progress`.
fn progress(stage: String, step: usize, total: usize) -> StreamEvent {
    StreamEvent::Progress {
        stage,
        step: step as u32,
        total: total as u32,
    }
}

/// Stores the user's message and starts the answer.
pub fn send<B: ChatBackend>(
    worker: &Worker<B>,
    history: &History,
    args: SendArgs,
    sink: Sink,
) -> AppResult<TurnStarted> {
    if args.text.trim().is_empty() && args.attachments.is_empty() {
        return Err(AppError::new(
            ErrorCode::InvalidInput,
            "the message is empty",
        ));
    }
    let mut segments = vec![];
    if !args.text.trim().is_empty() {
        segments.push(Segment::Text {
            text: args.text.clone(),
        });
    }
    segments.extend(args.attachments.iter().map(|a| a.segment.clone()));
    let (conversation_id, user) = history.with(|s| {
        let id = match args.conversation_id {
            Some(id) => id,
            None => s.create_conversation(&args.text)?,
        };
        let user = s.add_message(
            id,
            Role::User,
            args.mode,
            MessageStatus::Done,
            &segments,
            &args.text,
        )?;
        Ok((id, user))
    })?;
    let mut params = args.params.clone().unwrap_or_default();
    params.max_new_tokens = params.max_new_tokens.or(args.max_new_tokens);
    let mut started = start(worker, history, conversation_id, args.mode, &params, sink)?;
    started.user = Some(user);
    Ok(started)
}

/// Replaces the last answer of a conversation with a new one.
pub fn regenerate<B: ChatBackend>(
    worker: &Worker<B>,
    history: &History,
    conversation_id: i64,
    sink: Sink,
) -> AppResult<TurnStarted> {
    let (mode, stale) = history.with(|s| {
        let messages = s.messages(conversation_id)?;
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.view.role == Role::User)
            .ok_or_else(|| AppError::new(ErrorCode::InvalidInput, "nothing to regenerate"))?;
        let mut stale = vec![];
        for m in messages.iter().filter(|m| m.view.id > last_user.view.id) {
            stale.extend(s.delete_message(m.view.id)?);
        }
        Ok((last_user.view.mode, stale))
    })?;
    remove_files(&history.media, &stale);
    start(
        worker,
        history,
        conversation_id,
        mode,
        &GenOverrides::default(),
        sink,
    )
}

/// Edit-and-resend: user message `message_id` gets `text` (its media stay), every message
/// after it is removed with its media files, and a new answer starts.
pub fn resend<B: ChatBackend>(
    worker: &Worker<B>,
    history: &History,
    conversation_id: i64,
    message_id: i64,
    text: &str,
    sink: Sink,
) -> AppResult<TurnStarted> {
    let (mode, stale, user) = history.with(|s| {
        let messages = s.messages(conversation_id)?;
        let target = messages
            .iter()
            .find(|m| m.view.id == message_id && m.view.role == Role::User)
            .ok_or_else(|| {
                AppError::new(
                    ErrorCode::NotFound,
                    "no such message of yours in this conversation",
                )
            })?;
        let mut segments = vec![];
        if !text.trim().is_empty() {
            segments.push(Segment::Text { text: text.into() });
        }
        segments.extend(
            target
                .view
                .segments
                .iter()
                .filter(|seg| !matches!(seg, Segment::Text { .. }))
                .cloned(),
        );
        if segments.is_empty() {
            return Err(AppError::new(
                ErrorCode::InvalidInput,
                "the message is empty",
            ));
        }
        s.update_message(message_id, MessageStatus::Done, &segments, text, None)?;
        let mut stale = vec![];
        for m in messages.iter().filter(|m| m.view.id > message_id) {
            stale.extend(s.delete_message(m.view.id)?);
        }
        Ok((target.view.mode, stale, s.message(message_id)?.view))
    })?;
    remove_files(&history.media, &stale);
    let mut started = start(
        worker,
        history,
        conversation_id,
        mode,
        &GenOverrides::default(),
        sink,
    )?;
    started.user = Some(user);
    Ok(started)
}

fn start<B: ChatBackend>(
    worker: &Worker<B>,
    history: &History,
    conversation_id: i64,
    mode: Mode,
    params: &GenOverrides,
    sink: Sink,
) -> AppResult<TurnStarted> {
    let request =
        history.with(|s| build_request(s, &history.media, conversation_id, mode, params))?;
    let message = history.with(|s| {
        s.add_message(
            conversation_id,
            Role::Assistant,
            mode,
            MessageStatus::Streaming,
            &[],
            "",
        )
    })?;
    let handle = match worker.run(request) {
        Ok(h) => h,
        Err(e) => {
            let err = AppError::from_chain(ErrorCode::Engine, &e);
            history.with(|s| {
                s.update_message(
                    message.id,
                    MessageStatus::Failed,
                    &[],
                    "",
                    Some(&err.message),
                )
            })?;
            return Err(err);
        }
    };
    let request_id = handle.id;
    let drain = Drain {
        history: history.clone(),
        message_id: message.id,
        segments: vec![],
        previews: vec![],
        sink,
        unsaved_tokens: 0,
    };
    std::thread::Builder::new()
        .name(format!("mio-turn-{request_id}"))
        .spawn(move || drain.run(handle))
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot start a thread: {e}")))?;
    Ok(TurnStarted {
        conversation_id,
        user: None,
        message_id: message.id,
        request_id,
    })
}

/// The engine request for the next answer of `conversation` (media from the stored files).
pub fn build_request(
    store: &Store,
    media: &MediaDir,
    conversation: i64,
    mode: Mode,
    overrides: &GenOverrides,
) -> AppResult<Request> {
    let mut conv = Conversation {
        messages: vec![],
        images: vec![],
        speech: vec![],
    };
    for m in store.messages(conversation)? {
        match (m.view.role, m.view.status) {
            (Role::User, _) => {
                let (mut images, mut speech) = (vec![], vec![]);
                let (mut frames, mut frame_counts) = (vec![], vec![]);
                for seg in &m.view.segments {
                    match seg {
                        Segment::Image { file, .. } => images.push(media.resolve(file)?),
                        Segment::Audio { file, .. } => speech.push(media.resolve(file)?),
                        Segment::Video { frames: f, .. } => {
                            frame_counts.push(f.len());
                            for file in f {
                                frames.push(media.resolve(file)?);
                            }
                        }
                        Segment::Text { .. } | Segment::Step { .. } => {}
                    }
                }
                let text = mio_runtime::media::place_media(
                    &m.model_text,
                    "image",
                    conv.images.len(),
                    images.len(),
                );
                // A video's keyframes follow the message's pictures, as `mio chat` places them.
                let text = mio_runtime::video::place_video_frames(
                    &text,
                    conv.images.len() + images.len(),
                    &frame_counts,
                );
                images.extend(frames);
                let text = mio_runtime::media::place_media(
                    &text,
                    "speech",
                    conv.speech.len(),
                    speech.len(),
                );
                conv.images.extend(images);
                conv.speech.extend(speech);
                conv.messages.push(Message::new(
                    mio_models::engine::Role::User,
                    text.trim().to_string(),
                ));
            }
            (Role::Assistant, MessageStatus::Done | MessageStatus::Cancelled)
                if !m.model_text.is_empty() =>
            {
                conv.messages.push(Message::new(
                    mio_models::engine::Role::Assistant,
                    m.model_text,
                ));
            }
            _ => {}
        }
    }
    let inputs = mio_runtime::media::load_inputs(&conv, media.root())
        .map_err(|e| AppError::from_chain(ErrorCode::InvalidInput, &e))?;
    let params = generation_params(overrides);
    Ok(Request::Chat {
        conversation: conv,
        mode: chat_mode(mode),
        params,
        media: inputs,
    })
}

fn remove_files(media: &MediaDir, files: &[String]) {
    for f in files {
        if let Ok(p) = media.resolve(f) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Drains one request's events on its own thread.
struct Drain {
    history: History,
    message_id: i64,
    segments: Vec<Segment>,
    previews: Vec<String>,
    sink: Sink,
    unsaved_tokens: usize,
}

impl Drain {
    fn run<B: ChatBackend>(mut self, handle: RunHandle<B>) {
        while let Ok(message) = handle.messages.recv() {
            match message {
                RunMessage::Event(e) => {
                    if let Err(err) = self.event(e) {
                        // A media file could not be written (disk full): stop the engine,
                        // keep what was stored, report.
                        handle.cancel();
                        self.fail(err);
                        return self.drain_rest(handle);
                    }
                }
                RunMessage::Done(result) => return self.finish(result),
            }
        }
        self.fail(AppError::new(ErrorCode::Engine, "the model worker stopped"));
    }

    fn drain_rest<B: ChatBackend>(self, handle: RunHandle<B>) {
        for m in handle.messages.iter() {
            if matches!(m, RunMessage::Done(_)) {
                break;
            }
        }
        remove_files(&self.history.media, &self.previews);
    }

    fn event(&mut self, e: Event) -> AppResult<()> {
        match e {
            Event::Token { text, .. } if !text.is_empty() => {
                match self.segments.last_mut() {
                    Some(Segment::Text { text: t }) => t.push_str(&text),
                    _ => self.segments.push(Segment::Text { text: text.clone() }),
                }
                (self.sink)(StreamEvent::Text { text });
                self.unsaved_tokens += 1;
                if self.unsaved_tokens >= 32 {
                    self.save(MessageStatus::Streaming, "", None)?;
                }
            }
            Event::Segment(seg) => {
                if let Some(segment) = self.write_media(&seg)? {
                    self.segments.push(segment.clone());
                    self.save(MessageStatus::Streaming, "", None)?;
                    (self.sink)(StreamEvent::Segment { segment });
                }
            }
            Event::SpeechPreview {
                index,
                sample_rate,
                samples,
            } => {
                let segment = self
                    .history
                    .media
                    .write_wav("preview", &samples, sample_rate)?;
                if let Segment::Audio { file, .. } = &segment {
                    self.previews.push(file.clone());
                }
                (self.sink)(StreamEvent::SpeechPreview {
                    index: index as u32,
                    segment,
                });
            }
            Event::GuideStep(step) => {
                let segment = close_step(&mut self.segments, &step);
                self.save(MessageStatus::Streaming, "", None)?;
                (self.sink)(StreamEvent::GuideStep { segment });
            }
            Event::ImagePreview {
                step,
                total,
                width,
                height,
                rgb,
            } => {
                let segment = self
                    .history
                    .media
                    .write_png("preview", width, height, &rgb)?;
                if let Segment::Image { file, .. } = &segment {
                    self.previews.push(file.clone());
                }
                (self.sink)(StreamEvent::ImagePreview {
                    step: step as u32,
                    total: total as u32,
                    segment,
                });
            }
            Event::Progress { stage, step, total } => (self.sink)(progress(stage, step, total)),
            _ => {}
        }
        Ok(())
    }

    fn write_media(&self, seg: &OutputSegment) -> AppResult<Option<Segment>> {
        let media = &self.history.media;
        Ok(match seg {
            OutputSegment::Image {
                image: Some(img), ..
            } => Some(media.write_png("image", img.width, img.height, &img.rgb)?),
            OutputSegment::Speech {
                audio: Some(samples),
                ..
            } => Some(media.write_wav("speech", samples, SPEECH_SAMPLE_RATE)?),
            _ => None,
        })
    }

    fn save(
        &mut self,
        status: MessageStatus,
        model_text: &str,
        error: Option<&str>,
    ) -> AppResult<()> {
        self.unsaved_tokens = 0;
        let id = self.message_id;
        let segments = self.segments.clone();
        self.history
            .with(|s| s.update_message(id, status, &segments, model_text, error))
    }

    fn finish(mut self, result: Result<Response, String>) {
        remove_files(&self.history.media, &self.previews);
        let (status, model_text, tps, warnings) = match result {
            Ok(Response::Chat {
                answer_text,
                finish_reason,
                timings,
                warnings,
                ..
            }) => {
                let status = if finish_reason == FinishReason::Cancelled {
                    MessageStatus::Cancelled
                } else {
                    MessageStatus::Done
                };
                let tps = timings.new_tokens as f64 / timings.decode_s.max(1e-9);
                (status, answer_text, tps, warnings)
            }
            Ok(_) => {
                return self.fail(AppError::new(ErrorCode::Engine, "unexpected engine answer"))
            }
            Err(e) if e == "cancelled" => (MessageStatus::Cancelled, String::new(), 0.0, vec![]),
            Err(e) => return self.fail(AppError::new(ErrorCode::Engine, e)),
        };
        let saved = self
            .save(status, &model_text, None)
            .and_then(|_| self.history.with(|s| s.message(self.message_id)));
        match saved {
            Ok(m) => (self.sink)(StreamEvent::Done {
                message: m.view,
                tokens_per_s: tps,
                warnings,
            }),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, error: AppError) {
        let _ = self.save(MessageStatus::Failed, "", Some(&error.message));
        let message = self
            .history
            .with(|s| s.message(self.message_id))
            .ok()
            .map(|m| m.view);
        (self.sink)(StreamEvent::Failed { error, message });
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
