//! Real webcams through nokhwa (V4L2 on Linux, AVFoundation on macOS, Media Foundation on
//! Windows). MJPEG frames are decoded with the `image` crate (nokhwa's own MJPEG decoder
//! needs mozjpeg, a C build we avoid); YUYV, NV12, grey and raw RGB with nokhwa's converters.

use anyhow::{anyhow, bail, Result};
use image::RgbImage;
use nokhwa::pixel_format::{FormatDecoder, RgbFormat};
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, CameraInfo, FrameFormat, RequestedFormat,
    RequestedFormatType,
};

use super::capture::FIRST_FRAME_TIMEOUT;
use super::capture::{Camera, CameraDevice, CaptureStream, FrameSource, OpenRequest};

/// The system's cameras.
#[derive(Debug, Clone, Copy, Default)]
pub struct NokhwaCamera;

/// Where to look when no camera is found.
fn no_camera_hint() -> &'static str {
    match std::env::consts::OS {
        "linux" => " (no /dev/video* device: is a webcam plugged in, and may this user open it?)",
        "macos" => " (is a webcam connected, and has this app camera permission?)",
        _ => "",
    }
}

impl Camera for NokhwaCamera {
    fn devices(&self) -> Result<Vec<CameraDevice>> {
        let list = query()?;
        Ok(list
            .iter()
            .map(|c| CameraDevice {
                id: c.index().to_string(),
                name: c.human_name(),
                description: format!("{} {}", c.description(), c.misc())
                    .trim()
                    .to_owned(),
            })
            .collect())
    }

    fn open(&self, request: &OpenRequest) -> Result<CaptureStream> {
        let list = query()?;
        let info = match &request.device {
            None => list.first(),
            Some(id) => list
                .iter()
                .find(|c| c.index().to_string() == *id || c.human_name() == *id),
        };
        let Some(info) = info else {
            return Err(match &request.device {
                Some(id) if !list.is_empty() => {
                    anyhow!("no camera named {id}; see `mio camera list`")
                }
                _ => anyhow!("no camera found{}", no_camera_hint()),
            });
        };
        let index = info.index().clone();
        let name = info.human_name();
        let resolution = request.resolution;
        CaptureStream::spawn(
            &name,
            move || open_source(index, resolution),
            FIRST_FRAME_TIMEOUT,
        )
    }
}

fn query() -> Result<Vec<CameraInfo>> {
    match nokhwa::query(ApiBackend::Auto) {
        Ok(list) => Ok(list),
        // V4L2 enumeration fails on a machine without video nodes: that is "no camera".
        Err(_) if std::env::consts::OS == "linux" && !has_video_nodes() => Ok(vec![]),
        Err(e) => Err(anyhow!("cannot list cameras: {e}")),
    }
}

/// Whether `/dev` holds any `video*` node.
fn has_video_nodes() -> bool {
    std::fs::read_dir("/dev").is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("video"))
    })
}

/// Opens the camera on the capture thread (nokhwa's handle stays there).
fn open_source(index: CameraIndex, resolution: Option<(u32, u32)>) -> Result<Box<dyn FrameSource>> {
    let requested = match resolution {
        Some((w, h)) => {
            RequestedFormatType::Closest(CameraFormat::new_from(w, h, FrameFormat::MJPEG, 30))
        }
        None => RequestedFormatType::AbsoluteHighestFrameRate,
    };
    let format = RequestedFormat::new::<RgbFormat>(requested);
    let mut camera =
        nokhwa::Camera::new(index, format).map_err(|e| anyhow!("cannot open the camera: {e}"))?;
    camera
        .open_stream()
        .map_err(|e| anyhow!("cannot start the camera: {e}"))?;
    Ok(Box::new(NokhwaSource { camera }))
}

struct NokhwaSource {
    camera: nokhwa::Camera,
}

impl FrameSource for NokhwaSource {
    fn next_frame(&mut self) -> Result<RgbImage> {
        let buffer = self
            .camera
            .frame()
            .map_err(|e| anyhow!("the camera failed: {e}"))?;
        let res = buffer.resolution();
        let fcc = buffer.source_frame_format();
        let rgb = match fcc {
            FrameFormat::MJPEG => image::load_from_memory(buffer.buffer())
                .map_err(|e| anyhow!("the camera sent a damaged frame: {e}"))?
                .to_rgb8(),
            _ => {
                let raw = RgbFormat::write_output(fcc, res, buffer.buffer())
                    .map_err(|e| anyhow!("cannot convert a camera frame ({fcc}): {e}"))?;
                RgbImage::from_raw(res.width(), res.height(), raw)
                    .ok_or_else(|| anyhow!("the camera sent a frame of the wrong size"))?
            }
        };
        if rgb.width() == 0 || rgb.height() == 0 {
            bail!("the camera sent an empty frame");
        }
        Ok(rgb)
    }

    fn format(&self) -> (u32, u32, f64) {
        let f = self.camera.camera_format();
        (f.width(), f.height(), f64::from(f.frame_rate()))
    }
}

impl Drop for NokhwaSource {
    fn drop(&mut self) {
        let _ = self.camera.stop_stream();
    }
}
