//! The microphone button: push-to-talk (record between press and release) and hands-free
//! (the runtime's VAD ends an utterance after an adjustable silence) over the runtime's
//! audio capture. Each utterance becomes an audio attachment in the media folder.
//!
//! Test double: with `MIO_TEST_MIC_FILE=PATH` set, the sound file PATH is played as the
//! microphone (the runtime's `FileSource`, in real time); the UI labels it as a test double.
//! Without it the real default microphone is opened; with none, one clear error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio_runtime::audio::{
    frame_db, AudioSource, ChunkOptions, CpalMicrophone, FileSource, MicrophoneConfig, Pacing,
    PushToTalk, Utterance, Vad, VadConfig,
};

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::MediaDir;
use crate::ipc::{Attachment, MediaKind};
use crate::models_ipc::{MicArgs, MicEvent};

/// The environment variable that selects the file-backed microphone double.
pub const TEST_MIC_ENV: &str = "MIO_TEST_MIC_FILE";

/// Opens the microphone (or its file double when [`TEST_MIC_ENV`] is set); returns it and
/// whether it is the double.
pub fn open_source() -> AppResult<(Box<dyn AudioSource>, bool)> {
    let chunks = ChunkOptions::default();
    if let Some(path) = std::env::var_os(TEST_MIC_ENV) {
        let src = FileSource::open(std::path::Path::new(&path), chunks, Pacing::RealTime)
            .map_err(|e| AppError::from_chain(ErrorCode::Device, &e))?;
        return Ok((Box::new(src), true));
    }
    open_microphone(None).map(|m| (m, false))
}

/// Opens the microphone `device` (`None`: the default input).
pub fn open_microphone(device: Option<&str>) -> AppResult<Box<dyn AudioSource>> {
    let cfg = MicrophoneConfig {
        device: device.map(str::to_string),
        chunks: ChunkOptions::default(),
    };
    match CpalMicrophone::open(cfg) {
        Ok(m) => Ok(Box::new(m)),
        Err(e) => Err(AppError::new(
            ErrorCode::Device,
            format!(
                "no microphone to record from: {}",
                mio_runtime::commands::one_sentence(&e)
            ),
        )),
    }
}

fn attachment(media: &MediaDir, u: &Utterance, rate: u32, n: usize) -> AppResult<Attachment> {
    Ok(Attachment {
        kind: MediaKind::Audio,
        segment: media.write_wav("mic", &u.samples, rate)?,
        name: format!("recording {n}.wav"),
    })
}

/// Records from `source` until `stop` is set (or the source ends), sending levels and one
/// attachment per utterance to `sink`; `Stopped` is always the last event.
pub fn record(
    mut source: Box<dyn AudioSource>,
    args: &MicArgs,
    stop: &AtomicBool,
    media: &MediaDir,
    sink: &mut dyn FnMut(MicEvent),
) -> AppResult<()> {
    let rate = source.sample_rate();
    let rx = source
        .start()
        .map_err(|e| AppError::from_chain(ErrorCode::Device, &e))?;
    let mut vad = if args.hands_free {
        let cfg = VadConfig {
            sample_rate: rate,
            silence_ms: args.silence_ms.clamp(100, 10_000),
            ..VadConfig::default()
        };
        Some(Vad::new(cfg).map_err(|e| AppError::new(ErrorCode::InvalidInput, e.to_string()))?)
    } else {
        None
    };
    let mut ptt = PushToTalk::new();
    ptt.start();
    let mut n = 0;
    let mut result = Ok(());
    let mut emit = |u: Option<Utterance>, sink: &mut dyn FnMut(MicEvent)| -> AppResult<()> {
        if let Some(u) = u {
            n += 1;
            sink(MicEvent::Utterance {
                attachment: attachment(media, &u, rate, n)?,
                duration_s: u.samples.len() as f64 / f64::from(rate.max(1)),
            });
        }
        Ok(())
    };
    while !stop.load(Ordering::Relaxed) {
        let chunk = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(c) => c,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let speaking = match &mut vad {
            Some(v) => {
                for u in v.push(&chunk) {
                    result = result.and_then(|_| emit(Some(u), sink));
                }
                v.is_speaking()
            }
            None => {
                ptt.push(&chunk);
                true
            }
        };
        sink(MicEvent::Level {
            db: f64::from(frame_db(&chunk)),
            speaking,
        });
        if result.is_err() {
            break;
        }
    }
    source.stop();
    let last = match &mut vad {
        Some(v) => v.flush(),
        None => ptt.stop(),
    };
    result = result.and_then(|_| emit(last, sink));
    sink(MicEvent::Stopped);
    result
}

