//! MIO's chat template and prompt preparation: `MIOTokenizer.apply_chat_template` and
//! `MIOTokenizer.__call__` of the reference `tokenization_mio.py`.
//!
//! ChatML: `<|im_start|>system\n{system}<|im_end|>\n`, then per turn
//! `<|im_start|>{user|assistant}\n{content}<|im_end|>\n`, then the generation prompt
//! `<|im_start|>assistant\n` (or, without it, the last `\n` removed). The system prompt is the
//! std or voice prompt verbatim, or the first message in `custom` mode (system messages are
//! otherwise skipped). `<image_placeholder_N>` / `<speech_placeholder_N>` are replaced by the
//! supplied media strings (a placeholder without a media string stays as text), then
//! `<|startoftext|>` is prepended and the string tokenized. Batches are left-padded with the
//! pad id (`<unk>`). Deviation: the conversation shape is one conversation per call.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tokenizer::TextTokenizer;
use crate::{Error, Result};

/// The std-mode system prompt, verbatim from the reference.
pub const MIO_STD_MODE_SYSTEM: &str = "You are MIO, an AI assistant capable of understanding and generating images, text, videos, and speech, selecting the appropriate modality according to the context.";
/// The voice-mode system prompt, verbatim from the reference.
pub const MIO_VOICE_MODE_SYSTEM: &str = "You are MIO, an AI assistant capable of understanding images, text, videos, and speech, and generating speech. Please respond to the user with speech only, starting with <spch> and ending with </spch>.";
/// What starts the assistant's turn (the generation prompt).
pub const ASSISTANT_STARTER: &str = "<|im_start|>assistant\n";
/// What starts a user turn.
pub const USER_STARTER: &str = "<|im_start|>user\n";
/// The stop word of the Instruct model.
pub const STOP_WORD: &str = "<|im_end|>";

/// Which system prompt the template uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// [`MIO_STD_MODE_SYSTEM`].
    Std,
    /// [`MIO_VOICE_MODE_SYSTEM`].
    Voice,
    /// The content of the first message, which must be a system message.
    Custom,
}

impl std::str::FromStr for ChatMode {
    type Err = Error;

    /// `std`, `voice` or `custom`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "std" => Ok(Self::Std),
            "voice" => Ok(Self::Voice),
            "custom" => Ok(Self::Custom),
            _ => Err(Error::InvalidArgument(format!(
                "unknown chat mode {s:?} (std, voice or custom)"
            ))),
        }
    }
}

/// Author of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System prompt (used only in custom mode).
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One chat message; `content` may hold `<image_placeholder_N>` / `<speech_placeholder_N>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Author.
    pub role: Role,
    /// Text, with media placeholders.
    pub content: String,
}

impl Message {
    /// A message of `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A conversation as JSON: `{"messages": [{"role", "content"}], "images": [paths],
/// "speech": [paths]}`; image `i` fills `<image_placeholder_i>`, speech `j` fills
/// `<speech_placeholder_j>`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Conversation {
    /// The turns.
    pub messages: Vec<Message>,
    /// Image files, in placeholder order.
    #[serde(default)]
    pub images: Vec<PathBuf>,
    /// Speech files, in placeholder order.
    #[serde(default)]
    pub speech: Vec<PathBuf>,
}

impl Conversation {
    /// Parses a conversation from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Json {
            path: PathBuf::from("<conversation>"),
            message: e.to_string(),
        })
    }

    /// Reads a conversation JSON file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// `apply_chat_template(..., tokenize=False, add_bos=False)`: the ChatML string of one
/// conversation, without `<|startoftext|>`.
pub fn render_chat(
    messages: &[Message],
    mode: ChatMode,
    add_generation_prompt: bool,
) -> Result<String> {
    let system = match mode {
        ChatMode::Std => MIO_STD_MODE_SYSTEM,
        ChatMode::Voice => MIO_VOICE_MODE_SYSTEM,
        ChatMode::Custom => match messages.first() {
            Some(m) if m.role == Role::System => m.content.as_str(),
            _ => {
                return Err(Error::InvalidArgument(
                    "in custom mode, the first message must be the system".into(),
                ))
            }
        },
    };
    let mut out = format!("<|im_start|>system\n{system}<|im_end|>\n");
    for m in messages {
        match m.role {
            Role::User => out.push_str(&format!("{USER_STARTER}{}<|im_end|>\n", m.content)),
            Role::Assistant => {
                out.push_str(&format!("{ASSISTANT_STARTER}{}<|im_end|>\n", m.content))
            }
            Role::System => {}
        }
    }
    if add_generation_prompt {
        out.push_str(ASSISTANT_STARTER);
    } else {
        out.pop();
    }
    Ok(out)
}

