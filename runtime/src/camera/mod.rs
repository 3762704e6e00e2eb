//! Webcam capture behind the [`Camera`] trait: nokhwa (V4L2, AVFoundation, Media Foundation)
//! and a file-backed double, both delivering through the same capture thread.

mod capture;
mod file;
mod native;

pub use capture::{
    Camera, CameraDevice, CameraFrame, CaptureStream, FrameSource, OpenRequest, FIRST_FRAME_TIMEOUT,
};
pub use file::FileCamera;
pub use native::NokhwaCamera;
