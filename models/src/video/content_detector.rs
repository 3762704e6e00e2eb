//! Scene-cut detection on HSV differences between consecutive frames.
//!
//! Ports PySceneDetect 0.6.4 (`requirements.txt` of the MIO reference pins
//! `scenedetect==0.6.4`), as `utils.extract_frames` drives it: `ContentDetector()` with its
//! defaults (threshold 27.0, `min_scene_len` 15 frames, weights hue/sat/lum 1/1/1 and edges 0,
//! flash filter in MERGE mode) inside a `SceneManager` that auto-downscales each frame by
//! `width // 256` (frames narrower than 256 px are not scaled) with `cv2.INTER_LINEAR`.
//!
//! - frame score = mean |ΔH| + mean |ΔS| + mean |ΔV| over pixels, divided by 3, with H, S, V
//!   as OpenCV's 8-bit `COLOR_BGR2HSV` (H in 0..180): [`rgb_to_hsv_opencv`] is OpenCV's own
//!   fixed-point formula (`hsv_shift` 12, rounded division tables).
//! - the first frame scores 0; a frame whose score is ≥ threshold starts a new scene, subject
//!   to the [`FlashFilter`] (`scene_detector.FlashFilter`, MERGE mode).
//!
//! Deviation: [`downscale_linear`] is a float bilinear resize with OpenCV's half-pixel centres;
//! OpenCV rounds its weights to 11 bits, so a downscaled pixel may differ by one level.

use crate::{Error, Result};

/// `ContentDetector`'s constructor arguments that `extract_frames` leaves at their defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContentDetectorConfig {
    /// A frame whose score reaches this starts a new scene (PySceneDetect default 27.0).
    pub threshold: f64,
    /// Frames a scene must last before the next cut (PySceneDetect default 15).
    pub min_scene_len: usize,
}

impl Default for ContentDetectorConfig {
    fn default() -> Self {
        Self {
            threshold: 27.0,
            min_scene_len: 15,
        }
    }
}

/// PySceneDetect's `compute_downscale_factor` with its `DEFAULT_MIN_WIDTH` of 256.
pub fn downscale_factor(width: u32) -> u32 {
    if width < 256 {
        1
    } else {
        width / 256
    }
}

