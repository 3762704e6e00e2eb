//! Sample-rate conversion and channel downmix at the device edge: a streaming linear
//! interpolator with exact integer positions (no drift over long sessions).
//!
//! Deviation: linear interpolation has no anti-alias filter, which is fine for VAD, monitoring
//! and playback. Model inputs that must match the reference bit for bit are resampled with
//! the exact torchaudio port, `mio_models::speech_codec::resample`.

/// Streaming linear resampler from `from` Hz to `to` Hz; chunks may have any length and the
/// output does not depend on how the input was cut.
#[derive(Debug, Clone)]
pub struct LinearResampler {
    from: u64,
    to: u64,
    /// Input samples consumed before the current chunk.
    consumed: u64,
    /// Output samples produced so far.
    produced: u64,
    /// The last input sample of the previous chunk.
    last: Option<f32>,
}

impl LinearResampler {
    /// A resampler from `from` Hz to `to` Hz (both clamped to at least 1).
    pub fn new(from: u32, to: u32) -> Self {
        Self {
            from: u64::from(from.max(1)),
            to: u64::from(to.max(1)),
            consumed: 0,
            produced: 0,
            last: None,
        }
    }

    /// True when the rates are equal (samples pass through unchanged).
    pub fn is_identity(&self) -> bool {
        self.from == self.to
    }

    /// Converts one chunk, appending the output samples to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        if self.is_identity() {
            out.extend_from_slice(input);
            return;
        }
        let end = self.consumed + input.len() as u64;
        let at = |global: u64, last: Option<f32>| -> f32 {
            if global < self.consumed {
                last.unwrap_or(0.0)
            } else {
                input[(global - self.consumed) as usize]
            }
        };
        loop {
            let num = self.produced * self.from;
            let i = num / self.to;
            let frac = (num % self.to) as f32 / self.to as f32;
            if frac == 0.0 && i < end {
                out.push(at(i, self.last));
            } else if i + 1 < end {
                let (a, b) = (at(i, self.last), at(i + 1, self.last));
                out.push(a + (b - a) * frac);
            } else {
                break;
            }
            self.produced += 1;
        }
        if let Some(&l) = input.last() {
            self.last = Some(l);
        }
        self.consumed = end;
    }

    /// Ends the stream: emits the outputs that fall after the last input sample (holding
    /// it), so the total is `ceil(inputs * to / from)`. Further input starts a new stream.
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        if let Some(last) = self.last {
            while self.produced * self.from < self.consumed * self.to {
                out.push(last);
                self.produced += 1;
            }
        }
        *self = Self::new(self.from as u32, self.to as u32);
    }
}

/// Resamples a whole clip (linear interpolation); the output has
/// `ceil(len * to / from)` samples.
pub fn resample_linear(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity(samples.len() * to.max(1) as usize / from.max(1) as usize + 1);
    let mut r = LinearResampler::new(from, to);
    r.process(samples, &mut out);
    r.finish(&mut out);
    out
}

/// Averages interleaved frames of `channels` channels into mono, appending to `out`.
pub fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() / channels as f32),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    #[test]
    fn identity_passes_through() {
        assert_eq!(resample_linear(&[0.1, 0.2], 16_000, 16_000), vec![0.1, 0.2]);
    }

    #[test]
    fn upsampling_a_ramp_interpolates() {
        let out = resample_linear(&ramp(5), 1, 2);
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0]);
    }

    #[test]
    fn downsampling_keeps_every_third() {
        let out = resample_linear(&ramp(9), 48_000, 16_000);
        assert_eq!(out, vec![0.0, 3.0, 6.0]);
    }

    #[test]
    fn streaming_matches_whole_clip() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        for (from, to) in [(16_000, 44_100), (48_000, 16_000), (22_050, 24_000)] {
            let whole = resample_linear(&xs, from, to);
            let mut r = LinearResampler::new(from, to);
            let mut parts = vec![];
            for c in xs.chunks(7) {
                r.process(c, &mut parts);
            }
            r.finish(&mut parts);
            assert_eq!(whole, parts, "{from} -> {to}");
            let want = (xs.len() as u64 * u64::from(to)).div_ceil(u64::from(from));
            assert_eq!(whole.len() as u64, want, "{from} -> {to}");
        }
    }

    #[test]
    fn downmix_averages() {
        let mut out = vec![];
        downmix(&[1.0, 0.0, 0.5, 0.5], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
    }
}
