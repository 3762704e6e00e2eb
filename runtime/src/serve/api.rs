//! OpenAI's chat-completion JSON mapped onto the engine: messages and content parts
//! (`text`, `image_url`, `input_audio`) to a [`Request::Chat`], and the engine's answer
//! (text, speech, pictures) back to a `chat.completion` or its stream chunks.
//!
//! Extensions: the request field `mode` (`chat`, `voice`, `image`, `video`, `guide`,
//! `edit`; `modalities: ["text", "audio"]` also selects voice) and the answer field
//! `message.images` (pictures as `image_url` parts holding PNG data URLs).

use std::path::PathBuf;

use base64::Engine as _;
use mio_models::engine::{
    AudioInput, ChatMode, Conversation, FinishReason, GenerationParams, ImageInput, MediaInputs,
    Message, OutputSegment, Request, Role, SPEECH_SAMPLE_RATE,
};
use mio_models::speech_codec::{wav_bytes, WavAudio, WavEncoding};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;

/// A `POST /v1/chat/completions` body (fields MIO does not use are accepted and ignored).
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` adds a usage chunk at the end of a stream.
    pub stream_options: Option<StreamOptions>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    seed: Option<u64>,
    n: Option<u32>,
    modalities: Option<Vec<String>>,
    audio: Option<AudioOptions>,
    /// Extension: MIO's chat mode.
    mode: Option<String>,
}

/// Stream options.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct AudioOptions {
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: InputAudio },
}

#[derive(Debug, Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Debug, Deserialize)]
struct InputAudio {
    data: String,
    format: String,
}

/// The engine request of a chat completion.
pub fn chat_request(req: ChatRequest) -> Result<Request, ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_request("only n = 1 is supported").param("n"));
    }
    if let Some(format) = req.audio.as_ref().and_then(|a| a.format.as_deref()) {
        if format != "wav" {
            return Err(ApiError::bad_request(format!(
                "audio format {format} is not supported; MIO answers with wav"
            ))
            .param("audio"));
        }
    }
    let mode = mode_of(req.mode.as_deref(), req.modalities.as_deref())?;
    let mut conversation = Conversation::default();
    let mut media = MediaInputs::default();
    for m in req.messages {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::bad_request(format!(
                    "message role {other} is not supported (system, user, assistant)"
                ))
                .param("messages"))
            }
        };
        let text = content_text(m.content, &mut conversation, &mut media)?;
        conversation.messages.push(Message::new(role, text));
    }
    if !matches!(conversation.messages.last(), Some(m) if m.role == Role::User) {
        return Err(ApiError::bad_request("the last message must be the user's").param("messages"));
    }
    let params = GenerationParams {
        max_new_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        seed: req.seed,
        do_sample: (req.temperature.is_some() || req.top_p.is_some()).then_some(true),
        ..Default::default()
    };
    Ok(Request::Chat {
        conversation,
        mode,
        params,
        media,
    })
}

fn mode_of(mode: Option<&str>, modalities: Option<&[String]>) -> Result<ChatMode, ApiError> {
    let audio = modalities.is_some_and(|m| m.iter().any(|x| x == "audio"));
    Ok(match mode {
        None | Some("chat") if audio => ChatMode::Voice,
        None | Some("chat") => ChatMode::Chat,
        Some("voice") => ChatMode::Voice,
        Some("image") => ChatMode::Image,
        Some("video") => ChatMode::Video,
        Some("guide") => ChatMode::Guide,
        Some("edit") => ChatMode::Edit,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "mode {other} is not one of chat, voice, image, video, guide, edit"
            ))
            .param("mode"))
        }
    })
}

/// A message's text with placeholders for its media, which go into `media` (numbered
/// across the conversation).
fn content_text(
    content: Option<Content>,
    conversation: &mut Conversation,
    media: &mut MediaInputs,
) -> Result<String, ApiError> {
    let parts = match content {
        None => return Ok(String::new()),
        Some(Content::Text(t)) => return Ok(strip_placeholders(&t)),
        Some(Content::Parts(p)) => p,
    };
    let mut text = String::new();
    for part in parts {
        match part {
            Part::Text { text: t } => text.push_str(&strip_placeholders(&t)),
            Part::ImageUrl { image_url } => {
                let n = media.images.len();
                media.images.push(image_input(&image_url.url, n)?);
                conversation
                    .images
                    .push(PathBuf::from(format!("image_{n}")));
                text.push_str(&format!("\n<image_placeholder_{n}>\n"));
            }
            Part::InputAudio { input_audio } => {
                let n = media.speech.len();
                media.speech.push(audio_input(&input_audio)?);
                conversation
                    .speech
                    .push(PathBuf::from(format!("speech_{n}")));
                text.push_str(&format!("\n<speech_placeholder_{n}>\n"));
            }
        }
    }
    Ok(text.trim().to_string())
}

/// Client text may not address media by placeholder (the parts decide the media).
fn strip_placeholders(text: &str) -> String {
    text.replace("<image_placeholder_", "<image placeholder ")
        .replace("<speech_placeholder_", "<speech placeholder ")
}

/// An `image_url`: a data URL or a `file://` path; remote URLs are refused.
fn image_input(url: &str, n: usize) -> Result<ImageInput, ApiError> {
    let bytes = if let Some(rest) = url.strip_prefix("data:") {
        let (_, data) = rest.split_once(";base64,").ok_or_else(|| {
            ApiError::bad_request("image data URLs must be base64 (data:image/...;base64,...)")
                .param("messages")
        })?;
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ApiError::bad_request(format!("image {n}: bad base64: {e}")))?
    } else if let Some(path) = url.strip_prefix("file://") {
        std::fs::read(path).map_err(|e| {
            ApiError::bad_request(format!("image {n}: cannot read {path}: {e}")).param("messages")
        })?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::bad_request(
            "remote image URLs are not fetched: send the image as a data URL (data:image/png;base64,...) or a local file:// path",
        )
        .param("messages")
        .code("remote_url_refused"));
    } else {
        return Err(ApiError::bad_request(format!(
            "image {n}: unsupported URL (use a data: URL or file:// path)"
        ))
        .param("messages"));
    };
    if image::guess_format(&bytes).is_err() {
        return Err(ApiError::bad_request(format!(
            "image {n} is not a JPEG, PNG, WebP, GIF or BMP picture"
        ))
        .param("messages"));
    }
    Ok(ImageInput {
        name: format!("image {n}"),
        bytes,
    })
}

