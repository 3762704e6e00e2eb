//! The creator modes of a chat turn: image, video, guide (visual guidelines) and edit.
//!
//! Each mode wraps the user's last message in a prompt, picks a decoding preset and may
//! prime the answer with `<image>` so that it is a picture by construction (as voice mode
//! primes `<spch>`). Prompts and presets come from the reference `infer.py` (MIO-Team/MIO):
//! * image: `"Please generate an image according to the caption.\n{caption}"` (its
//!   `imagen_conversations_inst`), preset image generation (beam 5, repetition penalty
//!   1.15), primed with `<image>`;
//! * video: ``"Please generate a video for ``{description}''"`` (`vid_gen_conversations_inst`),
//!   preset video generation (sampling, top-p 0.7, repetition penalty 1.15), primed with
//!   `<image>`: the frames are the answer's image blocks, in order;
//! * guide: `"{request} Please provide a step-by-step guide in the form of a visual story."`
//!   (`mm_inter_conversations_inst`, "How to make a cake? Please provide …"), preset
//!   multimodal interleaved generation (sampling, top-p 0.7, repetition penalty 1.15). The
//!   answer alternates text and pictures (`… text <image> . text <image> .`, see the
//!   reference's `generated_images/inst_multimodal_interleaved/content_1.txt`): each picture
//!   closes a step whose text is what came before it;
//! * edit: the reference has no editing prompt (its README lists image editing as an ability
//!   only); ours, in the style of the image prompt, is
//!   `"Please edit the image according to the instruction.\n<image_placeholder_N>\n{instruction}"`,
//!   preset image generation, primed with `<image>`.

use super::types::{ChatMode, Conversation, Event, GuideStep, OutputSegment, Role, TemplateMode};
use crate::generation::{Task, IMAGE_BLOCK_LEN};
use crate::text::MioVocab;
use crate::{Error, Result};

/// The image-generation prompt of `infer.py` (the caption follows).
pub const IMAGE_PROMPT: &str = "Please generate an image according to the caption.\n";
/// The guide (interleaved generation) suffix of `infer.py`, after the request.
pub const GUIDE_SUFFIX: &str =
    " Please provide a step-by-step guide in the form of a visual story.";
/// Our editing prompt (the reference has none); the image and the instruction follow.
pub const EDIT_PROMPT: &str = "Please edit the image according to the instruction.\n";

/// How a mode runs: system prompt, preset and the tokens the answer starts with.
pub(crate) struct ModePlan {
    /// Which system prompt.
    pub template: TemplateMode,
    /// Decoding preset.
    pub task: Task,
    /// Tokens put at the start of the answer.
    pub primed: Vec<u32>,
}

/// The decoding preset (`infer.py` task) a chat turn in `mode` uses.
pub fn chat_task(mode: ChatMode) -> Task {
    match mode {
        ChatMode::Chat => Task::Text,
        ChatMode::Voice => Task::SpeechGeneration,
        ChatMode::Image | ChatMode::Edit => Task::ImageGeneration,
        ChatMode::Video => Task::VideoGeneration,
        ChatMode::Guide => Task::Interleaved,
    }
}

/// The plan of `mode`.
pub(crate) fn plan(mode: ChatMode, vocab: &MioVocab) -> ModePlan {
    let (template, task, primed) = match mode {
        ChatMode::Chat => (TemplateMode::Std, Task::Text, vec![]),
        ChatMode::Voice => (
            TemplateMode::Voice,
            Task::SpeechGeneration,
            vec![vocab.speech_start],
        ),
        ChatMode::Image | ChatMode::Edit => (
            TemplateMode::Std,
            Task::ImageGeneration,
            vec![vocab.image_start],
        ),
        ChatMode::Video => (
            TemplateMode::Std,
            Task::VideoGeneration,
            vec![vocab.image_start],
        ),
        ChatMode::Guide => (TemplateMode::Std, Task::Interleaved, vec![]),
    };
    debug_assert_eq!(task, chat_task(mode));
    ModePlan {
        template,
        task,
        primed,
    }
}