/// Downscales packed RGB by `factor` to `(round(w / factor), round(h / factor))` with
/// `cv2.INTER_LINEAR` geometry (half-pixel centres, edge clamp). Returns the pixels and size.
pub fn downscale_linear(rgb: &[u8], w: u32, h: u32, factor: u32) -> (Vec<u8>, u32, u32) {
    if factor <= 1 {
        return (rgb.to_vec(), w, h);
    }
    let round_div = |n: u32| ((f64::from(n) / f64::from(factor)).round() as u32).max(1);
    let (ow, oh) = (round_div(w), round_div(h));
    let taps = |out: u32, inp: u32| -> Vec<(usize, usize, f64)> {
        let scale = f64::from(inp) / f64::from(out);
        (0..out)
            .map(|d| {
                let src = ((f64::from(d) + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(inp as usize - 1);
                let i1 = (i0 + 1).min(inp as usize - 1);
                (i0, i1, src - src.floor())
            })
            .collect()
    };
    let (xs, ys) = (taps(ow, w), taps(oh, h));
    let stride = w as usize * 3;
    let mut out = Vec::with_capacity(ow as usize * oh as usize * 3);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            for c in 0..3 {
                let p = |y: usize, x: usize| f64::from(rgb[y * stride + x * 3 + c]);
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                out.push((top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    (out, ow, oh)
}

/// One pixel to OpenCV's 8-bit HSV (`RGB2HSV_b`): H in 0..180, S and V in 0..=255.
pub fn rgb_to_hsv_opencv(r: u8, g: u8, b: u8) -> [u8; 3] {
    const SHIFT: i32 = 12;
    const HALF: i32 = 1 << (SHIFT - 1);
    let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
    let v = r.max(g).max(b);
    let diff = v - r.min(g).min(b);
    // sdiv_table[v] = round((255 << 12) / v), hdiv_table180[diff] = round((180 << 12) / (6 diff)).
    let sdiv = if v == 0 {
        0
    } else {
        (f64::from(255 << SHIFT) / f64::from(v)).round() as i32
    };
    let hdiv = if diff == 0 {
        0
    } else {
        (f64::from(180 << SHIFT) / (6.0 * f64::from(diff))).round() as i32
    };
    let s = (diff * sdiv + HALF) >> SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * hdiv + HALF) >> SHIFT;
    if h < 0 {
        h += 180;
    }
    [h as u8, s as u8, v as u8]
}

/// PySceneDetect's `FlashFilter` in MERGE mode: cuts closer than `length` frames to the
/// previous one are merged into it; before the first cut, cuts within `length` frames of
/// the first frame are dropped.
#[derive(Debug, Clone)]
pub struct FlashFilter {
    length: usize,
    last_above: Option<usize>,
    merge_enabled: bool,
    merge_triggered: bool,
    merge_start: usize,
}

impl FlashFilter {
    /// A filter of `length` frames (the detector's `min_scene_len`).
    pub fn new(length: usize) -> Self {
        Self {
            length,
            last_above: None,
            merge_enabled: false,
            merge_triggered: false,
            merge_start: 0,
        }
    }

    /// Feeds frame `frame` (sequential); returns the cuts it emits.
    pub fn filter(&mut self, frame: usize, above: bool) -> Vec<usize> {
        if self.length == 0 {
            return if above { vec![frame] } else { vec![] };
        }
        let last = *self.last_above.get_or_insert(frame);
        let min_length_met = frame.saturating_sub(last) >= self.length;
        if above {
            self.last_above = Some(frame);
        }
        let last = self.last_above.unwrap_or(frame);
        if self.merge_triggered {
            let merged = last.saturating_sub(self.merge_start);
            if min_length_met && !above && merged >= self.length {
                self.merge_triggered = false;
                return vec![last];
            }
            return vec![];
        }
        if !above {
            return vec![];
        }
        if min_length_met {
            self.merge_enabled = true;
            return vec![frame];
        }
        if self.merge_enabled {
            self.merge_triggered = true;
            self.merge_start = frame;
        }
        vec![]
    }
}

/// PySceneDetect's `ContentDetector` (hue, saturation and value weights 1, edges 0) fed one
/// frame at a time, already downscaled.
#[derive(Debug, Clone)]
pub struct ContentDetector {
    cfg: ContentDetectorConfig,
    last: Option<(u32, u32, Vec<u8>)>,
    filter: FlashFilter,
    frame: usize,
    cuts: Vec<usize>,
    scores: Vec<f64>,
}

impl ContentDetector {
    /// A detector with `cfg`.
    pub fn new(cfg: ContentDetectorConfig) -> Self {
        Self {
            cfg,
            last: None,
            filter: FlashFilter::new(cfg.min_scene_len),
            frame: 0,
            cuts: vec![],
            scores: vec![],
        }
    }

    /// Feeds the next frame (packed RGB, `w`×`h`); returns its score (0 for the first frame).
    pub fn push(&mut self, rgb: &[u8], w: u32, h: u32) -> Result<f64> {
        let n = w as usize * h as usize;
        if n == 0 || rgb.len() != n * 3 {
            return Err(Error::InvalidArgument(format!(
                "a video frame has {} bytes for {w}x{h} RGB pixels",
                rgb.len()
            )));
        }
        let hsv: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| rgb_to_hsv_opencv(p[0], p[1], p[2]))
            .collect();
        let score = match &self.last {
            Some((lw, lh, prev)) if (*lw, *lh) == (w, h) => {
                let mut sum = [0u64; 3];
                for (a, b) in hsv.chunks_exact(3).zip(prev.chunks_exact(3)) {
                    for c in 0..3 {
                        sum[c] += u64::from(a[c].abs_diff(b[c]));
                    }
                }
                sum.iter().map(|&s| s as f64 / n as f64).sum::<f64>() / 3.0
            }
            // PySceneDetect skips frames whose size changed; we restart the comparison.
            _ => 0.0,
        };
        self.last = Some((w, h, hsv));
        let frame = self.frame;
        self.cuts
            .extend(self.filter.filter(frame, score >= self.cfg.threshold));
        self.scores.push(score);
        self.frame += 1;
        Ok(score)
    }

    /// Frames fed so far.
    pub fn frames(&self) -> usize {
        self.frame
    }

    /// The cuts found so far (first frames of new scenes), ascending.
    pub fn cuts(&self) -> &[usize] {
        &self.cuts
    }

    /// Every frame's score, in order.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hsv_matches_opencv_values() {
        // cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV) (opencv-python-headless) for these RGB pixels (24 random
        // ones, then edge cases).
        let table: [(u8, u8, u8, [u8; 3]); 33] = [
            (217, 163, 130, [11, 102, 217]),
            (69, 78, 10, [34, 222, 78]),
            (19, 4, 44, [131, 232, 44]),
            (208, 166, 233, [139, 73, 233]),
            (128, 155, 248, [113, 123, 248]),
            (186, 161, 139, [14, 64, 186]),
            (143, 239, 71, [47, 179, 239]),
            (208, 171, 0, [25, 255, 208]),
            (100, 219, 141, [70, 139, 219]),
            (8, 195, 186, [89, 245, 195]),
            (216, 44, 22, [3, 229, 216]),
            (220, 5, 138, [161, 249, 220]),
            (20, 76, 123, [104, 214, 123]),
            (108, 103, 7, [29, 238, 108]),
            (1, 31, 2, [61, 247, 31]),
            (171, 134, 165, [155, 55, 171]),
            (65, 157, 195, [99, 170, 195]),
            (98, 117, 255, [116, 157, 255]),
            (206, 251, 97, [39, 156, 251]),
            (175, 243, 166, [56, 81, 243]),
            (215, 176, 180, [177, 46, 215]),
            (99, 224, 34, [50, 216, 224]),
            (148, 184, 216, [104, 80, 216]),
            (134, 96, 79, [9, 105, 134]),
            (255, 0, 0, [0, 255, 255]),
            (0, 255, 0, [60, 255, 255]),
            (0, 0, 255, [120, 255, 255]),
            (255, 0, 255, [150, 255, 255]),
            (128, 128, 128, [0, 0, 128]),
            (0, 0, 0, [0, 0, 0]),
            (1, 2, 3, [105, 170, 3]),
            (255, 255, 254, [30, 1, 255]),
            (10, 200, 199, [90, 242, 200]),
        ];
        for (r, g, b, want) in table {
            assert_eq!(rgb_to_hsv_opencv(r, g, b), want, "rgb {r} {g} {b}");
        }
    }

    #[test]
    fn flash_filter_drops_early_cut_and_merges_close_ones() {
        let mut f = FlashFilter::new(15);
        let mut cuts = vec![];
        for i in 0..100 {
            cuts.extend(f.filter(i, [5, 20, 25, 60].contains(&i)));
        }
        // 5: within 15 frames of the start, dropped; 20: a cut; 25: a flash 5 frames later,
        // merged into 20's scene; 60 ends the merge and is emitted once 15 quiet frames pass.
        assert_eq!(cuts, vec![20, 60]);
    }

    #[test]
    fn detector_finds_a_hard_cut() {
        let mut d = ContentDetector::new(ContentDetectorConfig::default());
        let red = [200u8, 10, 10].repeat(16);
        let blue = [10u8, 10, 200].repeat(16);
        for i in 0..40 {
            let px = if i < 20 { &red } else { &blue };
            d.push(px, 4, 4).unwrap();
        }
        assert_eq!(d.cuts(), &[20]);
        assert_eq!(d.scores()[0], 0.0);
    }

    #[test]
    fn downscale_halves_by_averaging_pairs() {
        let rgb: Vec<u8> = [0u8, 0, 0, 100, 100, 100].repeat(4); // 4x2, stripes 0/100
        let (out, w, h) = downscale_linear(&rgb, 4, 2, 2);
        assert_eq!((w, h), (2, 1));
        assert_eq!(out, vec![50; 6]);
        assert_eq!(downscale_factor(255), 1);
        assert_eq!(downscale_factor(640), 2);
    }
}
