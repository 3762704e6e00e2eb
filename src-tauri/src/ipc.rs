//! The IPC contract between the shell and the UI: every type the commands take or return,
//! the per-request stream events, and the command table. `ui/src/ipc/bindings.ts` is
//! generated from this file by [`bindings`] (a test keeps it up to date).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::error::AppError;
pub use crate::models_ipc::*;

/// What the user asks the assistant to do: the engine's chat modes, each with the
/// reference's prompt and generation preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Any modality, the model chooses.
    #[default]
    Chat,
    /// Spoken answers.
    Voice,
    /// Visual guideline: an illustrated step list.
    Guide,
    /// Image editing: the attached picture, changed as asked.
    Edit,
    /// Draw a picture of the message.
    Image,
    /// A short video (a sequence of frames) of the message.
    Video,
}

/// Kind of an attached or generated media file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// A picture.
    Image,
    /// A sound clip.
    Audio,
    /// A video (its keyframes go to the model).
    Video,
}

/// One ordered piece of a message. Media are files relative to the media folder, served to
/// the UI by the `media:` protocol. A new kind is one variant here and one renderer there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Segment {
    /// Text (Markdown).
    Text {
        /// The text.
        text: String,
    },
    /// A picture.
    Image {
        /// File in the media folder.
        file: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A sound clip (speech answer or attached audio).
    Audio {
        /// File in the media folder.
        file: String,
        /// Length in seconds.
        duration_s: f64,
    },
    /// A video the user attached: the file and the keyframes the runtime chose (PNG files,
    /// in time order), shown as a strip that plays as a slideshow.
    Video {
        /// The video file in the media folder.
        file: String,
        /// Keyframe pictures in the media folder.
        frames: Vec<String>,
        /// Seconds into the video of each keyframe.
        times_s: Vec<f64>,
        /// Frame width in pixels.
        width: u32,
        /// Frame height in pixels.
        height: u32,
    },
    /// One step of a Guide answer: its text and the picture that closes it.
    Step {
        /// Position in the guide (0-based).
        index: u32,
        /// What to do.
        text: String,
        /// The step's picture in the media folder (absent for a last step without one).
        file: Option<String>,
        /// Width of the picture in pixels (0 without one).
        width: u32,
        /// Height of the picture in pixels (0 without one).
        height: u32,
    },
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// Where an assistant message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Being generated.
    Streaming,
    /// Finished normally.
    Done,
    /// Stopped by the user.
    Cancelled,
    /// Failed (the error is in the message's `error`).
    Failed,
    /// The app stopped while it was being generated.
    Interrupted,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MessageView {
    /// Id.
    #[ts(type = "number")]
    pub id: i64,
    /// Author.
    pub role: Role,
    /// Mode of the turn.
    pub mode: Mode,
    /// Status.
    pub status: MessageStatus,
    /// Segments in order.
    pub segments: Vec<Segment>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Creation time (ms since the Unix epoch).
    #[ts(type = "number")]
    pub created_ms: i64,
}

/// A conversation in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ConversationSummary {
    /// Id.
    #[ts(type = "number")]
    pub id: i64,
    /// Title (the first words of the first message).
    pub title: String,
    /// Last change (ms since the Unix epoch).
    #[ts(type = "number")]
    pub updated_ms: i64,
    /// Messages in it.
    pub messages: u32,
}

/// A conversation with its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ConversationView {
    /// The list entry.
    pub summary: ConversationSummary,
    /// Messages, oldest first.
    pub messages: Vec<MessageView>,
}

/// A media file the user attached (imported into the media folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Attachment {
    /// Kind.
    pub kind: MediaKind,
    /// The segment it becomes in the user's message.
    pub segment: Segment,
    /// The original file name.
    pub name: String,
}

/// A chat turn to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SendArgs {
    /// Conversation to continue; `None` starts a new one.
    #[ts(type = "number | null")]
    pub conversation_id: Option<i64>,
    /// The user's text.
    pub text: String,
    /// Attachments, from `import_media`.
    pub attachments: Vec<Attachment>,
    /// Mode.
    pub mode: Mode,
    /// Most new tokens (default: the mode's preset).
    pub max_new_tokens: Option<u32>,
    /// Decoding settings over the mode's preset (from the settings' presets per task).
    pub params: Option<GenOverrides>,
}

