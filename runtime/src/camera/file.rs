//! The camera double: frames from video or image files, played in a loop at a set rate,
//! through the same capture thread and channel as a real camera. Tests and CI use it;
//! `mio camera --file` exposes it for demos without a webcam.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use image::RgbImage;

use super::capture::FIRST_FRAME_TIMEOUT;
use super::capture::{Camera, CameraDevice, CaptureStream, FrameSource, OpenRequest};
use crate::video::VideoReader;

/// Plays files as cameras (one device per file).
#[derive(Debug, Clone)]
pub struct FileCamera {
    files: Vec<PathBuf>,
    fps: f64,
}

impl FileCamera {
    /// Cameras playing `files` at `fps` frames per second.
    pub fn new(files: Vec<PathBuf>, fps: f64) -> Self {
        Self { files, fps }
    }
}

impl Camera for FileCamera {
    fn devices(&self) -> Result<Vec<CameraDevice>> {
        Ok(self
            .files
            .iter()
            .map(|f| CameraDevice {
                id: f.display().to_string(),
                name: f
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                description: "file-backed camera".to_owned(),
            })
            .collect())
    }

    fn open(&self, request: &OpenRequest) -> Result<CaptureStream> {
        let file = match &request.device {
            None => self.files.first(),
            Some(id) => self
                .files
                .iter()
                .find(|f| f.display().to_string() == *id || f.ends_with(id)),
        };
        let Some(file) = file.cloned() else {
            bail!("no camera found");
        };
        let (fps, resolution) = (self.fps, request.resolution);
        let name = file.display().to_string();
        CaptureStream::spawn(
            &name,
            move || {
                let frames = load_frames(&file, resolution)?;
                Ok(Box::new(FileSource {
                    frames,
                    next: 0,
                    period: Duration::from_secs_f64(1.0 / fps.max(1.0)),
                    fps,
                }) as Box<dyn FrameSource>)
            },
            FIRST_FRAME_TIMEOUT,
        )
    }
}

/// Every frame of a video file, or the one picture of an image file.
fn load_frames(path: &Path, resolution: Option<(u32, u32)>) -> Result<Vec<RgbImage>> {
    let video = matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("mp4" | "webm" | "avi" | "mkv" | "mov")
    );
    let mut frames = vec![];
    if video {
        VideoReader::open(path)?.for_each_frame(|f| {
            frames.push(f.image);
            Ok(true)
        })?;
    } else {
        frames.push(mio_models::image_tokenizer::load_rgb(path)?);
    }
    if let Some((w, h)) = resolution {
        frames = frames
            .iter()
            .map(|f| image::imageops::resize(f, w, h, image::imageops::FilterType::Triangle))
            .collect();
    }
    Ok(frames)
}

struct FileSource {
    frames: Vec<RgbImage>,
    next: usize,
    period: Duration,
    fps: f64,
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Result<RgbImage> {
        std::thread::sleep(self.period);
        let Some(frame) = self.frames.get(self.next % self.frames.len().max(1)) else {
            bail!("the file camera has no frames");
        };
        self.next += 1;
        Ok(frame.clone())
    }

    fn format(&self) -> (u32, u32, f64) {
        self.frames
            .first()
            .map_or((0, 0, self.fps), |f| (f.width(), f.height(), self.fps))
    }
}
