//! The capture thread shared by every camera: a [`FrameSource`] made and driven on its own
//! thread (camera handles are often not `Send`), frames delivered into a bounded channel
//! that drops (and counts) frames the reader is too slow for, a ready handshake, and a stop
//! flag checked between frames.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use image::RgbImage;

use crate::video::{select_keyframes, KeyframeOptions, VideoKeyframes};

/// How long opening a camera may take before it counts as failed.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long dropping a stream waits for its thread to stop.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// Frames the channel holds before new ones are dropped.
const CHANNEL_FRAMES: usize = 4;

/// A camera as the system lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CameraDevice {
    /// What to pass to [`OpenRequest::device`] (the index, or the file for the double).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Backend details (driver, bus).
    pub description: String,
}

/// Which camera and format to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenRequest {
    /// Device id or name (see [`CameraDevice`]); `None`: the first.
    pub device: Option<String>,
    /// Wanted resolution (the closest the camera offers); `None`: the camera's default.
    pub resolution: Option<(u32, u32)>,
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct CameraFrame {
    /// Seconds since capture started.
    pub time_s: f64,
    /// The pixels.
    pub image: RgbImage,
}

/// Produces frames on the capture thread.
pub trait FrameSource {
    /// The next frame (blocking until the device has one).
    fn next_frame(&mut self) -> Result<RgbImage>;
    /// Frame size and rate (0 when unknown).
    fn format(&self) -> (u32, u32, f64);
}

/// A camera backend.
pub trait Camera {
    /// The devices it sees (empty when there are none).
    fn devices(&self) -> Result<Vec<CameraDevice>>;
    /// Starts capturing; fails with a clear error when there is no such camera.
    fn open(&self, request: &OpenRequest) -> Result<CaptureStream>;
}

/// Frames arriving from a capture thread. Dropping it stops the thread.
pub struct CaptureStream {
    frames: Receiver<Result<CameraFrame>>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
    format: (u32, u32, f64),
}

impl CaptureStream {
    /// Runs `make` on a new thread and delivers its frames; waits up to `timeout` for the
    /// source to open (its error, or a timeout, is returned here).
    pub fn spawn<F>(name: &str, make: F, timeout: Duration) -> Result<Self>
    where
        F: FnOnce() -> Result<Box<dyn FrameSource>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(CHANNEL_FRAMES);
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop2, dropped2) = (stop.clone(), dropped.clone());
        let thread = std::thread::Builder::new()
            .name(format!("camera {name}"))
            .spawn(move || match make() {
                Ok(source) => {
                    let _ = ready_tx.send(Ok(source.format()));
                    pump(source, &tx, &stop2, &dropped2);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| anyhow!("cannot start the camera thread: {e}"))?;
        let format = match ready_rx.recv_timeout(timeout) {
            Ok(Ok(format)) => format,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                bail!(
                    "the camera {name} did not start within {} s",
                    timeout.as_secs()
                )
            }
        };
        Ok(Self {
            frames: rx,
            stop,
            dropped,
            thread: Some(thread),
            format,
        })
    }

    /// Frame width, height and rate (0 when unknown) the source reported.
    pub fn format(&self) -> (u32, u32, f64) {
        self.format
    }

    /// Frames dropped because the reader was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The next frame, waiting at most `timeout`.
    pub fn next_frame(&self, timeout: Duration) -> Result<CameraFrame> {
        match self.frames.recv_timeout(timeout) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => bail!(
                "the camera sent no frame within {:.1} s",
                timeout.as_secs_f64()
            ),
            Err(RecvTimeoutError::Disconnected) => bail!("the camera stopped"),
        }
    }

    /// The next frame.
    pub fn snapshot(&self) -> Result<RgbImage> {
        Ok(self.next_frame(FIRST_FRAME_TIMEOUT)?.image)
    }

    /// Records `seconds` of frames (by their timestamps) and picks the keyframes as for a
    /// video file.
    pub fn record(&self, seconds: f64, opts: &KeyframeOptions) -> Result<VideoKeyframes> {
        let first = self.next_frame(FIRST_FRAME_TIMEOUT)?;
        let start = first.time_s;
        let mut clip = vec![(0.0, first.image)];
        let deadline =
            Instant::now() + Duration::from_secs_f64(seconds.max(0.0)) + FIRST_FRAME_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                bail!("the camera sent too few frames for a {seconds} s clip");
            }
            let f = self.next_frame(FIRST_FRAME_TIMEOUT)?;
            if f.time_s - start >= seconds {
                break;
            }
            clip.push((f.time_s - start, f.image));
        }
        select_keyframes(clip, opts)
    }
}

impl Drop for CaptureStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The producer sees the flag after its current frame (`try_send` never blocks). Wait
        // briefly so the device is released before a new stream opens it; a camera stuck
        // inside its driver is left to finish on its own rather than hanging the caller.
        if let Some(t) = self.thread.take() {
            let until = Instant::now() + STOP_WAIT;
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn pump(
    mut source: Box<dyn FrameSource>,
    tx: &SyncSender<Result<CameraFrame>>,
    stop: &AtomicBool,
    dropped: &AtomicU64,
) {
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let item = source.next_frame().map(|image| CameraFrame {
            time_s: started.elapsed().as_secs_f64(),
            image,
        });
        let failed = item.is_err();
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
        if failed {
            return;
        }
    }
}
