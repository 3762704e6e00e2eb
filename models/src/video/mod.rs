//! Video keyframe selection (pure compute; decoding lives in the runtime).

mod content_detector;
mod keyframes;

pub use content_detector::{
    downscale_factor, downscale_linear, rgb_to_hsv_opencv, ContentDetector, ContentDetectorConfig,
    FlashFilter,
};
pub use keyframes::{
    cap_frames, plan_keyframes, scene_middles, uniform_frames, KeyframeMode, KeyframePlan,
    Selection, DEFAULT_MAX_FRAMES, UNIFORM_TARGET,
};