fn audio_input(a: &InputAudio) -> Result<AudioInput, ApiError> {
    if a.format != "wav" && a.format != "mp3" {
        return Err(ApiError::bad_request(format!(
            "input_audio format {} is not wav or mp3",
            a.format
        ))
        .param("messages"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.data.trim())
        .map_err(|e| ApiError::bad_request(format!("input_audio: bad base64: {e}")))?;
    decode_audio(bytes, Some(&a.format), "input_audio")
}

/// Decodes an uploaded audio file (a 400 when it is not audio).
pub fn decode_audio(bytes: Vec<u8>, ext: Option<&str>, name: &str) -> Result<AudioInput, ApiError> {
    let clip = crate::audio::decode_bytes(bytes, ext, name)
        .map_err(|e| ApiError::bad_request(crate::commands::one_sentence(&e)))?;
    Ok(AudioInput {
        samples: clip.samples,
        sample_rate: clip.sample_rate,
    })
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// OpenAI's `usage` object.
pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion })
}

/// The answer's text, its speech as one WAV and its pictures as PNG data URLs.
pub struct Outputs {
    /// Text segments joined.
    pub text: String,
    /// All speech segments, one 16-bit WAV.
    pub wav: Option<Vec<u8>>,
    /// `image_url` parts.
    pub images: Vec<Value>,
}

/// Collects the answer's segments.
pub fn outputs(segments: &[OutputSegment]) -> Result<Outputs, ApiError> {
    let mut text = String::new();
    let mut samples: Option<Vec<f32>> = None;
    let mut images = vec![];
    for seg in segments {
        match seg {
            OutputSegment::Text { text: t } => text.push_str(t),
            OutputSegment::Speech { audio: Some(a), .. } => {
                samples.get_or_insert_with(Vec::new).extend_from_slice(a)
            }
            OutputSegment::Image {
                image: Some(img), ..
            } => {
                let png = png_bytes(img)?;
                let url = format!(
                    "data:image/png;base64,{}",
                    base64::engine::general_purpose::STANDARD.encode(png)
                );
                images.push(json!({ "type": "image_url", "image_url": { "url": url } }));
            }
            _ => {}
        }
    }
    let wav = samples.map(|s| wav_of(&s)).transpose()?;
    Ok(Outputs { text, wav, images })
}

/// Mono speech as a 16-bit PCM WAV.
pub fn wav_of(samples: &[f32]) -> Result<Vec<u8>, ApiError> {
    let audio = WavAudio {
        sample_rate: SPEECH_SAMPLE_RATE,
        samples: vec![samples.to_vec()],
    };
    wav_bytes(&audio, WavEncoding::Pcm16).map_err(|e| ApiError::engine(e.to_string()))
}

