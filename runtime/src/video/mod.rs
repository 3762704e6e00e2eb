//! Video files: decoding (FFmpeg, the default `video` feature) and keyframes as image inputs.

#[cfg(feature = "video")]
mod decode;
#[cfg(not(feature = "video"))]
#[path = "unavailable.rs"]
mod decode;
mod frame;
mod keyframes;
mod prompt;

pub use decode::VideoReader;
pub use frame::{VideoFrame, VideoInfo, MAX_FRAMES, MAX_FRAME_PIXELS, MAX_FRAME_SIDE};
pub use keyframes::{
    extract_keyframes, keyframe_inputs, select_keyframes, Keyframe, KeyframeOptions, SceneScanner,
    VideoKeyframes, VIDEO_PROMPT,
};
pub use prompt::{frame_run, place_video_frames};
