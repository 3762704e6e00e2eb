//! Audio in: the [`AudioSource`] trait, the microphone ([`CpalMicrophone`]) and its
//! file-backed double ([`FileSource`]).
//!
//! Each source owns its thread (cpal streams are not `Send`), converts to mono f32 at the
//! stated rate on that thread (the edge), and delivers chunks into a bounded
//! `sync_channel`. A chunk that finds the channel full is dropped and counted, so a slow
//! consumer never blocks the audio callback. Opening a device runs under a timeout: a
//! machine without a sound system gets a clear error, never a hang.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};

use super::decode::{decode_file, Clip};
use super::devices::{device_key, find_device, no_sound_hint, within_timeout, DEVICE_TIMEOUT};
use super::resample::{downmix, LinearResampler};

/// A source of mono f32 audio chunks.
pub trait AudioSource: Send {
    /// Rate of the chunks `start` delivers, in Hz.
    fn sample_rate(&self) -> u32;
    /// Starts delivering; the channel closes when the source stops or runs out.
    fn start(&mut self) -> Result<Receiver<Vec<f32>>>;
    /// Stops delivering and joins the source's thread (idempotent).
    fn stop(&mut self);
    /// Chunks dropped because the channel was full, since the last `start`.
    fn dropped_chunks(&self) -> u64;
}

/// Chunking and channel options shared by the sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// Rate of the delivered chunks; `None` keeps the device's (or file's) rate.
    pub sample_rate: Option<u32>,
    /// Length of one chunk in milliseconds.
    pub chunk_ms: u32,
    /// Chunks the channel holds before new ones are dropped.
    pub capacity: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            sample_rate: Some(16_000),
            chunk_ms: 20,
            capacity: 256,
        }
    }
}

impl ChunkOptions {
    fn chunk_len(&self, rate: u32) -> usize {
        (rate as usize * self.chunk_ms.max(1) as usize / 1000).max(1)
    }
}

/// Converts device buffers into fixed-size chunks at the output rate and sends them.
struct ChunkSink {
    tx: SyncSender<Vec<f32>>,
    resampler: LinearResampler,
    pending: Vec<f32>,
    chunk_len: usize,
    dropped: Arc<AtomicU64>,
    /// When set, a full channel is waited on (until this stop flag) instead of dropping.
    wait: Option<Arc<AtomicBool>>,
}

impl ChunkSink {
    fn new(tx: SyncSender<Vec<f32>>, from: u32, to: u32, chunk_len: usize) -> Self {
        Self {
            tx,
            resampler: LinearResampler::new(from, to),
            pending: Vec::new(),
            chunk_len,
            dropped: Arc::new(AtomicU64::new(0)),
            wait: None,
        }
    }

    /// Sends one chunk: drops it on a full channel, or waits when `wait` is set. Returns
    /// false once the receiver is gone or the source is stopping.
    fn send(&self, mut chunk: Vec<f32>) -> bool {
        loop {
            match self.tx.try_send(chunk) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(c)) => match &self.wait {
                    None => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return true;
                    }
                    Some(stop) if stop.load(Ordering::SeqCst) => return false,
                    Some(_) => {
                        chunk = c;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                },
            }
        }
    }

    /// Takes mono input; returns false once the receiver is gone.
    fn push(&mut self, mono: &[f32]) -> bool {
        self.resampler.process(mono, &mut self.pending);
        while self.pending.len() >= self.chunk_len {
            let rest = self.pending.split_off(self.chunk_len);
            let chunk = std::mem::replace(&mut self.pending, rest);
            if !self.send(chunk) {
                return false;
            }
        }
        true
    }

    /// Sends what is left (a last, shorter chunk).
    fn finish(mut self) {
        self.resampler.finish(&mut self.pending);
        while self.pending.len() > self.chunk_len {
            let rest = self.pending.split_off(self.chunk_len);
            let chunk = std::mem::replace(&mut self.pending, rest);
            if !self.send(chunk) {
                return;
            }
        }
        let chunk = std::mem::take(&mut self.pending);
        if !chunk.is_empty() {
            self.send(chunk);
        }
    }
}

/// Which microphone to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicrophoneConfig {
    /// Device name (exact or a unique substring); `None` for the default input.
    pub device: Option<String>,
    /// Chunking and the delivered rate.
    pub chunks: ChunkOptions,
}

