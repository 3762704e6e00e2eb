//! WAV out: mono 32-bit IEEE float (format 3), as the reference writes decoded speech with
//! `scipy.io.wavfile.write` of a float32 array: no rounding and no clipping of the model's
//! output (an untrained or unlucky decoder can exceed [-1, 1]). The bytes come from the
//! codec's own WAV writer; the file is written atomically.

use std::path::Path;

use anyhow::Result;
use mio_models::speech_codec::{wav_bytes, WavAudio, WavEncoding};

use crate::commands::write_atomic;

/// Writes mono `samples` at `sample_rate` as a 32-bit float WAV.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let audio = WavAudio {
        sample_rate,
        samples: vec![samples.to_vec()],
    };
    write_atomic(path, &wav_bytes(&audio, WavEncoding::Float32)?)
}
