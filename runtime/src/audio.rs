//! Audio in and out at the runtime's edge: file decoding (and, with the speech issue,
//! capture and playback behind traits with file-backed doubles).

mod decode;
mod wav;

pub use decode::{decode_file, Clip};
pub use wav::write_wav;
