//! Utterance segmentation: hands-free voice activity detection ([`Vad`]) and explicit
//! push-to-talk ([`PushToTalk`]).
//!
//! The VAD measures each frame's energy (RMS in dBFS, `20 log10 rms`, so a full-scale sine
//! reads -3 dB) against an adaptive noise floor. A frame is voiced when it is louder than
//! both `floor + threshold_db` and `min_speech_db`. Speech starts after `start_frames`
//! voiced frames in a row and keeps `pre_roll_ms` of audio before them (the first syllable);
//! it ends after `silence_ms` without a voiced frame, keeping `post_roll_ms` after the last
//! voiced one. Positions are sample indices since the first sample pushed, so results do not
//! depend on how the stream was cut into chunks.

use anyhow::{bail, Result};

/// VAD settings; the defaults suit 16 kHz speech from a desk microphone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Rate of the samples pushed.
    pub sample_rate: u32,
    /// Frame length for the energy measure.
    pub frame_ms: u32,
    /// Voiced frames in a row that start speech.
    pub start_frames: usize,
    /// Silence that ends speech (the adjustable cutoff).
    pub silence_ms: u32,
    /// Audio kept before the first voiced frame.
    pub pre_roll_ms: u32,
    /// Audio kept after the last voiced frame.
    pub post_roll_ms: u32,
    /// How far above the noise floor a voiced frame is, in dB.
    pub threshold_db: f32,
    /// Absolute level below which nothing is speech, in dBFS.
    pub min_speech_db: f32,
    /// Longest utterance; a longer one is cut there. `None` for no limit.
    pub max_utterance_ms: Option<u32>,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            frame_ms: 20,
            start_frames: 3,
            silence_ms: 700,
            pre_roll_ms: 300,
            post_roll_ms: 150,
            threshold_db: 10.0,
            min_speech_db: -50.0,
            max_utterance_ms: Some(30_000),
        }
    }
}

/// One detected (or push-to-talk) utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// First sample (index in the whole stream).
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
    /// The samples `start..end`.
    pub samples: Vec<f32>,
}

/// Floor of the energy measure (digital silence), in dBFS.
const FLOOR_DB: f32 = -100.0;
/// How fast the noise floor follows quieter frames (per frame).
const FLOOR_DOWN: f32 = 0.3;
/// How fast the noise floor follows louder non-speech frames (per frame).
const FLOOR_UP: f32 = 0.02;

/// RMS of `frame` in dBFS, never below -100.
pub fn frame_db(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return FLOOR_DB;
    }
    let ms = frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32;
    (10.0 * ms.max(1e-12).log10()).max(FLOOR_DB)
}

/// Hands-free voice activity detector; push samples, get finished utterances.
#[derive(Debug, Clone)]
pub struct Vad {
    cfg: VadConfig,
    frame_len: usize,
    /// Recent samples; `buf[0]` is stream sample `buf_start`.
    buf: Vec<f32>,
    buf_start: usize,
    /// Next frame to measure (stream index).
    next_frame: usize,
    floor_db: Option<f32>,
    /// Voiced frames in a row while idle.
    run: usize,
    /// Start of the utterance in progress (with pre-roll).
    speech_start: Option<usize>,
    /// End of the last voiced frame.
    last_voiced_end: usize,
}

