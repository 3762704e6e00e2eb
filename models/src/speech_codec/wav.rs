//! Minimal RIFF/WAVE reader and writer, reading as `torchaudio.load` does
//! (`normalize=True`): integer PCM scaled to [-1, 1) by its full scale (int16 / 32768,
//! int32 / 2³¹, 24-bit / 2²³, uint8 (x - 128) / 128), IEEE float kept as is, samples laid
//! out `(channels, frames)`.
//!
//! Supported: formats 1 (PCM), 3 (IEEE float) and 0xFFFE (extensible with a PCM or float
//! sub-format). Writing produces mono or multichannel 32-bit float WAV (as
//! `scipy.io.wavfile.write` of a float32 array) or 16-bit PCM.

use std::path::Path;

use crate::{Error, Result};

/// Decoded audio: `samples[channel][frame]` in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// One vector per channel, all the same length.
    pub samples: Vec<Vec<f32>>,
}

impl WavAudio {
    /// Frames per channel.
    pub fn len(&self) -> usize {
        self.samples.first().map_or(0, Vec::len)
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mean of the channels as one channel (the codec takes mono input; upstream
    /// refuses multichannel audio, so callers downmix explicitly).
    pub fn to_mono(&self) -> WavAudio {
        let n = self.len();
        let c = self.samples.len().max(1) as f32;
        let mono = (0..n)
            .map(|i| {
                self.samples
                    .iter()
                    .map(|ch| ch.get(i).copied().unwrap_or(0.0))
                    .sum::<f32>()
                    / c
            })
            .collect();
        WavAudio {
            sample_rate: self.sample_rate,
            samples: vec![mono],
        }
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::Audio(message.into())
}

fn u16_at(b: &[u8], i: usize) -> Result<u16> {
    b.get(i..i + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated WAV header"))
}

fn u32_at(b: &[u8], i: usize) -> Result<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated WAV header"))
}

/// `(format, channels, sample_rate, bits)` of a `fmt ` chunk body.
fn parse_fmt(body: &[u8]) -> Result<(u16, usize, u32, u16)> {
    let mut format = u16_at(body, 0)?;
    let channels = u16_at(body, 2)? as usize;
    let rate = u32_at(body, 4)?;
    let bits = u16_at(body, 14)?;
    if format == 0xFFFE {
        format = u16_at(body, 24)?;
    }
    if channels == 0 || rate == 0 {
        return Err(bad("WAV header has no channels or a zero sample rate"));
    }
    Ok((format, channels, rate, bits))
}

/// One sample of `bytes` in `format`/`bits`, as a float.
fn sample(format: u16, bits: u16, s: &[u8]) -> Result<f32> {
    Ok(match (format, bits) {
        (1, 8) => (f32::from(s[0]) - 128.0) / 128.0,
        (1, 16) => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32768.0,
        (1, 24) => {
            let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
            v as f32 / 8_388_608.0
        }
        (1, 32) => i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0,
        (3, 32) => f32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        (3, 64) => f64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]) as f32,
        _ => {
            return Err(bad(format!(
                "unsupported WAV encoding (format {format}, {bits} bits)"
            )))
        }
    })
}

/// Parses a WAV file held in memory.
pub fn parse_wav(bytes: &[u8]) -> Result<WavAudio> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let mut pos = 12;
    let mut fmt = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4)? as usize;
        let start = pos + 8;
        let end = start.saturating_add(size).min(bytes.len());
        if id == b"fmt " {
            fmt = Some(parse_fmt(&bytes[start..end])?);
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.ok_or_else(|| bad("WAV data chunk before its fmt chunk"))?;
            return decode_data(&bytes[start..end], format, channels, rate, bits);
        }
        pos = start.saturating_add(size).saturating_add(size & 1);
    }
    Err(bad("WAV file has no data chunk"))
}

fn decode_data(
    data: &[u8],
    format: u16,
    channels: usize,
    sample_rate: u32,
    bits: u16,
) -> Result<WavAudio> {
    let width = usize::from(bits / 8);
    if width == 0 || !bits.is_multiple_of(8) {
        return Err(bad(format!("unsupported WAV sample width {bits} bits")));
    }
    let frame = width * channels;
    let n = data.len() / frame;
    let mut samples = vec![Vec::with_capacity(n); channels];
    for f in data.chunks_exact(frame) {
        for (c, s) in f.chunks_exact(width).enumerate() {
            samples[c].push(sample(format, bits, s)?);
        }
    }
    Ok(WavAudio {
        sample_rate,
        samples,
    })
}

/// Reads a WAV file (see the module doc for the scaling).
pub fn read_wav(path: impl AsRef<Path>) -> Result<WavAudio> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_wav(&bytes).map_err(|e| match e {
        Error::Audio(m) => Error::Audio(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Sample encoding of [`wav_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// IEEE float32 (what the reference `scipy.io.wavfile.write` produced).
    Float32,
    /// Signed 16-bit PCM, clamped and rounded.
    Pcm16,
}

/// A WAV file of `audio` in `encoding`.
pub fn wav_bytes(audio: &WavAudio, encoding: WavEncoding) -> Result<Vec<u8>> {
    let channels = audio.samples.len();
    let n = audio.len();
    if channels == 0 || audio.samples.iter().any(|c| c.len() != n) {
        return Err(bad("audio to write needs channels of equal length"));
    }
    let (format, width): (u16, usize) = match encoding {
        WavEncoding::Float32 => (3, 4),
        WavEncoding::Pcm16 => (1, 2),
    };
    let data_len = n * channels * width;
    let mut out = Vec::with_capacity(44 + data_len);
    let block = (channels * width) as u32;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&(channels as u16).to_le_bytes());
    out.extend_from_slice(&audio.sample_rate.to_le_bytes());
    out.extend_from_slice(&(audio.sample_rate * block).to_le_bytes());
    out.extend_from_slice(&(block as u16).to_le_bytes());
    out.extend_from_slice(&((width * 8) as u16).to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for i in 0..n {
        for ch in &audio.samples {
            let v = ch[i];
            match encoding {
                WavEncoding::Float32 => out.extend_from_slice(&v.to_le_bytes()),
                WavEncoding::Pcm16 => {
                    let q = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                    out.extend_from_slice(&q.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// Writes `audio` to `path` in `encoding`.
pub fn write_wav(path: impl AsRef<Path>, audio: &WavAudio, encoding: WavEncoding) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, wav_bytes(audio, encoding)?).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_scales_like_torchaudio() {
        let audio = WavAudio {
            sample_rate: 16000,
            samples: vec![vec![0.0, 0.5, -1.0, 0.25]],
        };
        let pcm = parse_wav(&wav_bytes(&audio, WavEncoding::Pcm16).unwrap()).unwrap();
        assert_eq!(pcm.samples[0], [0.0, 0.5, -1.0, 0.25]);
        let f = parse_wav(&wav_bytes(&audio, WavEncoding::Float32).unwrap()).unwrap();
        assert_eq!(f, audio);
    }

    #[test]
    fn downmixes() {
        let stereo = WavAudio {
            sample_rate: 8000,
            samples: vec![vec![1.0, 0.0], vec![0.0, 0.5]],
        };
        assert_eq!(stereo.to_mono().samples, [vec![0.5, 0.25]]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse_wav(b"RIFF"), Err(Error::Audio(_))));
        assert!(matches!(
            parse_wav(b"RIFF\0\0\0\0WAVE"),
            Err(Error::Audio(_))
        ));
    }
}