/// An answer primed with `<image>` must have room for the rest of the picture.
pub(crate) fn check_budget(primed: &[u32], vocab: &MioVocab, max_new_tokens: usize) -> Result<()> {
    if primed.contains(&vocab.image_start) && max_new_tokens <= IMAGE_BLOCK_LEN as usize {
        return Err(Error::InvalidArgument(format!(
            "a picture takes {} tokens: max_new_tokens {max_new_tokens} is too small",
            IMAGE_BLOCK_LEN + 1,
        )));
    }
    Ok(())
}

/// The user's last message wrapped in the prompt of `mode` (unchanged for chat and voice).
pub fn creator_prompt(mode: ChatMode, message: &str) -> Result<String> {
    let text = message.trim();
    Ok(match mode {
        ChatMode::Chat | ChatMode::Voice => message.to_string(),
        ChatMode::Image => format!("{IMAGE_PROMPT}{text}"),
        ChatMode::Video => format!("Please generate a video for ``{text}''"),
        ChatMode::Guide => format!("{text}{GUIDE_SUFFIX}"),
        ChatMode::Edit => {
            let tags = image_tags(text);
            let [tag] = tags.as_slice() else {
                return Err(Error::InvalidArgument(format!(
                    "edit mode takes exactly one image in the message, got {}",
                    tags.len()
                )));
            };
            let instruction = text.replace(tag.as_str(), " ");
            let instruction = instruction.split_whitespace().collect::<Vec<_>>().join(" ");
            if instruction.is_empty() {
                return Err(Error::InvalidArgument(
                    "edit mode needs an instruction besides the image".into(),
                ));
            }
            format!("{EDIT_PROMPT}{tag}\n{instruction}")
        }
    })
}

/// The `<image_placeholder_N>` tags of `text`, in order.
fn image_tags(text: &str) -> Vec<String> {
    const OPEN: &str = "<image_placeholder_";
    let mut tags = vec![];
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with('>') {
            tags.push(format!("{OPEN}{}>", &after[..digits]));
        }
        rest = after;
    }
    tags
}

/// `conversation` with its last user message in the prompt of `mode`.
pub(crate) fn rewrite(conversation: &Conversation, mode: ChatMode) -> Result<Conversation> {
    let mut out = conversation.clone();
    let last = out
        .messages
        .iter_mut()
        .rev()
        .find(|m| m.role == Role::User)
        .ok_or(Error::EmptyPrompt)?;
    last.content = creator_prompt(mode, &last.content)?;
    Ok(out)
}

/// A step's text: the answer text before its picture, without the `.` the model puts
/// after pictures and without surrounding space.
fn step_text(raw: &str) -> String {
    raw.trim()
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim()
        .to_string()
}

/// The steps of a guide answer: each picture closes a step (its text is the text before it);
/// trailing text without a picture is a last step without one; empty steps are dropped.
pub fn guide_steps(segments: &[OutputSegment]) -> Vec<GuideStep> {
    let mut stream = GuideStream::default();
    let mut steps = vec![];
    for seg in segments {
        match seg {
            OutputSegment::Text { text } => stream.text.push_str(text),
            OutputSegment::Image { .. } => steps.extend(stream.close(Some(seg))),
            OutputSegment::Speech { .. } => {}
        }
    }
    steps.extend(stream.close(None));
    steps
}

/// Builds guide steps from the streamed events of a turn.
#[derive(Debug, Default)]
pub(crate) struct GuideStream {
    text: String,
    next: usize,
}

impl GuideStream {
    /// Feeds one event; returns the step a picture just completed.
    pub(crate) fn observe(&mut self, event: &Event) -> Option<GuideStep> {
        match event {
            Event::Token { text, .. } => {
                self.text.push_str(text);
                None
            }
            Event::Segment(seg @ OutputSegment::Image { .. }) => self.close(Some(seg)),
            _ => None,
        }
    }

    /// Ends the current step with `image` (or, at the end of the answer, without one).
    pub(crate) fn close(&mut self, image: Option<&OutputSegment>) -> Option<GuideStep> {
        let text = step_text(&std::mem::take(&mut self.text));
        let (codes, image) = match image {
            Some(OutputSegment::Image { codes, image }) => (codes.clone(), image.clone()),
            _ => (vec![], None),
        };
        if text.is_empty() && codes.is_empty() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(GuideStep {
            index,
            text,
            codes,
            image,
        })
    }
}

#[cfg(test)]
#[path = "creator_tests.rs"]
mod tests;