/// Replaces `<image_placeholder_i>` by `images[i]` and `<speech_placeholder_j>` by
/// `speech[j]` (every occurrence, images first, in index order).
pub fn resolve_placeholders(text: &str, images: &[String], speech: &[String]) -> String {
    let mut out = text.to_string();
    for (i, s) in images.iter().enumerate() {
        out = out.replace(&format!("<image_placeholder_{i}>"), s);
    }
    for (j, s) in speech.iter().enumerate() {
        out = out.replace(&format!("<speech_placeholder_{j}>"), s);
    }
    out
}

/// A left-padded batch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PaddedBatch {
    /// Rows padded on the left with the pad id to the longest row.
    pub input_ids: Vec<Vec<u32>>,
    /// 0 on padding, 1 on real tokens.
    pub attention_mask: Vec<Vec<u8>>,
}

impl TextTokenizer {
    /// `apply_chat_template(..., tokenize=False)` with `add_bos=True`: the template string
    /// with `<|startoftext|>` and the placeholders left in.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        mode: ChatMode,
        add_generation_prompt: bool,
    ) -> Result<String> {
        Ok(format!(
            "{}{}",
            self.bos_token(),
            render_chat(messages, mode, add_generation_prompt)?
        ))
    }

    /// `MIOTokenizer.__call__` on one text: placeholders resolved with the given media
    /// strings, `<|startoftext|>` prepended when `add_bos` and not already there. Returns the
    /// resolved string.
    pub fn resolve_prompt(
        &self,
        text: &str,
        images: &[String],
        speech: &[String],
        add_bos: bool,
    ) -> String {
        let resolved = resolve_placeholders(text, images, speech);
        if add_bos && !resolved.starts_with(self.bos_token()) {
            format!("{}{resolved}", self.bos_token())
        } else {
            resolved
        }
    }

    /// `MIOTokenizer.__call__` on one text: the ids of [`TextTokenizer::resolve_prompt`].
    pub fn encode_prompt(
        &self,
        text: &str,
        images: &[String],
        speech: &[String],
        add_bos: bool,
    ) -> Result<Vec<u32>> {
        self.encode(&self.resolve_prompt(text, images, speech, add_bos))
    }

    /// `apply_chat_template(..., tokenize=True)`: template, media, `<|startoftext|>`, ids.
    pub fn encode_chat(
        &self,
        messages: &[Message],
        mode: ChatMode,
        add_generation_prompt: bool,
        images: &[String],
        speech: &[String],
    ) -> Result<Vec<u32>> {
        let text = render_chat(messages, mode, add_generation_prompt)?;
        self.encode_prompt(&text, images, speech, true)
    }

    /// Left-pads rows with the pad id (`padding=True`, `padding_side="left"`).
    pub fn pad_left(&self, rows: &[Vec<u32>]) -> PaddedBatch {
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.pad_id();
        let mut batch = PaddedBatch::default();
        for row in rows {
            let n = width - row.len();
            let mut ids = vec![pad; n];
            ids.extend_from_slice(row);
            let mut mask = vec![0u8; n];
            mask.extend(std::iter::repeat_n(1u8, row.len()));
            batch.input_ids.push(ids);
            batch.attention_mask.push(mask);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn template_shapes() {
        let msgs = vec![
            Message::new(Role::System, "S"),
            Message::new(Role::User, "hi"),
            Message::new(Role::Assistant, "yo"),
        ];
        assert_eq!(
            render_chat(&msgs, ChatMode::Custom, true).unwrap(),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n"
        );
        let no_prompt = render_chat(&msgs[1..2], ChatMode::Std, false).unwrap();
        assert!(no_prompt.ends_with("<|im_start|>user\nhi<|im_end|>"));
        assert!(render_chat(&msgs[1..], ChatMode::Custom, true).is_err());
        assert_eq!(
            render_chat(&[], ChatMode::Voice, false).unwrap(),
            format!("<|im_start|>system\n{MIO_VOICE_MODE_SYSTEM}<|im_end|>")
        );
    }

    #[test]
    fn placeholders() {
        let s = "a <image_placeholder_1> b <image_placeholder_0><speech_placeholder_0> <image_placeholder_10> <speech_placeholder_1>";
        let out = resolve_placeholders(s, &["I0".into(), "I1".into()], &["S0".into()]);
        assert_eq!(
            out,
            "a I1 b I0S0 <image_placeholder_10> <speech_placeholder_1>"
        );
    }

    #[test]
    fn conversation_json() {
        let c = Conversation::from_json(
            r#"{"messages": [{"role": "user", "content": "x"}], "images": ["a.png"]}"#,
        )
        .unwrap();
        assert_eq!(c.messages, vec![Message::new(Role::User, "x")]);
        assert_eq!((c.images.len(), c.speech.len()), (1, 0));
        assert!(
            Conversation::from_json(r#"{"messages": [{"role": "robot", "content": "x"}]}"#)
                .is_err()
        );
    }
}
