//! Audio file decoding: every supported container gives mono f32 at its own rate; a 16-bit
//! wav equals `torchaudio.load` (int16 / 32768) exactly; bad files are one clear error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use mio_runtime::audio::{decode_file, write_wav};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// int16 samples of a canonical 44-byte-header PCM wav, scaled as torchaudio does.
fn torchaudio_like(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let data = bytes.windows(4).position(|w| w == b"data").unwrap() + 8;
    bytes[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect()
}

#[test]
fn sixteen_bit_wav_matches_torchaudio_scaling_exactly() {
    let path = fixtures().join("golden/inputs/speech_16k.wav");
    let clip = decode_file(&path).unwrap();
    assert_eq!((clip.sample_rate, clip.channels), (16_000, 1));
    assert_eq!(clip.samples, torchaudio_like(&path));
}

#[test]
fn every_container_decodes_to_mono() {
    let reference = decode_file(&fixtures().join("golden/inputs/speech_22k.wav")).unwrap();
    for (name, rate) in [
        ("audio/stereo_44k.flac", 44_100),
        ("audio/stereo_44k.mp3", 44_100),
        ("audio/mono_22k.ogg", 22_050),
        ("audio/stereo_48k_24bit.wav", 48_000),
    ] {
        let clip = decode_file(&fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(clip.sample_rate, rate, "{name}");
        let secs = clip.duration_s();
        assert!(
            (secs - reference.duration_s()).abs() < 0.1,
            "{name}: {secs} s"
        );
        let peak = clip.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05 && peak <= 1.0, "{name}: peak {peak}");
    }
}

#[test]
fn bad_files_are_clear_errors() {
    for name in [
        "audio/garbage.mp3",
        "audio/truncated.wav",
        "does-not-exist.wav",
    ] {
        let path = fixtures().join(name);
        match decode_file(&path) {
            Err(e) => assert!(
                format!("{e:#}").contains(path.file_name().unwrap().to_str().unwrap()),
                "{e:#}"
            ),
            // A truncated wav still holds its first samples: usable, never a panic.
            Ok(clip) => assert!(name.contains("truncated") && !clip.samples.is_empty()),
        }
    }
}

#[test]
fn wav_written_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let samples: Vec<f32> = (0..1600).map(|i| (i as f32 / 50.0).sin() * 0.5).collect();
    write_wav(&path, &samples, 16_000).unwrap();
    let back = decode_file(&path).unwrap();
    assert_eq!(back.sample_rate, 16_000);
    assert_eq!(back.samples.len(), samples.len());
    assert!(back
        .samples
        .iter()
        .zip(&samples)
        .all(|(a, b)| (a - b).abs() < 1.0 / 16_000.0));
}