impl Vad {
    /// A detector with `cfg` (rejects zero rates and frame lengths).
    pub fn new(cfg: VadConfig) -> Result<Self> {
        let frame_len = ms_to_samples(cfg.sample_rate, cfg.frame_ms);
        if frame_len == 0 || cfg.start_frames == 0 {
            bail!("the VAD needs a sample rate, a frame length and start_frames above zero");
        }
        Ok(Self {
            cfg,
            frame_len,
            buf: Vec::new(),
            buf_start: 0,
            next_frame: 0,
            floor_db: None,
            run: 0,
            speech_start: None,
            last_voiced_end: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &VadConfig {
        &self.cfg
    }

    /// True while an utterance is in progress.
    pub fn is_speaking(&self) -> bool {
        self.speech_start.is_some()
    }

    /// The current noise floor estimate in dBFS (`None` before the first frame).
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.floor_db
    }

    /// Forgets everything pushed (positions restart at 0); keeps the settings.
    pub fn reset(&mut self) {
        *self = Self {
            cfg: self.cfg,
            frame_len: self.frame_len,
            buf: Vec::new(),
            buf_start: 0,
            next_frame: 0,
            floor_db: None,
            run: 0,
            speech_start: None,
            last_voiced_end: 0,
        };
    }

    /// Changes the silence cutoff (takes effect at once).
    pub fn set_silence_ms(&mut self, ms: u32) {
        self.cfg.silence_ms = ms;
    }

    /// Adds samples; returns the utterances that ended within them.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Utterance> {
        self.buf.extend_from_slice(samples);
        let mut out = Vec::new();
        while self.next_frame + self.frame_len <= self.buf_start + self.buf.len() {
            let at = self.next_frame - self.buf_start;
            let db = frame_db(&self.buf[at..at + self.frame_len]);
            self.next_frame += self.frame_len;
            if let Some(u) = self.on_frame(db) {
                out.push(u);
            }
        }
        if self.speech_start.is_none() {
            self.trim_history();
        }
        out
    }

    /// Ends the stream: returns the utterance in progress, if any, and resets the state
    /// (stream positions keep counting).
    pub fn flush(&mut self) -> Option<Utterance> {
        let u = self.speech_start.map(|_| {
            let end = (self.last_voiced_end + self.post_roll()).min(self.stream_len());
            self.finish(end)
        });
        self.run = 0;
        self.trim_history();
        u
    }

    fn on_frame(&mut self, db: f32) -> Option<Utterance> {
        let floor = *self.floor_db.get_or_insert(db);
        let voiced = db > floor + self.cfg.threshold_db && db > self.cfg.min_speech_db;
        if !voiced && self.speech_start.is_none() {
            let rate = if db < floor { FLOOR_DOWN } else { FLOOR_UP };
            self.floor_db = Some(floor + rate * (db - floor));
        }
        let frame_end = self.next_frame;
        let Some(start) = self.speech_start else {
            self.run = if voiced { self.run + 1 } else { 0 };
            if self.run >= self.cfg.start_frames {
                let first = frame_end - self.run * self.frame_len;
                let start = first.saturating_sub(self.pre_roll()).max(self.buf_start);
                self.speech_start = Some(start);
                self.last_voiced_end = frame_end;
                self.run = 0;
            }
            return None;
        };
        if voiced {
            self.last_voiced_end = frame_end;
        }
        let max = self
            .cfg
            .max_utterance_ms
            .map(|ms| ms_to_samples(self.cfg.sample_rate, ms));
        if max.is_some_and(|m| frame_end - start >= m) {
            return Some(self.finish(frame_end));
        }
        let silence = frame_end - self.last_voiced_end;
        if silence >= ms_to_samples(self.cfg.sample_rate, self.cfg.silence_ms) {
            let end = (self.last_voiced_end + self.post_roll()).min(frame_end);
            return Some(self.finish(end));
        }
        None
    }

    /// Cuts the utterance `speech_start..end` out of the buffer.
    fn finish(&mut self, end: usize) -> Utterance {
        let start = self.speech_start.take().unwrap_or(end);
        let (a, b) = (start - self.buf_start, end - self.buf_start);
        let samples = self.buf[a..b].to_vec();
        self.buf.drain(..b);
        self.buf_start = end;
        Utterance {
            start,
            end,
            samples,
        }
    }

    /// While idle, keeps only what a pre-roll and a starting run can need.
    fn trim_history(&mut self) {
        let keep = self.pre_roll() + (self.cfg.start_frames + 1) * self.frame_len;
        let unmeasured = self.buf_start + self.buf.len() - self.next_frame;
        let keep = keep + unmeasured;
        if self.buf.len() > keep {
            let cut = self.buf.len() - keep;
            self.buf.drain(..cut);
            self.buf_start += cut;
        }
    }

    fn pre_roll(&self) -> usize {
        ms_to_samples(self.cfg.sample_rate, self.cfg.pre_roll_ms)
    }

    fn post_roll(&self) -> usize {
        ms_to_samples(self.cfg.sample_rate, self.cfg.post_roll_ms)
    }

    fn stream_len(&self) -> usize {
        self.buf_start + self.buf.len()
    }
}

fn ms_to_samples(rate: u32, ms: u32) -> usize {
    (u64::from(rate) * u64::from(ms) / 1000) as usize
}

/// Push-to-talk: the user starts and stops the utterance explicitly.
#[derive(Debug, Clone, Default)]
pub struct PushToTalk {
    pos: usize,
    current: Option<Utterance>,
}

impl PushToTalk {
    /// A segmenter with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The talk key went down: samples pushed from now on are kept.
    pub fn start(&mut self) {
        if self.current.is_none() {
            self.current = Some(Utterance {
                start: self.pos,
                end: self.pos,
                samples: Vec::new(),
            });
        }
    }