/// Starts recording on its own thread; `stop` ends it.
pub fn start(
    args: MicArgs,
    media: MediaDir,
    stop: Arc<AtomicBool>,
    mut sink: Box<dyn FnMut(MicEvent) + Send>,
) -> AppResult<bool> {
    let (source, double) = open_source()?;
    std::thread::Builder::new()
        .name("mio-mic".into())
        .spawn(move || {
            if let Err(e) = record(source, &args, &stop, &media, &mut *sink) {
                sink(MicEvent::Failed { error: e });
            }
        })
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot start a thread: {e}")))?;
    Ok(double)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use mio_runtime::audio::Clip;

    /// 0.5 s silence, 0.6 s of a loud tone, 1.5 s silence, at 16 kHz.
    fn clip() -> Clip {
        let rate = 16_000;
        let mut samples = vec![0.0f32; rate / 2];
        samples.extend((0..rate * 6 / 10).map(|i| (i as f32 * 0.06).sin() * 0.5));
        samples.extend(vec![0.0f32; rate * 3 / 2]);
        Clip {
            samples,
            sample_rate: rate as u32,
            channels: 1,
        }
    }

    fn run(
        hands_free: bool,
        stop_after: Option<Duration>,
    ) -> (Vec<MicEvent>, MediaDir, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let media = MediaDir::open(dir.path().join("media")).unwrap();
        let src = FileSource::from_clip(clip(), ChunkOptions::default(), Pacing::RealTime);
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(d) = stop_after {
            let s = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(d);
                s.store(true, Ordering::Relaxed);
            });
        }
        let args = MicArgs {
            hands_free,
            silence_ms: 400,
        };
        let mut events = vec![];
        record(Box::new(src), &args, &stop, &media, &mut |e| events.push(e)).unwrap();
        (events, media, dir)
    }

    fn utterances(events: &[MicEvent]) -> Vec<f64> {
        events
            .iter()
            .filter_map(|e| match e {
                MicEvent::Utterance { duration_s, .. } => Some(*duration_s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hands_free_cuts_the_utterance_at_the_silence() {
        let (events, _m, _d) = run(true, None);
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{u:?}");
        // The tone (0.6 s) plus the VAD's pre- and post-roll, not the trailing silence.
        assert!(u[0] > 0.5 && u[0] < 1.3, "{u:?}");
        assert!(matches!(events.last(), Some(MicEvent::Stopped)));
        assert!(events
            .iter()
            .any(|e| matches!(e, MicEvent::Level { speaking: true, .. })));
    }

    #[test]
    fn push_to_talk_records_until_released() {
        let (events, media, _d) = run(false, Some(Duration::from_millis(700)));
        let u = utterances(&events);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0] > 0.3 && u[0] < 1.2, "{u:?}");
        let Some(MicEvent::Utterance { attachment, .. }) = events
            .iter()
            .find(|e| matches!(e, MicEvent::Utterance { .. }))
        else {
            panic!()
        };
        let crate::ipc::Segment::Audio { file, .. } = &attachment.segment else {
            panic!()
        };
        assert!(media.resolve(file).unwrap().is_file());
    }

    #[test]
    fn a_missing_microphone_is_one_clear_error() {
        let err = open_microphone(Some("no such microphone 4d1f"))
            .err()
            .expect("opened a microphone that does not exist");
        assert_eq!(err.code, ErrorCode::Device);
        assert!(err.message.starts_with("no microphone"), "{}", err.message);
    }
}
