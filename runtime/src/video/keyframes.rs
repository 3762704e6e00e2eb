//! A video file (or a clip of frames) to its keyframes, as the reference's
//! `utils.extract_frames` picks them (see `mio_models::video` for the rules and thresholds).
//!
//! Files are read twice: the first pass scores every frame for scene cuts on a copy
//! downscaled as PySceneDetect does, the second keeps only the chosen frames at full size, so
//! memory stays at a few frames whatever the video's length.
//!
//! Deviation: the reference writes frames as JPEG (`cv2.imwrite`, quality 95) and the image
//! tokenizer reads them back; here frames go to the tokenizer losslessly (PNG).

use std::io::Cursor;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use image::RgbImage;
use mio_models::engine::ImageInput;
use mio_models::video::{
    downscale_factor, downscale_linear, plan_keyframes, ContentDetector, ContentDetectorConfig,
    KeyframeMode, KeyframePlan, DEFAULT_MAX_FRAMES,
};

use super::{VideoInfo, VideoReader};

/// The instruction the reference puts before video frames (base-model video captioning in
/// `infer.py`); the instruct examples ask their own question before or after the frames.
pub const VIDEO_PROMPT: &str = "Please describe the following video: ";

/// How keyframes are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyframeOptions {
    /// Scene cuts with uniform fallback, or uniform frames only.
    pub mode: KeyframeMode,
    /// Most frames kept (0: no cap).
    pub max_frames: usize,
    /// Scene-cut detector settings (PySceneDetect's defaults).
    pub detector: ContentDetectorConfig,
}

impl Default for KeyframeOptions {
    fn default() -> Self {
        Self {
            mode: KeyframeMode::Auto,
            max_frames: DEFAULT_MAX_FRAMES,
            detector: ContentDetectorConfig::default(),
        }
    }
}

/// One chosen frame.
#[derive(Debug, Clone)]
pub struct Keyframe {
    /// Frame number in the video, from 0.
    pub index: usize,
    /// Presentation time in seconds.
    pub time_s: f64,
    /// The pixels.
    pub image: RgbImage,
}

/// A video's keyframes and how they were chosen.
#[derive(Debug, Clone)]
pub struct VideoKeyframes {
    /// The stream (for files; `None` for clips).
    pub info: Option<VideoInfo>,
    /// The chosen frame numbers, cuts and counts.
    pub plan: KeyframePlan,
    /// The chosen frames, in time order.
    pub frames: Vec<Keyframe>,
}

/// Scores frames for scene cuts as PySceneDetect's `SceneManager` feeds its detector.
#[derive(Debug, Clone)]
pub struct SceneScanner {
    detector: ContentDetector,
    frames: usize,
    detect: bool,
}

impl SceneScanner {
    /// A scanner for `opts` (it only counts frames when uniform frames are asked for).
    pub fn new(opts: &KeyframeOptions) -> Self {
        Self {
            detector: ContentDetector::new(opts.detector),
            frames: 0,
            detect: opts.mode == KeyframeMode::Auto,
        }
    }

    /// Feeds the next frame.
    pub fn push(&mut self, img: &RgbImage) -> Result<()> {
        self.frames += 1;
        if self.detect {
            let (w, h) = img.dimensions();
            let (small, sw, sh) = downscale_linear(img.as_raw(), w, h, downscale_factor(w));
            self.detector.push(&small, sw, sh)?;
        }
        Ok(())
    }

    /// The plan for the frames fed so far.
    pub fn plan(&self, opts: &KeyframeOptions) -> KeyframePlan {
        plan_keyframes(
            self.detector.cuts(),
            self.frames,
            opts.mode,
            opts.max_frames,
        )
    }
}

/// The keyframes of a video file.
pub fn extract_keyframes(path: &Path, opts: &KeyframeOptions) -> Result<VideoKeyframes> {
    let reader = VideoReader::open(path)?;
    let info = reader.info().clone();
    let mut scanner = SceneScanner::new(opts);
    reader.for_each_frame(|frame| {
        scanner.push(&frame.image)?;
        Ok(true)
    })?;
    let plan = scanner.plan(opts);
    let mut frames = Vec::with_capacity(plan.frames.len());
    let mut wanted = plan.frames.iter().copied().peekable();
    VideoReader::open(path)?.for_each_frame(|frame| {
        if wanted.peek() == Some(&frame.index) {
            wanted.next();
            frames.push(Keyframe {
                index: frame.index,
                time_s: frame.time_s,
                image: frame.image,
            });
        }
        Ok(wanted.peek().is_some())
    })?;
    if frames.len() != plan.frames.len() {
        bail!(
            "cannot read the video {}: it gave {} frames on a second reading, fewer than the first",
            path.display(),
            frames.len()
        );
    }
    Ok(VideoKeyframes {
        info: Some(info),
        plan,
        frames,
    })
}

/// The keyframes of a clip already in memory (`(time_s, frame)` in order), e.g. a webcam
/// recording.
pub fn select_keyframes(
    clip: Vec<(f64, RgbImage)>,
    opts: &KeyframeOptions,
) -> Result<VideoKeyframes> {
    if clip.is_empty() {
        bail!("the clip has no frames");
    }
    let mut scanner = SceneScanner::new(opts);
    for (_, img) in &clip {
        scanner.push(img)?;
    }
    let plan = scanner.plan(opts);
    let mut wanted = plan.frames.iter().copied().peekable();
    let mut frames = vec![];
    for (index, (time_s, image)) in clip.into_iter().enumerate() {
        if wanted.peek() == Some(&index) {
            wanted.next();
            frames.push(Keyframe {
                index,
                time_s,
                image,
            });
        }
    }
    Ok(VideoKeyframes {
        info: None,
        plan,
        frames,
    })
}

/// The keyframes as image inputs for the engine (lossless PNG), named `NAME frame N`.
pub fn keyframe_inputs(name: &str, keyframes: &VideoKeyframes) -> Result<Vec<ImageInput>> {
    keyframes
        .frames
        .iter()
        .map(|k| {
            let mut bytes = Cursor::new(Vec::new());
            k.image
                .write_to(&mut bytes, image::ImageFormat::Png)
                .map_err(|e| anyhow!("cannot encode frame {} of {name}: {e}", k.index))?;
            Ok(ImageInput {
                name: format!("{name} frame {}", k.index),
                bytes: bytes.into_inner(),
            })
        })
        .collect()
}
