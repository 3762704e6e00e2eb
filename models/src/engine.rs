//! The one boundary the rest of the workspace uses: load options, plain-data [`Request`]s
//! and [`Event`]s, and [`Engine::run`]. Later issues extend the enums (image, speech,
//! video requests and events); the runtime never reaches past this file.

mod creator;
mod history;
mod media;
pub use media::LOADING_STAGE;
mod runner;
mod timed;
mod types;

pub use creator::{
    chat_task, creator_prompt, guide_steps, EDIT_PROMPT, GUIDE_SUFFIX, IMAGE_PROMPT,
};
pub use runner::{Engine, EngineInfo, ExternalLm};
pub use types::*;