    /// True while the talk key is down.
    pub fn is_active(&self) -> bool {
        self.current.is_some()
    }

    /// Adds samples (kept only while active).
    pub fn push(&mut self, samples: &[f32]) {
        self.pos += samples.len();
        if let Some(u) = &mut self.current {
            u.samples.extend_from_slice(samples);
            u.end = self.pos;
        }
    }

    /// The talk key went up: returns what was recorded (`None` if not started or empty).
    pub fn stop(&mut self) -> Option<Utterance> {
        self.current.take().filter(|u| !u.samples.is_empty())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::audio::{write_wav, AudioSource, ChunkOptions, FileSource, Pacing};

    const SR: usize = 16_000;

    fn silence(ms: usize) -> Vec<f32> {
        vec![0.0; SR * ms / 1000]
    }

    fn tone(ms: usize, amp: f32) -> Vec<f32> {
        (0..SR * ms / 1000)
            .map(|i| amp * (i as f32 * 300.0 * std::f32::consts::TAU / SR as f32).sin())
            .collect()
    }

    /// Deterministic white noise (xorshift) of RMS about `amp / sqrt(3)`.
    fn noise(ms: usize, amp: f32, seed: u32) -> Vec<f32> {
        let mut s = seed.max(1);
        (0..SR * ms / 1000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                amp * (s as f32 / u32::MAX as f32 * 2.0 - 1.0)
            })
            .collect()
    }

    fn run(xs: &[f32], chunk: usize, cfg: VadConfig) -> Vec<Utterance> {
        let mut vad = Vad::new(cfg).unwrap();
        let mut out = vec![];
        for c in xs.chunks(chunk) {
            out.extend(vad.push(c));
        }
        out.extend(vad.flush());
        out
    }

    fn ms(n: usize) -> usize {
        SR * n / 1000
    }

    #[test]
    fn silence_has_no_utterance() {
        assert!(run(&silence(3000), 160, VadConfig::default()).is_empty());
    }

    #[test]
    fn steady_noise_has_no_utterance() {
        assert!(run(&noise(3000, 0.05, 7), 333, VadConfig::default()).is_empty());
    }

    #[test]
    fn tone_burst_is_one_utterance_with_pre_and_post_roll() {
        let xs = [silence(1000), tone(500, 0.3), silence(1500)].concat();
        let us = run(&xs, 480, VadConfig::default());
        assert_eq!(us.len(), 1);
        let u = &us[0];
        assert_eq!(u.start, ms(1000 - 300));
        assert_eq!(u.end, ms(1500 + 150));
        assert_eq!(u.samples, xs[u.start..u.end]);
    }

    #[test]
    fn short_gap_keeps_one_utterance_long_gap_splits() {
        let cfg = VadConfig::default();
        let short = [
            silence(500),
            tone(300, 0.3),
            silence(400),
            tone(300, 0.3),
            silence(1500),
        ];
        assert_eq!(run(&short.concat(), 256, cfg).len(), 1);
        let long = [
            silence(500),
            tone(300, 0.3),
            silence(1000),
            tone(300, 0.3),
            silence(1500),
        ];
        let us = run(&long.concat(), 256, cfg);
        assert_eq!(us.len(), 2);
        assert!(us[0].end <= us[1].start);
        // A longer cutoff merges them again.
        let patient = VadConfig {
            silence_ms: 1200,
            ..cfg
        };
        assert_eq!(run(&long.concat(), 256, patient).len(), 1);
    }