/// What `send_message` and `regenerate` return at once (the answer streams).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct TurnStarted {
    /// The conversation.
    #[ts(type = "number")]
    pub conversation_id: i64,
    /// The stored user message (absent for a regeneration).
    pub user: Option<MessageView>,
    /// The assistant message being generated.
    #[ts(type = "number")]
    pub message_id: i64,
    /// Request id for `cancel`.
    #[ts(type = "number")]
    pub request_id: u64,
}

/// One event of a running turn, in order; `done` or `failed` is the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamEvent {
    /// Newly finalised text of the answer.
    Text {
        /// The text.
        text: String,
    },
    /// A finished media segment, in answer order.
    Segment {
        /// The segment.
        segment: Segment,
    },
    /// Progressive speech: a lower-quality preview of speech block `index`.
    SpeechPreview {
        /// Which speech block.
        index: u32,
        /// The preview clip.
        segment: Segment,
    },
    /// Guide mode: a step is complete; it replaces the text and picture streamed since
    /// the previous step (other segments stay after it).
    GuideStep {
        /// The step (a `step` segment).
        segment: Segment,
    },
    /// A low-resolution preview of the picture being drawn (a temporary file).
    ImagePreview {
        /// Denoising steps done.
        step: u32,
        /// Steps in all.
        total: u32,
        /// The preview picture.
        segment: Segment,
    },
    /// Progress of a long step (`stage` = "image": denoising steps).
    Progress {
        /// What progresses.
        stage: String,
        /// Steps done.
        step: u32,
        /// Steps in all.
        total: u32,
    },
    /// The turn ended; the stored message is final.
    Done {
        /// The stored message.
        message: MessageView,
        /// Generation speed (tokens per second of decode).
        tokens_per_s: f64,
        /// What the engine noted (oldest turns left out to fit the context, incomplete
        /// media blocks), for the UI to show.
        warnings: Vec<String>,
    },
    /// The turn failed; what was produced is kept.
    Failed {
        /// The error.
        error: AppError,
        /// The stored message.
        message: Option<MessageView>,
    },
}

/// A load stage, streamed while a model loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoadEvent {
    /// A stage began (`stage` in words), `index` of `total` stages.
    Stage {
        /// What is loading.
        stage: String,
        /// Stage number, from 1.
        index: u32,
        /// Stages in all.
        total: u32,
    },
}

/// Which model to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct LoadArgs {
    /// Release folder; `None` loads the bundled tiny model.
    pub model_dir: Option<String>,
    /// Device: "cpu", "cuda:0", "metal:0".
    pub device: String,
    /// Which implementation runs the LM.
    pub backend: Backend,
    /// Float precision of the LM weights.
    pub precision: PrecisionArg,
    /// llama.cpp: LM layers on the GPU (`None`: as many as fit).
    pub gpu_layers: Option<u32>,
    /// A GGUF LM file in the folder to run instead of its shards (see `inspect_model`).
    pub lm_file: Option<String>,
    /// The LM server when `backend` is `remote`.
    #[serde(default)]
    pub remote: Option<RemoteArgs>,
}

/// The loaded model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ModelInfo {
    /// Folder it was loaded from.
    pub model_dir: String,
    /// A short name for the header.
    pub label: String,
    /// The bundled tiny model: random weights, answers mean nothing.
    pub random_weights: bool,
    /// LM layers.
    pub layers: u32,
    /// LM hidden size.
    pub hidden_size: u32,
    /// Vocabulary size.
    pub vocab_size: u32,
    /// The device, in words.
    pub device: String,
    /// Seconds the load took.
    pub load_s: f64,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Markdown with media files referenced beside it.
    Markdown,
    /// One self-contained HTML file (media inlined).
    Html,
    /// JSON (the stored messages).
    Json,
}

/// An exported conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ExportResult {
    /// The file written (in the app data folder's `exports`).
    pub path: String,
}