fn png_bytes(img: &mio_models::engine::DecodedImage) -> Result<Vec<u8>, ApiError> {
    let buf = image::RgbImage::from_raw(img.width, img.height, img.rgb.clone())
        .ok_or_else(|| ApiError::engine("the decoded picture has the wrong size"))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| ApiError::engine(format!("cannot encode the picture: {e}")))?;
    Ok(bytes.into_inner())
}

/// The assistant message's media fields (`audio`, `images`) set on `message`.
pub fn add_media(message: &mut Value, out: &Outputs, id: &str, created: u64) {
    if let Some(wav) = &out.wav {
        message["audio"] = json!({
            "id": format!("audio_{id}"),
            "data": base64::engine::general_purpose::STANDARD.encode(wav),
            "transcript": out.text,
            "expires_at": created + 3600,
        });
    }
    if !out.images.is_empty() {
        message["images"] = json!(out.images);
    }
}

/// The ASR request of a clip: the reference's instruct prompt (`infer.py`).
pub fn transcription_request(audio: AudioInput, max_tokens: Option<usize>) -> Request {
    let text = "Please transcribe this speech.\n<speech_placeholder_0>";
    Request::Chat {
        conversation: Conversation {
            messages: vec![Message::new(Role::User, text)],
            images: vec![],
            speech: vec![PathBuf::from("file")],
        },
        mode: ChatMode::Chat,
        params: GenerationParams {
            max_new_tokens: max_tokens,
            ..Default::default()
        },
        media: MediaInputs {
            images: vec![],
            speech: vec![audio],
        },
    }
}

/// The TTS request of a text: the reference's instruct prompt (`infer.py`), voice mode.
pub fn speech_request(input: &str, max_tokens: Option<usize>) -> Request {
    let input = strip_placeholders(input);
    let text = format!(
        "The transcription is ``{input}''. Please generate a speech according to the given transcription. Start with <spch>."
    );
    Request::Chat {
        conversation: Conversation {
            messages: vec![Message::new(Role::User, text)],
            images: vec![],
            speech: vec![],
        },
        mode: ChatMode::Voice,
        params: GenerationParams {
            max_new_tokens: max_tokens,
            ..Default::default()
        },
        media: MediaInputs::default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn request(body: Value) -> Result<Request, ApiError> {
        chat_request(serde_json::from_value(body).unwrap())
    }

    const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

    #[test]
    fn parts_become_placeholders_and_media_in_order() {
        let url = format!("data:image/png;base64,{PNG_1X1}");
        let r = request(
            json!({"model": "m", "max_tokens": 7, "temperature": 0.5, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "look <image_placeholder_9>"},
                {"type": "image_url", "image_url": {"url": url}},
                {"type": "image_url", "image_url": {"url": url}}]}]}),
        )
        .unwrap();
        let Request::Chat {
            conversation,
            mode,
            params,
            media,
        } = r
        else {
            panic!()
        };
        assert_eq!(mode, ChatMode::Chat);
        assert_eq!((media.images.len(), conversation.images.len()), (2, 2));
        let text = &conversation.messages[1].content;
        assert!(text.contains("<image_placeholder_0>") && text.contains("<image_placeholder_1>"));
        assert!(!text.contains("<image_placeholder_9>"), "{text}");
        assert_eq!(conversation.messages[0].role, Role::System);
        assert_eq!(
            (params.max_new_tokens, params.temperature, params.do_sample),
            (Some(7), Some(0.5), Some(true))
        );
    }

    #[test]
    fn modes_and_refusals() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let voice = request(json!({"messages": user, "modalities": ["text", "audio"]})).unwrap();
        assert!(matches!(
            voice,
            Request::Chat {
                mode: ChatMode::Voice,
                ..
            }
        ));
        let image = request(json!({"messages": user, "mode": "image"})).unwrap();
        assert!(matches!(
            image,
            Request::Chat {
                mode: ChatMode::Image,
                ..
            }
        ));
        let remote = json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]);
        let e = request(json!({"messages": remote})).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code),
            (400, Some("remote_url_refused"))
        );
        let e = request(json!({"messages": user, "mode": "dance"})).unwrap_err();
        assert_eq!(e.param, Some("mode"));
        let e = request(json!({"messages": [{"role": "assistant", "content": "x"}]})).unwrap_err();
        assert_eq!(e.param, Some("messages"));
        let not_image = json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]);
        assert_eq!(
            request(json!({"messages": not_image}))
                .unwrap_err()
                .status
                .as_u16(),
            400
        );
    }
}
