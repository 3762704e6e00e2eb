//! Video files: decoding (FFmpeg) and keyframes as image inputs.

mod decode;
mod keyframes;
mod prompt;

pub use decode::{
    VideoFrame, VideoInfo, VideoReader, MAX_FRAMES, MAX_FRAME_PIXELS, MAX_FRAME_SIDE,
};
pub use keyframes::{
    extract_keyframes, keyframe_inputs, select_keyframes, Keyframe, KeyframeOptions, SceneScanner,
    VideoKeyframes, VIDEO_PROMPT,
};
pub use prompt::{frame_run, place_video_frames};