    #[test]
    fn click_is_not_speech() {
        let xs = [silence(500), tone(40, 0.5), silence(1000)].concat();
        assert!(run(&xs, 160, VadConfig::default()).is_empty());
    }

    #[test]
    fn burst_over_noise_is_found_by_the_adaptive_floor() {
        let bed = noise(3000, 0.03, 11);
        let mut xs = bed.clone();
        for (x, t) in xs[ms(1000)..].iter_mut().zip(tone(600, 0.3)) {
            *x += t;
        }
        let us = run(&xs, 320, VadConfig::default());
        assert_eq!(us.len(), 1);
        assert!(
            us[0].start <= ms(1000) && us[0].start >= ms(600),
            "{}",
            us[0].start
        );
        assert!(
            us[0].end >= ms(1600) && us[0].end <= ms(1800),
            "{}",
            us[0].end
        );
    }

    #[test]
    fn result_does_not_depend_on_chunking() {
        let xs = [
            silence(700),
            tone(400, 0.2),
            silence(900),
            tone(250, 0.4),
            silence(800),
        ]
        .concat();
        let a = run(&xs, 1, VadConfig::default());
        let b = run(&xs, 4096, VadConfig::default());
        assert_eq!(a.len(), 2);
        assert_eq!(a, b);
    }

    #[test]
    fn unfinished_speech_is_returned_by_flush_and_long_speech_is_cut() {
        let xs = [silence(300), tone(800, 0.3)].concat();
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        assert!(vad.push(&xs).is_empty());
        assert!(vad.is_speaking());
        let u = vad.flush().unwrap();
        assert_eq!(u.end, xs.len());
        vad.push(&xs);
        vad.reset();
        assert!(!vad.is_speaking() && vad.noise_floor_db().is_none());
        assert_eq!(
            vad.push(&[silence(300), tone(800, 0.3), silence(1000)].concat())[0].start,
            0
        );
        let capped = VadConfig {
            max_utterance_ms: Some(1000),
            ..VadConfig::default()
        };
        let us = run(&[silence(300), tone(2500, 0.3)].concat(), 320, capped);
        assert!(us.len() >= 2 && us[0].end - us[0].start <= ms(1000));
    }

    #[test]
    fn push_to_talk_keeps_what_is_between_start_and_stop() {
        let mut ptt = PushToTalk::new();
        ptt.push(&[1.0; 10]);
        assert!(ptt.stop().is_none());
        ptt.start();
        ptt.push(&[2.0; 5]);
        ptt.push(&[3.0; 5]);
        let u = ptt.stop().unwrap();
        assert_eq!((u.start, u.end, u.samples.len()), (10, 20, 10));
        assert!(!ptt.is_active());
    }

    /// The speech fixture, padded with a second of silence on each side and played through
    /// the file-backed microphone in 20 ms chunks: exactly one utterance, covering it.
    #[test]
    fn fixture_speech_is_exactly_one_utterance() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let clip =
            crate::audio::decode_file(&root.join("tests/fixtures/golden/inputs/speech_16k.wav"))
                .unwrap();
        assert_eq!(clip.sample_rate, 16_000);
        let pad = silence(1000);
        let padded = [pad.clone(), clip.samples.clone(), pad.clone()].concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("padded.wav");
        write_wav(&path, &padded, 16_000).unwrap();
        let mut src =
            FileSource::open(&path, ChunkOptions::default(), Pacing::AsFastAsPossible).unwrap();
        let mut vad = Vad::new(VadConfig::default()).unwrap();
        let mut us = vec![];
        for chunk in src.start().unwrap() {
            us.extend(vad.push(&chunk));
        }
        us.extend(vad.flush());
        assert_eq!(src.dropped_chunks(), 0);
        assert_eq!(
            us.len(),
            1,
            "{:?}",
            us.iter().map(|u| (u.start, u.end)).collect::<Vec<_>>()
        );
        let (speech_start, speech_end) = (pad.len(), pad.len() + clip.samples.len());
        assert!(us[0].start <= speech_start, "{}", us[0].start);
        assert!(us[0].end >= speech_end, "{}", us[0].end);
        assert!(us[0].end <= padded.len());
        assert_eq!(us[0].samples, padded[us[0].start..us[0].end]);
    }
}