/// The microphone, through cpal. The stream lives on its own thread.
pub struct CpalMicrophone {
    cfg: MicrophoneConfig,
    device_name: String,
    device_key: String,
    device_rate: u32,
    dropped: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    running: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl CpalMicrophone {
    /// Finds the device and its default configuration (nothing is recorded yet).
    pub fn open(cfg: MicrophoneConfig) -> Result<Self> {
        let wanted = cfg.device.clone();
        let opened = within_timeout("opening the microphone", move || {
            let device = find_device(true, wanted.as_deref())?;
            let config = device.default_input_config().map_err(|e| {
                anyhow!(
                    "the microphone {device} cannot record: {}",
                    no_sound_hint(&e)
                )
            })?;
            Ok((
                device.to_string(),
                device_key(&device),
                config.sample_rate(),
            ))
        })?;
        let (device_name, device_key, device_rate) = opened;
        Ok(Self {
            cfg,
            device_name,
            device_key,
            device_rate,
            dropped: Arc::new(AtomicU64::new(0)),
            errors: Arc::new(AtomicU64::new(0)),
            running: None,
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The device's own rate (before conversion).
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Errors the stream reported while running (an unplugged device, an overrun).
    pub fn stream_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}

impl AudioSource for CpalMicrophone {
    fn sample_rate(&self) -> u32 {
        self.cfg.chunks.sample_rate.unwrap_or(self.device_rate)
    }

    fn start(&mut self) -> Result<Receiver<Vec<f32>>> {
        self.stop();
        let (tx, rx) = mpsc::sync_channel(self.cfg.chunks.capacity.max(1));
        let rate = self.sample_rate();
        let sink = ChunkSink::new(tx, self.device_rate, rate, self.cfg.chunks.chunk_len(rate));
        self.dropped = sink.dropped.clone();
        let errors = self.errors.clone();
        let key = self.device_key.clone();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let handle = std::thread::Builder::new()
            .name("mio-microphone".into())
            .spawn(move || {
                let stream = match open_input_stream(&key, sink, errors) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let _ = stop_rx.recv();
                drop(stream);
            })
            .context("cannot spawn the microphone thread")?;
        match ready_rx.recv_timeout(DEVICE_TIMEOUT) {
            Ok(Ok(())) => {
                self.running = Some((stop_tx, handle));
                Ok(rx)
            }
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => bail!(
                "the microphone {} did not start within {} s",
                self.device_name,
                DEVICE_TIMEOUT.as_secs()
            ),
        }
    }

    fn stop(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            drop(stop);
            let _ = handle.join();
        }
    }

    fn dropped_chunks(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for CpalMicrophone {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Builds and plays the input stream (on the microphone thread).
fn open_input_stream(key: &str, sink: ChunkSink, errors: Arc<AtomicU64>) -> Result<cpal::Stream> {
    let device = find_device(true, Some(key))?;
    let name = device.to_string();
    let supported = device
        .default_input_config()
        .map_err(|e| anyhow!("the microphone {name} cannot record: {}", no_sound_hint(&e)))?;
    let config = supported.config();
    let stream = match supported.sample_format() {
        SampleFormat::F32 => build_input::<f32>(&device, config, sink, errors),
        SampleFormat::I16 => build_input::<i16>(&device, config, sink, errors),
        SampleFormat::U16 => build_input::<u16>(&device, config, sink, errors),
        SampleFormat::I32 => build_input::<i32>(&device, config, sink, errors),
        SampleFormat::F64 => build_input::<f64>(&device, config, sink, errors),
        other => bail!("the microphone {name} records {other:?} samples, which we do not read"),
    }?;
    stream
        .play()
        .map_err(|e| anyhow!("the microphone {name} cannot start: {}", no_sound_hint(&e)))?;
    Ok(stream)
}

fn build_input<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut sink: ChunkSink,
    errors: Arc<AtomicU64>,
) -> Result<cpal::Stream>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let mut float = Vec::new();
    let mut mono = Vec::new();
    device
        .build_input_stream::<T, _, _>(
            config,
            move |data: &[T], _| {
                float.clear();
                float.extend(data.iter().map(|&s| s.to_sample::<f32>()));
                mono.clear();
                downmix(&float, channels, &mut mono);
                sink.push(&mono);
            },
            move |_| {
                errors.fetch_add(1, Ordering::Relaxed);
            },
            Some(DEVICE_TIMEOUT),
        )
        .map_err(|e| anyhow!("cannot open the microphone {device}: {}", no_sound_hint(&e)))
}

/// How fast a [`FileSource`] delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// One chunk per chunk duration, like a device; a full channel drops chunks.
    RealTime,
    /// As fast as the consumer reads: waits for room, never drops.
    AsFastAsPossible,
}

/// The microphone's file-backed double: decodes a file and delivers it in chunks.
pub struct FileSource {
    clip: Arc<Clip>,
    chunks: ChunkOptions,
    pacing: Pacing,
    dropped: Arc<AtomicU64>,
    running: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl FileSource {
    /// Decodes `path` (wav, flac, mp3, ogg) once; every `start` plays it from the beginning.
    pub fn open(path: &Path, chunks: ChunkOptions, pacing: Pacing) -> Result<Self> {
        Ok(Self::from_clip(decode_file(path)?, chunks, pacing))
    }

    /// Plays an already decoded clip.
    pub fn from_clip(clip: Clip, chunks: ChunkOptions, pacing: Pacing) -> Self {
        Self {
            clip: Arc::new(clip),
            chunks,
            pacing,
            dropped: Arc::new(AtomicU64::new(0)),
            running: None,
        }
    }
}

impl AudioSource for FileSource {
    fn sample_rate(&self) -> u32 {
        self.chunks.sample_rate.unwrap_or(self.clip.sample_rate)
    }

    fn start(&mut self) -> Result<Receiver<Vec<f32>>> {
        self.stop();
        let clip = self.clip.clone();
        let (tx, rx) = mpsc::sync_channel(self.chunks.capacity.max(1));
        let rate = self.sample_rate();
        let chunk_len = self.chunks.chunk_len(rate);
        let mut sink = ChunkSink::new(tx, clip.sample_rate, rate, chunk_len);
        self.dropped = sink.dropped.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        if self.pacing == Pacing::AsFastAsPossible {
            sink.wait = Some(stop.clone());
        }
        let pacing = self.pacing;
        let in_len = self.chunks.chunk_len(clip.sample_rate);
        let period = Duration::from_secs_f64(in_len as f64 / clip.sample_rate.max(1) as f64);
        let handle = std::thread::Builder::new()
            .name("mio-file-source".into())
            .spawn(move || {
                let t0 = Instant::now();
                for (i, part) in clip.samples.chunks(in_len).enumerate() {
                    if stop_flag.load(Ordering::SeqCst) {
                        return;
                    }
                    if pacing == Pacing::RealTime {
                        let due = t0 + period * i as u32;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                    if !sink.push(part) {
                        return;
                    }
                }
                sink.finish();
            })
            .context("cannot spawn the file source thread")?;
        self.running = Some((stop, handle));
        Ok(rx)
    }

    fn stop(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = handle.join();
        }
    }

    fn dropped_chunks(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::audio::{list_input_devices, list_output_devices, write_wav};

    fn tone(n: usize, rate: u32) -> Vec<f32> {
        (0..n)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
            .collect()
    }

    fn wav_file(samples: &[f32], rate: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_wav(&dir.path().join("in.wav"), samples, rate).unwrap();
        dir
    }

    fn opts(rate: Option<u32>, capacity: usize) -> ChunkOptions {
        ChunkOptions {
            sample_rate: rate,
            chunk_ms: 20,
            capacity,
        }
    }

    #[test]
    fn file_source_delivers_every_sample_as_fast_as_possible() {
        let xs = tone(16_000 + 123, 16_000);
        let dir = wav_file(&xs, 16_000);
        let mut src = FileSource::open(
            &dir.path().join("in.wav"),
            opts(None, 2),
            Pacing::AsFastAsPossible,
        )
        .unwrap();
        assert_eq!(src.sample_rate(), 16_000);
        let rx = src.start().unwrap();
        let chunks: Vec<Vec<f32>> = rx.iter().collect();
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == 320));
        assert_eq!(chunks.concat(), xs);
        assert_eq!(src.dropped_chunks(), 0);
        src.stop();
        // A second start plays the file again from the beginning.
        assert_eq!(src.start().unwrap().iter().flatten().count(), xs.len());
    }

    #[test]
    fn file_source_resamples_at_the_edge() {
        let xs = tone(48_000, 48_000);
        let dir = wav_file(&xs, 48_000);
        let path = dir.path().join("in.wav");
        let mut src =
            FileSource::open(&path, opts(Some(16_000), 4), Pacing::AsFastAsPossible).unwrap();
        assert_eq!(src.sample_rate(), 16_000);
        let got: Vec<f32> = src.start().unwrap().iter().flatten().collect();
        assert_eq!(got.len(), 16_000);
        assert_eq!(got, crate::audio::resample_linear(&xs, 48_000, 16_000));
    }

    #[test]
    fn real_time_source_paces_and_counts_drops() {
        let xs = tone(3_200, 16_000); // 200 ms, ten chunks
        let dir = wav_file(&xs, 16_000);
        let path = dir.path().join("in.wav");
        let mut src = FileSource::open(&path, opts(None, 64), Pacing::RealTime).unwrap();
        let t0 = Instant::now();
        let n = src.start().unwrap().iter().count();
        assert_eq!(n, 10);
        assert!(
            t0.elapsed() >= Duration::from_millis(170),
            "{:?}",
            t0.elapsed()
        );
        // A consumer that reads nothing while the file plays: the channel holds one chunk.
        let mut src = FileSource::open(&path, opts(None, 1), Pacing::RealTime).unwrap();
        let rx = src.start().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(rx.iter().count(), 1);
        assert_eq!(src.dropped_chunks(), 9);
    }

    #[test]
    fn stopping_a_source_closes_its_channel() {
        let xs = tone(16_000 * 5, 16_000);
        let dir = wav_file(&xs, 16_000);
        let path = dir.path().join("in.wav");
        let mut src = FileSource::open(&path, opts(None, 1), Pacing::AsFastAsPossible).unwrap();
        let rx = src.start().unwrap();
        assert!(rx.recv().is_ok());
        let t0 = Instant::now();
        src.stop();
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(rx.iter().count() <= 1);
    }

    #[test]
    fn sources_and_sinks_are_object_safe() {
        fn takes(_: Option<Box<dyn AudioSource>>, _: Option<Box<dyn crate::audio::AudioSink>>) {}
        takes(None, None);
    }

    #[test]
    fn file_source_rejects_a_missing_file() {
        let err = FileSource::open(
            Path::new("/nonexistent/x.wav"),
            ChunkOptions::default(),
            Pacing::RealTime,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("cannot open"), "{err}");
    }

    /// On CI and on this machine there is no sound card: every call must end quickly, with
    /// a clear error where no device exists. On a machine with a microphone it still passes.
    #[test]
    fn microphone_without_a_sound_card_errors_instead_of_hanging() {
        let t0 = Instant::now();
        let inputs = list_input_devices();
        eprintln!("inputs: {inputs:?}");
        let _ = list_output_devices();
        let cfg = MicrophoneConfig {
            device: Some("no such microphone 0xMIO".into()),
            chunks: ChunkOptions::default(),
        };
        let err = CpalMicrophone::open(cfg).err().unwrap().to_string();
        assert!(
            err.contains("no input device named") || err.contains("sound system"),
            "{err}"
        );
        match CpalMicrophone::open(MicrophoneConfig::default()) {
            Ok(mut mic) => match mic.start() {
                Ok(rx) => {
                    let _ = rx.recv_timeout(Duration::from_millis(200));
                    mic.stop();
                }
                Err(e) => eprintln!("default microphone: {e:#}"),
            },
            Err(e) => {
                let e = e.to_string();
                eprintln!("default microphone: {e}");
                assert!(e.contains("microphone") || e.contains("device") || e.contains("sound"));
            }
        }
        assert!(t0.elapsed() < DEVICE_TIMEOUT * 5, "{:?}", t0.elapsed());
    }

    /// Where ALSA's `null` device exists (a Linux box without a sound card has it), the whole
    /// cpal path runs: open by id, stream on its own thread, chunks of zeros, stop.
    #[test]
    fn alsa_null_device_streams_silence_when_present() {
        let Ok(mut mic) = CpalMicrophone::open(MicrophoneConfig {
            device: Some("null".into()),
            chunks: ChunkOptions::default(),
        }) else {
            return;
        };
        eprintln!("{} at {} Hz", mic.device_name(), mic.device_rate());
        let rx = match mic.start() {
            Ok(rx) => rx,
            Err(e) => {
                eprintln!("null device did not start: {e:#}");
                return;
            }
        };
        let chunk = rx.recv_timeout(Duration::from_secs(3)).unwrap();
        assert_eq!(chunk.len(), 320);
        assert!(chunk.iter().all(|x| x.abs() < 1e-3));
        mic.stop();
        assert!(rx.iter().count() <= ChunkOptions::default().capacity);
    }
}
