//! Audio files in: wav, flac, mp3 and ogg/vorbis decoded with symphonia, downmixed to mono
//! f32. Integer PCM is scaled as `torchaudio.load` does (int16 / 32768), so a 16-bit wav
//! gives the reference's samples exactly.

use std::fs::File;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use symphonia::core::audio::SampleBuffer;

use super::resample::downmix;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// A decoded clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels of the file before downmixing.
    pub channels: usize,
}

impl Clip {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

/// Longest clip we accept (one hour at 48 kHz), so a corrupt header cannot exhaust memory.
const MAX_SAMPLES: usize = 48_000 * 3600;

/// Decodes `path` to mono f32.
pub fn decode_file(path: &Path) -> Result<Clip> {
    let file = File::open(path)
        .with_context(|| format!("cannot open the audio file {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), ext, &path.display().to_string())
}

/// Decodes an audio file held in memory (`ext`, e.g. `wav` or `mp3`, is a hint; `name`
/// appears in errors).
pub fn decode_bytes(bytes: Vec<u8>, ext: Option<&str>, name: &str) -> Result<Clip> {
    decode_source(Box::new(std::io::Cursor::new(bytes)), ext, name)
}

fn decode_source(
    source: Box<dyn symphonia::core::io::MediaSource>,
    ext: Option<&str>,
    name: &str,
) -> Result<Clip> {
    let path = Path::new(name);
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            anyhow!(
                "{} is not a supported audio file (wav, flac, mp3, ogg): {e}",
                path.display()
            )
        })?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| anyhow!("{} holds no audio track", path.display()))?;
    let track_id = track.id;
    let sample_rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| anyhow!("{} does not state its sample rate", path.display()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| anyhow!("cannot decode {}: {e}", path.display()))?;
    let mut samples = Vec::new();
    let mut channels = 0;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => bail!("{} is corrupt: {e}", path.display()),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(e)) => bail!("{} is corrupt: {e}", path.display()),
            Err(e) => bail!("cannot decode {}: {e}", path.display()),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        downmix(buf.samples(), channels, &mut samples);
        if samples.len() > MAX_SAMPLES {
            bail!("{} is longer than an hour; cut it first", path.display());
        }
    }
    if samples.is_empty() {
        bail!("{} holds no audio samples", path.display());
    }
    Ok(Clip {
        samples,
        sample_rate,
        channels,
    })
}
