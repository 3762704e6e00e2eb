//! Audio out: the [`AudioSink`] trait, the speaker ([`CpalSpeaker`]) and its file-backed
//! double ([`FileSink`]).
//!
//! Clips arrive mono at any rate and are resampled at the edge to the device rate (linear,
//! see `resample.rs`). The speaker's stream lives on its own thread for the speaker's
//! lifetime; the caller's side only fills a shared queue, which the audio callback drains.
//! "Done" means the queue has been handed to the device (its own buffer, a few tens of
//! milliseconds, may still be sounding).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::devices::{find_device, no_sound_hint, DEVICE_TIMEOUT};
use super::resample::resample_linear;
use super::wav::write_wav;

/// Somewhere clips can be played.
pub trait AudioSink: Send {
    /// Rate the sink plays at; clips are converted to it.
    fn device_rate(&self) -> u32;
    /// Queues a mono clip after whatever is playing; returns at once.
    fn play(&mut self, samples: &[f32], sample_rate: u32) -> Result<()>;
    /// Drops everything playing or queued.
    fn stop(&mut self);
    /// Blocks until everything queued has played.
    fn wait(&mut self) -> Result<()>;
    /// True while something is playing.
    fn is_playing(&self) -> bool;
}

/// Which speaker to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// Device name (exact or a unique substring); `None` for the default output.
    pub device: Option<String>,
}

