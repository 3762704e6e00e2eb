//! Which frames of a video become image blocks.
//!
//! Ports `utils.extract_frames` of the MIO reference: scenes from the [`ContentDetector`]'s
//! cuts, one frame per scene as `scenedetect.save_images(scene_list, num_images=1)` picks it
//! (the middle frame, `start + len // 2`); when no cut is found (or uniform frames are asked
//! for, as the reference's base-model captioning does with `force_uniform=True`), every
//! `max(1, total // 10)`-th frame from frame 0 (~10 frames, 11 when `total % 10` leaves room).
//!
//! Deviations: the reference returns `os.listdir` order (arbitrary); frames here are in time
//! order. The reference counts frames from the container's `CAP_PROP_FRAME_COUNT`; here the
//! decoded count is used. The reference has no cap; [`cap_frames`] keeps at most `max_frames`
//! evenly spread over the selection ([`DEFAULT_MAX_FRAMES`] keeps every reference test
//! video's selection whole while bounding the prompt to 16 × 34 tokens).
//!
//! [`ContentDetector`]: super::ContentDetector

use serde::{Deserialize, Serialize};

/// Frames the uniform fallback aims at (`total_frames // 10` in the reference).
pub const UNIFORM_TARGET: usize = 10;
/// Default cap on the frames of one video.
pub const DEFAULT_MAX_FRAMES: usize = 16;

/// How frames are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyframeMode {
    /// Scene cuts, uniform frames when there are none (the reference's default).
    #[default]
    Auto,
    /// Uniform frames always (the reference's `force_uniform=True`).
    Uniform,
}

/// How the frames were chosen in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// One frame per detected scene.
    Scenes,
    /// Evenly spaced frames.
    Uniform,
}

/// The chosen frames of a video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyframePlan {
    /// Frame indices, ascending.
    pub frames: Vec<usize>,
    /// How they were chosen.
    pub selection: Selection,
    /// The detected cuts (first frames of new scenes).
    pub cuts: Vec<usize>,
    /// Frames in the video.
    pub total_frames: usize,
    /// Frames selected before the cap.
    pub selected_before_cap: usize,
}

/// Every `max(1, total / 10)`-th frame, starting at 0.
pub fn uniform_frames(total: usize) -> Vec<usize> {
    let interval = (total / UNIFORM_TARGET).max(1);
    (0..total).step_by(interval).collect()
}

/// The middle frame of each scene bounded by `cuts` (sorted, deduplicated here) over
/// `0..total`.
pub fn scene_middles(cuts: &[usize], total: usize) -> Vec<usize> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < total).collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds.retain(|&c| c > 0);
    let starts = std::iter::once(0).chain(bounds.iter().copied());
    let ends = bounds.iter().copied().chain(std::iter::once(total));
    starts
        .zip(ends)
        .map(|(s, e)| s + e.saturating_sub(s).max(1) / 2)
        .collect()
}

/// At most `max` of `frames`, evenly spread (`frames[k * n / max]`); `max == 0` keeps all.
pub fn cap_frames(frames: &[usize], max: usize) -> Vec<usize> {
    if max == 0 || frames.len() <= max {
        return frames.to_vec();
    }
    (0..max).map(|k| frames[k * frames.len() / max]).collect()
}

/// The frames to keep of a `total`-frame video with scene `cuts`.
pub fn plan_keyframes(
    cuts: &[usize],
    total: usize,
    mode: KeyframeMode,
    max_frames: usize,
) -> KeyframePlan {
    let scenes = mode == KeyframeMode::Auto && !cuts.is_empty();
    let (selected, selection) = if scenes {
        (scene_middles(cuts, total), Selection::Scenes)
    } else {
        (uniform_frames(total), Selection::Uniform)
    };
    KeyframePlan {
        frames: cap_frames(&selected, max_frames),
        selection,
        cuts: cuts.to_vec(),
        total_frames: total,
        selected_before_cap: selected.len(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uniform_matches_reference_counts() {
        assert_eq!(uniform_frames(100).len(), 10);
        assert_eq!(uniform_frames(105).len(), 11); // 0, 10, …, 100
        assert_eq!(uniform_frames(7), vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(uniform_frames(0).is_empty());
    }

    #[test]
    fn scenes_give_middle_frames() {
        assert_eq!(scene_middles(&[20], 40), vec![10, 30]);
        assert_eq!(scene_middles(&[30, 20, 20], 41), vec![10, 25, 35]);
    }

    #[test]
    fn cap_spreads_evenly() {
        let all: Vec<usize> = (0..20).collect();
        assert_eq!(cap_frames(&all, 4), vec![0, 5, 10, 15]);
        assert_eq!(cap_frames(&all, 0).len(), 20);
    }

    #[test]
    fn plan_falls_back_to_uniform() {
        let p = plan_keyframes(&[], 30, KeyframeMode::Auto, 16);
        assert_eq!(p.selection, Selection::Uniform);
        assert_eq!(p.frames, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
        let p = plan_keyframes(&[20], 40, KeyframeMode::Uniform, 3);
        assert_eq!((p.selection, p.frames.len()), (Selection::Uniform, 3));
    }
}
