//! The camera button: a live preview (small JPEG frames over the channel, about 5 a second),
//! a snapshot (a picture attachment) and a short clip (its keyframes, chosen as for a video
//! file, as a video attachment with the clip as an animated GIF) over the runtime's `Camera`
//! trait (nokhwa).
//!
//! Test double: with `MIO_TEST_CAMERA_FILE=PATH` set, the video or picture PATH plays as the
//! camera (the runtime's `FileCamera`); the UI labels it as a test double. Without it the
//! first real camera opens; with none, one clear error.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use base64::Engine as _;
use image::RgbImage;
use mio_models::engine::DecodedImage;
use mio_runtime::camera::{Camera, CaptureStream, FileCamera, NokhwaCamera, OpenRequest};
use mio_runtime::video::KeyframeOptions;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::MediaDir;
use crate::ipc::{Attachment, MediaKind, Segment};
use crate::models_ipc::CameraEvent;

/// The environment variable that selects the file-backed camera double.
pub const TEST_CAMERA_ENV: &str = "MIO_TEST_CAMERA_FILE";
/// Preview frames per second.
const PREVIEW_FPS: f64 = 5.0;
/// Width of preview frames.
const PREVIEW_WIDTH: u32 = 320;
/// Longest clip.
pub const MAX_CLIP_S: f64 = 10.0;

/// What the camera thread is asked to do.
pub enum CameraCmd {
    /// Take a picture.
    Snapshot(Sender<AppResult<Attachment>>),
    /// Record a clip of this many seconds.
    Clip(f64, Sender<AppResult<Attachment>>),
    /// Close the camera.
    Stop,
}

fn device_error(e: &anyhow::Error) -> AppError {
    AppError::new(
        ErrorCode::Device,
        format!(
            "no camera to capture from: {}",
            mio_runtime::commands::one_sentence(e)
        ),
    )
}

/// Opens the camera (or its file double when [`TEST_CAMERA_ENV`] is set); returns the stream
/// and whether it is the double.
pub fn open() -> AppResult<(CaptureStream, bool)> {
    let request = OpenRequest::default();
    match std::env::var_os(TEST_CAMERA_ENV) {
        Some(path) => FileCamera::new(vec![PathBuf::from(path)], 10.0)
            .open(&request)
            .map(|s| (s, true))
            .map_err(|e| device_error(&e)),
        None => NokhwaCamera
            .open(&request)
            .map(|s| (s, false))
            .map_err(|e| device_error(&e)),
    }
}