/// Samples waiting for the device, shared with the audio callback.
type Shared = Arc<(Mutex<VecDeque<f32>>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, VecDeque<f32>> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// The speaker, through cpal. The stream lives on its own thread.
pub struct CpalSpeaker {
    name: String,
    rate: u32,
    queue: Shared,
    errors: Arc<AtomicU64>,
    thread: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl CpalSpeaker {
    /// Opens the device and starts its (silent) stream on a dedicated thread.
    pub fn open(cfg: SpeakerConfig) -> Result<Self> {
        let queue: Shared = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(String, u32)>>();
        let (q, errs) = (queue.clone(), errors.clone());
        let handle = std::thread::Builder::new()
            .name("mio-speaker".into())
            .spawn(
                move || match open_output_stream(cfg.device.as_deref(), q, errs) {
                    Ok((stream, name, rate)) => {
                        let _ = ready_tx.send(Ok((name, rate)));
                        let _ = stop_rx.recv();
                        drop(stream);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                },
            )
            .context("cannot spawn the speaker thread")?;
        let (name, rate) = match ready_rx.recv_timeout(DEVICE_TIMEOUT) {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => bail!(
                "opening the speaker: the sound system did not answer within {} s",
                DEVICE_TIMEOUT.as_secs()
            ),
        };
        Ok(Self {
            name,
            rate,
            queue,
            errors,
            thread: Some((stop_tx, handle)),
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Errors the stream reported (an unplugged device, an underrun).
    pub fn stream_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl AudioSink for CpalSpeaker {
    fn device_rate(&self) -> u32 {
        self.rate
    }

    fn play(&mut self, samples: &[f32], sample_rate: u32) -> Result<()> {
        let converted = resample_linear(samples, sample_rate, self.rate);
        lock(&self.queue).extend(converted);
        Ok(())
    }

    fn stop(&mut self) {
        lock(&self.queue).clear();
        self.queue.1.notify_all();
    }

    fn wait(&mut self) -> Result<()> {
        let mut q = lock(&self.queue);
        let budget = Duration::from_secs_f64(q.len() as f64 / self.rate.max(1) as f64);
        let deadline = Instant::now() + budget + Duration::from_secs(2);
        while !q.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the speaker {} stopped playing", self.name);
            }
            q = match self.queue.1.wait_timeout(q, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        Ok(())
    }

    fn is_playing(&self) -> bool {
        !lock(&self.queue).is_empty()
    }
}

impl Drop for CpalSpeaker {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.thread.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// Builds and plays the output stream (on the speaker thread).
fn open_output_stream(
    name: Option<&str>,
    queue: Shared,
    errors: Arc<AtomicU64>,
) -> Result<(cpal::Stream, String, u32)> {
    let device = find_device(false, name)?;
    let name = device.to_string();
    let supported = device
        .default_output_config()
        .map_err(|e| anyhow!("the speaker {name} cannot play: {}", no_sound_hint(&e)))?;
    let config = supported.config();
    let rate = config.sample_rate;
    let stream = match supported.sample_format() {
        SampleFormat::F32 => build_output::<f32>(&device, config, queue, errors),
        SampleFormat::I16 => build_output::<i16>(&device, config, queue, errors),
        SampleFormat::U16 => build_output::<u16>(&device, config, queue, errors),
        SampleFormat::I32 => build_output::<i32>(&device, config, queue, errors),
        SampleFormat::F64 => build_output::<f64>(&device, config, queue, errors),
        other => bail!("the speaker {name} plays {other:?} samples, which we do not write"),
    }?;
    stream
        .play()
        .map_err(|e| anyhow!("the speaker {name} cannot start: {}", no_sound_hint(&e)))?;
    Ok((stream, name, rate))
}

fn build_output<T>(
    device: &cpal::Device,
    config: StreamConfig,
    queue: Shared,
    errors: Arc<AtomicU64>,
) -> Result<cpal::Stream>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let channels = usize::from(config.channels.max(1));
    device
        .build_output_stream::<T, _, _>(
            config,
            move |data: &mut [T], _| {
                let mut q = lock(&queue);
                let had = !q.is_empty();
                for frame in data.chunks_mut(channels) {
                    let s = T::from_sample_(q.pop_front().unwrap_or(0.0));
                    frame.fill(s);
                }
                if had && q.is_empty() {
                    queue.1.notify_all();
                }
            },
            move |_| {
                errors.fetch_add(1, Ordering::Relaxed);
            },
            Some(DEVICE_TIMEOUT),
        )
        .map_err(|e| anyhow!("cannot open the speaker {device}: {}", no_sound_hint(&e)))
}

/// What a [`FileSink`] played, on the sink's clock (time since it was made).
#[derive(Debug, Clone, PartialEq)]
pub struct PlayRecord {
    /// The WAV holding the clip as the device would have got it.
    pub path: PathBuf,
    /// Samples at the device rate.
    pub samples: usize,
    /// When `play` was called.
    pub queued_at: Duration,
    /// When it started sounding (after what was queued before it).
    pub starts_at: Duration,
    /// Its length.
    pub duration: Duration,
    /// When `stop` cut it short, if it did.
    pub stopped_at: Option<Duration>,
}

/// The speaker's file-backed double: writes each clip to a WAV at the device rate and
/// records when it would have played. With `realtime` it runs on the wall clock and `wait`
/// sleeps; otherwise its clock is virtual and `wait` jumps to the end at once.
pub struct FileSink {
    dir: PathBuf,
    rate: u32,
    realtime: bool,
    t0: Instant,
    virtual_now: Duration,
    busy_until: Duration,
    records: Vec<PlayRecord>,
}

impl FileSink {
    /// A sink writing into `dir` (created if missing) as a device at `device_rate` would.
    pub fn new(dir: &Path, device_rate: u32, realtime: bool) -> Result<Self> {
        if device_rate == 0 {
            bail!("the file sink needs a sample rate above zero");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            rate: device_rate,
            realtime,
            t0: Instant::now(),
            virtual_now: Duration::ZERO,
            busy_until: Duration::ZERO,
            records: Vec::new(),
        })
    }

    /// Everything played so far, in order.
    pub fn records(&self) -> &[PlayRecord] {
        &self.records
    }

    fn now(&self) -> Duration {
        if self.realtime {
            self.t0.elapsed()
        } else {
            self.virtual_now
        }
    }
}

impl AudioSink for FileSink {
    fn device_rate(&self) -> u32 {
        self.rate
    }

    fn play(&mut self, samples: &[f32], sample_rate: u32) -> Result<()> {
        let converted = resample_linear(samples, sample_rate, self.rate);
        let path = self
            .dir
            .join(format!("play-{:04}.wav", self.records.len() + 1));
        write_wav(&path, &converted, self.rate)?;
        let now = self.now();
        let duration = Duration::from_secs_f64(converted.len() as f64 / self.rate as f64);
        let starts_at = now.max(self.busy_until);
        self.busy_until = starts_at + duration;
        self.records.push(PlayRecord {
            path,
            samples: converted.len(),
            queued_at: now,
            starts_at,
            duration,
            stopped_at: None,
        });
        Ok(())
    }

    fn stop(&mut self) {
        let now = self.now();
        for r in &mut self.records {
            if r.stopped_at.is_none() && r.starts_at + r.duration > now {
                r.stopped_at = Some(now.max(r.starts_at));
            }
        }
        self.busy_until = self.busy_until.min(now);
    }

    fn wait(&mut self) -> Result<()> {
        if self.realtime {
            std::thread::sleep(self.busy_until.saturating_sub(self.now()));
        } else {
            self.virtual_now = self.virtual_now.max(self.busy_until);
        }
        Ok(())
    }

    fn is_playing(&self) -> bool {
        self.now() < self.busy_until
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::audio::decode_file;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn file_sink_writes_resampled_clips_and_queues_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 48_000, false).unwrap();
        let clip: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        sink.play(&clip, 16_000).unwrap();
        sink.play(&clip[..8_000], 16_000).unwrap();
        assert!(sink.is_playing());
        sink.wait().unwrap();
        assert!(!sink.is_playing());
        let r = sink.records();
        assert_eq!(r.len(), 2);
        assert_eq!((ms(r[0].starts_at), ms(r[0].duration)), (0, 1000));
        assert_eq!((ms(r[1].queued_at), ms(r[1].starts_at)), (0, 1000));
        assert!(r[1].samples.abs_diff(24_000) <= 3, "{}", r[1].samples);
        let written = decode_file(&r[0].path).unwrap();
        assert_eq!(written.sample_rate, 48_000);
        assert_eq!(written.samples, resample_linear(&clip, 16_000, 48_000));
        // Played after the queue drained, a new clip starts at once.
        sink.play(&clip, 16_000).unwrap();
        assert_eq!(ms(sink.records()[2].starts_at), 1500);
    }

    #[test]
    fn file_sink_in_real_time_waits_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = FileSink::new(dir.path(), 16_000, true).unwrap();
        let t0 = Instant::now();
        sink.play(&[0.1; 1_600], 16_000).unwrap(); // 100 ms
        sink.wait().unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(95));
        sink.play(&[0.1; 160_000], 16_000).unwrap(); // 10 s
        std::thread::sleep(Duration::from_millis(20));
        sink.stop();
        assert!(!sink.is_playing());
        let t1 = Instant::now();
        sink.wait().unwrap();
        assert!(t1.elapsed() < Duration::from_millis(50));
        let stopped = sink.records()[1].stopped_at.unwrap();
        assert!(stopped < Duration::from_secs(1), "{stopped:?}");
        assert!(sink.records()[0].stopped_at.is_none());
    }

    #[test]
    fn file_sink_rejects_a_zero_rate() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FileSink::new(dir.path(), 0, false).is_err());
    }

    /// No sound card here or on CI: a clear error within the timeout, never a hang. On a
    /// machine with a speaker it plays 50 ms of silence.
    #[test]
    fn speaker_without_a_sound_card_errors_instead_of_hanging() {
        let t0 = Instant::now();
        let err = CpalSpeaker::open(SpeakerConfig {
            device: Some("no such speaker 0xMIO".into()),
        })
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("no output device named") || err.contains("sound system"),
            "{err}"
        );
        match CpalSpeaker::open(SpeakerConfig::default()) {
            Ok(mut speaker) => {
                speaker.play(&[0.0; 800], 16_000).unwrap();
                speaker.wait().unwrap();
                speaker.stop();
            }
            Err(e) => {
                let e = e.to_string();
                eprintln!("default speaker: {e}");
                assert!(e.contains("speaker") || e.contains("device") || e.contains("sound"));
            }
        }
        assert!(t0.elapsed() < DEVICE_TIMEOUT * 3, "{:?}", t0.elapsed());
    }

    /// Where ALSA's `null` device exists, the whole cpal path runs: a clip is resampled,
    /// drained by the callback on the speaker's thread, and `wait` returns.
    #[test]
    fn alsa_null_device_plays_when_present() {
        let Ok(mut speaker) = CpalSpeaker::open(SpeakerConfig {
            device: Some("null".into()),
        }) else {
            return;
        };
        eprintln!("{} at {} Hz", speaker.device_name(), speaker.device_rate());
        // The null device is not paced (it drains at once), so no timing is checked here.
        speaker.play(&[0.25; 3_200], 16_000).unwrap();
        speaker.wait().unwrap();
        assert!(!speaker.is_playing());
        speaker.play(&[0.25; 160_000], 16_000).unwrap();
        speaker.stop();
        assert!(!speaker.is_playing());
        speaker.wait().unwrap();
    }
}
