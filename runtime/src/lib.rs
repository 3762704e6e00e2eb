//! mio-runtime: the assistant around the engine (worker thread, sessions, CLI).

pub mod audio;
pub mod bench;
pub mod camera;
pub mod chat;
pub mod cli;
pub mod commands;
pub mod convert;
pub mod creator;
pub mod device;
pub mod engine_backend;
pub mod hub;
pub mod import;
pub mod info;
pub mod llamacpp;
pub mod media;
pub mod memory;
pub mod remote;
pub mod replay;
mod report;
pub mod serve;
pub mod video;
mod video_cmd;
pub mod worker;
