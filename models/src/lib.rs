//! mio-models: the MIO networks and everything model-side (tokenizers, LM, generation).
//!
//! Pure compute: no threads, no devices beyond candle's `Device`, no I/O other than
//! reading model files. The rest of the workspace talks to [`engine`] only.

pub mod activation;
pub mod convert;
pub mod cpu_conv;
pub mod engine;
pub mod error;
pub mod generation;
pub mod image_decoder;
pub mod image_tokenizer;
pub mod imported;
pub mod lm;
pub mod norm;
pub mod pickle;
pub mod release;
pub mod sgemm;
pub mod speech_codec;
pub mod text;
pub mod video;
pub mod weights_file;
pub mod winograd;

pub use error::{Error, Result};