/// One IPC command: its name, its TypeScript arguments and result.
pub struct CommandSpec {
    /// Rust and IPC name.
    pub name: &'static str,
    /// Arguments as a TypeScript parameter list.
    pub params: &'static str,
    /// The object passed to `invoke`.
    pub invoke_args: &'static str,
    /// The TypeScript result type.
    pub result: &'static str,
}

/// Every command the UI may call (the capability file and build manifest list the same).
pub const COMMANDS: &[CommandSpec] = &[
    cmd("model_status", "", "{}", "ModelInfo | null"),
    cmd("generation_presets", "", "{}", "ModePreset[]"),
    cmd(
        "load_model",
        "args: LoadArgs, onEvent: Channel<LoadEvent>",
        "{ args, onEvent }",
        "ModelInfo",
    ),
    cmd(
        "send_message",
        "args: SendArgs, onEvent: Channel<StreamEvent>",
        "{ args, onEvent }",
        "TurnStarted",
    ),
    cmd(
        "regenerate",
        "conversationId: number, onEvent: Channel<StreamEvent>",
        "{ conversationId, onEvent }",
        "TurnStarted",
    ),
    cmd("cancel", "requestId: number", "{ requestId }", "void"),
    cmd(
        "prepare_media",
        "kind: MediaKind, onEvent: Channel<StreamEvent>",
        "{ kind, onEvent }",
        "void",
    ),
    cmd(
        "mic_start",
        "args: MicArgs, onEvent: Channel<MicEvent>",
        "{ args, onEvent }",
        "MicStarted",
    ),
    cmd("mic_stop", "", "{}", "void"),
    cmd(
        "camera_start",
        "onEvent: Channel<CameraEvent>",
        "{ onEvent }",
        "CameraStarted",
    ),
    cmd("camera_snapshot", "", "{}", "Attachment"),
    cmd(
        "camera_clip",
        "seconds: number",
        "{ seconds }",
        "Attachment",
    ),
    cmd("camera_stop", "", "{}", "void"),
    cmd(
        "resend_message",
        "conversationId: number, messageId: number, text: string, onEvent: Channel<StreamEvent>",
        "{ conversationId, messageId, text, onEvent }",
        "TurnStarted",
    ),
    cmd(
        "inspect_model",
        "modelDir: string | null",
        "{ modelDir }",
        "ModelFolder",
    ),
    cmd(
        "import_release_folder",
        "args: ImportArgs, onEvent: Channel<ImportEvent>",
        "{ args, onEvent }",
        "ImportResult",
    ),
    cmd(
        "download_release",
        "args: DownloadArgs, onEvent: Channel<ImportEvent>",
        "{ args, onEvent }",
        "DownloadResult",
    ),
    cmd("cancel_import", "", "{}", "void"),
    cmd("serve_start", "args: ServeArgs", "{ args }", "ServeStatus"),
    cmd("serve_stop", "", "{}", "void"),
    cmd("serve_status", "", "{}", "ServeStatus | null"),
    cmd("list_conversations", "", "{}", "ConversationSummary[]"),
    cmd(
        "get_conversation",
        "id: number",
        "{ id }",
        "ConversationView",
    ),
    cmd("delete_conversation", "id: number", "{ id }", "void"),
    cmd(
        "search_conversations",
        "query: string",
        "{ query }",
        "ConversationSummary[]",
    ),
    cmd(
        "export_conversation",
        "id: number, format: ExportFormat",
        "{ id, format }",
        "ExportResult",
    ),
];

const fn cmd(
    name: &'static str,
    params: &'static str,
    invoke_args: &'static str,
    result: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        params,
        invoke_args,
        result,
    }
}

/// The `import_media` command takes the file's bytes as the raw request body (never a JSON
/// number array); its name travels in the `x-file-name` header.
pub const IMPORT_MEDIA: &str = "import_media";

/// The `import_conversation` command takes an exported JSON file's bytes as the raw body.
pub const IMPORT_CONVERSATION: &str = "import_conversation";