/// A small JPEG of `img` as a data URL.
pub fn preview_url(img: &RgbImage) -> AppResult<String> {
    let scale = f64::from(PREVIEW_WIDTH) / f64::from(img.width().max(1));
    let small = if scale < 1.0 {
        let h = (f64::from(img.height()) * scale).round().max(1.0) as u32;
        image::imageops::resize(img, PREVIEW_WIDTH, h, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let mut out = Cursor::new(Vec::new());
    small
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot encode a preview: {e}")))?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    ))
}

fn snapshot(stream: &CaptureStream, media: &MediaDir) -> AppResult<Attachment> {
    let img = stream.snapshot().map_err(|e| device_error(&e))?;
    Ok(Attachment {
        kind: MediaKind::Image,
        segment: media.write_png("camera", img.width(), img.height(), img.as_raw())?,
        name: "camera snapshot.png".into(),
    })
}

fn clip(stream: &CaptureStream, seconds: f64, media: &MediaDir) -> AppResult<Attachment> {
    let seconds = seconds.clamp(0.5, MAX_CLIP_S);
    let kf = stream
        .record(seconds, &KeyframeOptions::default())
        .map_err(|e| device_error(&e))?;
    let pictures: Vec<DecodedImage> = kf
        .frames
        .iter()
        .map(|k| DecodedImage {
            width: k.image.width(),
            height: k.image.height(),
            rgb: k.image.as_raw().clone(),
        })
        .collect();
    let gif = media.fresh_name("clip", "gif");
    let refs: Vec<&DecodedImage> = pictures.iter().collect();
    mio_runtime::creator::write_gif(&media.resolve(&gif)?, &refs, 500)
        .map_err(|e| AppError::from_chain(ErrorCode::Storage, &e))?;
    let mut frames = vec![];
    for p in &pictures {
        if let Segment::Image { file, .. } = media.write_png("frame", p.width, p.height, &p.rgb)? {
            frames.push(file);
        }
    }
    let (width, height) = pictures.first().map_or((0, 0), |p| (p.width, p.height));
    Ok(Attachment {
        kind: MediaKind::Video,
        segment: Segment::Video {
            file: gif,
            frames,
            times_s: kf.frames.iter().map(|k| k.time_s).collect(),
            width,
            height,
        },
        name: format!("camera clip {seconds:.0} s"),
    })
}

/// Runs the camera until `Stop` (or the command channel closes): preview frames to `sink`,
/// snapshots and clips on request. `Stopped` is always the last event.
pub fn run(
    stream: CaptureStream,
    commands: Receiver<CameraCmd>,
    media: &MediaDir,
    sink: &mut dyn FnMut(CameraEvent),
) {
    let every = Duration::from_secs_f64(1.0 / PREVIEW_FPS);
    let mut last = Instant::now()
        .checked_sub(every)
        .unwrap_or_else(Instant::now);
    loop {
        match commands.try_recv() {
            Ok(CameraCmd::Snapshot(reply)) => {
                let _ = reply.send(snapshot(&stream, media));
            }
            Ok(CameraCmd::Clip(s, reply)) => {
                let _ = reply.send(clip(&stream, s, media));
            }
            Ok(CameraCmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => break,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        match stream.next_frame(Duration::from_secs(2)) {
            Ok(f) if last.elapsed() >= every => {
                last = Instant::now();
                match preview_url(&f.image) {
                    Ok(data_url) => sink(CameraEvent::Frame {
                        data_url,
                        width: f.image.width(),
                        height: f.image.height(),
                    }),
                    Err(error) => sink(CameraEvent::Failed { error }),
                }
            }
            Ok(_) => {}
            Err(e) => {
                sink(CameraEvent::Failed {
                    error: device_error(&e),
                });
                break;
            }
        }
    }
    sink(CameraEvent::Stopped);
}

/// Opens the camera and runs it on its own thread; returns the command sender and whether
/// the camera is the test double.
pub fn start(
    media: MediaDir,
    mut sink: Box<dyn FnMut(CameraEvent) + Send>,
) -> AppResult<(Sender<CameraCmd>, bool)> {
    let (stream, double) = open()?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("mio-camera-ui".into())
        .spawn(move || run(stream, rx, &media, &mut *sink))
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot start a thread: {e}")))?;
    Ok((tx, double))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn stream() -> CaptureStream {
        let video = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/video/cut3.mp4"
        );
        FileCamera::new(vec![PathBuf::from(video)], 20.0)
            .open(&OpenRequest::default())
            .unwrap()
    }

    #[test]
    fn preview_snapshot_and_clip_from_the_file_camera() {
        let dir = tempfile::tempdir().unwrap();
        let media = MediaDir::open(dir.path().join("media")).unwrap();
        let (tx, rx) = mpsc::channel();
        let (snap_tx, snap_rx) = mpsc::channel();
        let (clip_tx, clip_rx) = mpsc::channel();
        tx.send(CameraCmd::Snapshot(snap_tx)).unwrap();
        tx.send(CameraCmd::Clip(1.0, clip_tx)).unwrap();
        tx.send(CameraCmd::Stop).unwrap();
        let mut events = vec![];
        run(stream(), rx, &media, &mut |e| events.push(e));
        let snap = snap_rx.recv().unwrap().unwrap();
        assert!(matches!(snap.segment, Segment::Image { .. }));
        let clip = clip_rx.recv().unwrap().unwrap();
        let Segment::Video { file, frames, .. } = &clip.segment else {
            panic!("{:?}", clip.segment)
        };
        assert!(!frames.is_empty());
        assert!(media.resolve(file).unwrap().is_file());
        assert!(matches!(events.last(), Some(CameraEvent::Stopped)));
        assert!(events.iter().any(
            |e| matches!(e, CameraEvent::Frame { data_url, .. } if data_url.starts_with("data:image/jpeg;base64,"))
        ));
    }

    #[test]
    fn a_missing_camera_is_one_clear_error() {
        let err = FileCamera::new(vec![], 10.0)
            .open(&OpenRequest::default())
            .map_err(|e| device_error(&e))
            .err()
            .expect("opened a camera that does not exist");
        assert_eq!(err.code, ErrorCode::Device);
        assert!(err.message.starts_with("no camera"), "{}", err.message);
    }
}
