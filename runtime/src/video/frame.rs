//! What video decoding hands out, and its limits (shared by the FFmpeg decoder and by
//! builds without it).

use image::RgbImage;

/// Largest frame side accepted (as for images).
pub const MAX_FRAME_SIDE: u32 = 16_384;
/// Largest frame accepted, in pixels (64 megapixels, as for images).
pub const MAX_FRAME_PIXELS: u64 = 64 << 20;
/// Most frames one file may have (about 1 h at 60 frames/s); decoding stops with an error
/// past it so a crafted file cannot keep the decoder busy for ever.
pub const MAX_FRAMES: usize = 216_000;

/// What the container says about the video stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VideoInfo {
    /// Codec name (`h264`, `vp9`, …).
    pub codec: String,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Average frames per second (0 when unknown).
    pub fps: f64,
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Position in decode-output (presentation) order, from 0.
    pub index: usize,
    /// Presentation time in seconds (from the stream's timestamps, else index / fps).
    pub time_s: f64,
    /// The pixels.
    pub image: RgbImage,
}