/// The generated TypeScript bindings (`ui/src/ipc/bindings.ts`).
pub fn bindings() -> String {
    let decls = [
        Mode::decl(),
        MediaKind::decl(),
        Segment::decl(),
        Role::decl(),
        MessageStatus::decl(),
        MessageView::decl(),
        ConversationSummary::decl(),
        ConversationView::decl(),
        Attachment::decl(),
        SendArgs::decl(),
        GenOverrides::decl(),
        ModePreset::decl(),
        TurnStarted::decl(),
        StreamEvent::decl(),
        LoadEvent::decl(),
        LoadArgs::decl(),
        ModelInfo::decl(),
        Backend::decl(),
        PrecisionArg::decl(),
        Quant::decl(),
        ImportArgs::decl(),
        ImportEvent::decl(),
        ImportResult::decl(),
        DownloadArgs::decl(),
        ServeArgs::decl(),
        ServeStatus::decl(),
        DownloadResult::decl(),
        RemoteApiArg::decl(),
        RemoteArgs::decl(),
        ComponentInfo::decl(),
        MemoryOption::decl(),
        ModelFolder::decl(),
        MicArgs::decl(),
        MicEvent::decl(),
        MicStarted::decl(),
        CameraEvent::decl(),
        CameraStarted::decl(),
        ExportFormat::decl(),
        ExportResult::decl(),
        AppError::decl(),
        crate::error::ErrorCode::decl(),
    ];
    let mut out = String::from(
        "// Generated by src-tauri (ipc.rs, `UPDATE_BINDINGS=1 cargo test -p mio-desktop bindings`).\n\
         // Do not edit by hand.\n\
         import { invoke, Channel } from \"@tauri-apps/api/core\";\n\n",
    );
    for d in decls {
        out.push_str("export ");
        out.push_str(&d);
        out.push_str("\n\n");
    }
    for c in COMMANDS {
        out.push_str(&format!(
            "export function {}({}): Promise<{}> {{\n  return invoke(\"{}\", {});\n}}\n\n",
            camel(c.name),
            c.params,
            c.result,
            c.name,
            c.invoke_args
        ));
    }
    out.push_str(&format!(
        "export function importConversation(bytes: Uint8Array): Promise<ConversationSummary> {{\n  \
         return invoke(\"{IMPORT_CONVERSATION}\", bytes);\n}}\n\n"
    ));
    out.push_str(&format!(
        "export function importMedia(name: string, bytes: Uint8Array): Promise<Attachment> {{\n  \
         return invoke(\"{IMPORT_MEDIA}\", bytes, {{ headers: {{ \"x-file-name\": encodeURIComponent(name) }} }});\n}}\n"
    ));
    out
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for ch in name.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// Names of every command (for the build manifest and the capability test).
pub fn command_names() -> Vec<&'static str> {
    let mut names: Vec<_> = COMMANDS.iter().map(|c| c.name).collect();
    names.push(IMPORT_MEDIA);
    names.push(IMPORT_CONVERSATION);
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn bindings_are_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ui/src/ipc/bindings.ts");
        let fresh = bindings();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/ipc/bindings.ts is stale: run UPDATE_BINDINGS=1 cargo test -p mio-desktop bindings"
        );
    }

    #[test]
    fn capability_and_manifest_list_every_command() {
        let cap = include_str!("../capabilities/main.json");
        let cap: serde_json::Value = serde_json::from_str(cap).unwrap();
        let mut listed: Vec<String> = cap["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| {
                p.as_str()?
                    .strip_prefix("allow-")
                    .map(|s| s.replace('-', "_"))
            })
            .collect();
        listed.sort();
        let mut names: Vec<String> = command_names().iter().map(|s| s.to_string()).collect();
        names.sort();
        assert_eq!(listed, names);
        assert_eq!(cap["windows"], serde_json::json!(["main"]));
        let build = include_str!("../build.rs");
        for n in command_names() {
            assert!(build.contains(&format!("\"{n}\"")), "build.rs misses {n}");
        }
    }

    #[test]
    fn camel_case_names() {
        assert_eq!(camel("send_message"), "sendMessage");
        assert_eq!(camel("cancel"), "cancel");
    }
}
