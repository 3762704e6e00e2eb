//! WAV out: mono 32-bit IEEE float (format 3), as the reference writes decoded speech with
//! `scipy.io.wavfile.write` of a float32 array: no rounding and no clipping of the model's
//! output (an untrained or unlucky decoder can exceed [-1, 1]). Written atomically.

use std::path::Path;

use anyhow::{bail, Result};

use crate::commands::write_atomic;

/// Writes mono `samples` at `sample_rate` as a 32-bit float WAV.
pub fn write_wav(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let data_len = samples
        .len()
        .checked_mul(4)
        .filter(|n| *n <= u32::MAX as usize - 50);
    let Some(data_len) = data_len else {
        bail!("the clip is too long for a WAV file")
    };
    let mut bytes = Vec::with_capacity(58 + data_len);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(50 + data_len as u32).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&18u32.to_le_bytes());
    bytes.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&sample_rate.to_le_bytes());
    bytes.extend_from_slice(&(sample_rate * 4).to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&32u16.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    bytes.extend_from_slice(b"fact");
    bytes.extend_from_slice(&4u32.to_le_bytes());
    bytes.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&(data_len as u32).to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    write_atomic(path, &bytes)
}
