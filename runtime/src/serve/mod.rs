//! `mio serve`: an OpenAI-compatible HTTP server over the engine worker.

mod api;
mod error;
mod handlers;
mod queue;
mod server;

pub use server::{run, ServeOptions, Server};
