//! The seeded RNG of sampling: xoshiro256** seeded through SplitMix64, and multinomial
//! draws over a probability row (stand-in for `torch.multinomial`).
//!
//! Deviation: torch's generator is not reproduced; the guarantee is determinism per seed
//! (same seed, same probabilities → same draws, on every platform and crate version).

/// xoshiro256** (Blackman & Vigna), seeded by SplitMix64 from a `u64`.
#[derive(Debug, Clone)]
pub struct SeededRng {
    s: [u64; 4],
}

impl SeededRng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Draws one index with probability proportional to `weights` (non-negative; zero and
    /// non-finite weights are never drawn). `None` when no weight is positive.
    pub fn multinomial(&mut self, weights: &[f32]) -> Option<usize> {
        let valid = |w: f32| w.is_finite() && w > 0.0;
        let total: f64 = weights
            .iter()
            .filter(|w| valid(**w))
            .map(|&w| f64::from(w))
            .sum();
        if total <= 0.0 {
            return None;
        }
        let target = self.next_f64() * total;
        let mut acc = 0f64;
        let mut last = None;
        for (i, &w) in weights.iter().enumerate() {
            if !valid(w) {
                continue;
            }
            acc += f64::from(w);
            last = Some(i);
            if target < acc {
                return Some(i);
            }
        }
        last
    }

    /// Draws `n` distinct indices (`torch.multinomial(.., n, replacement=False)`): each draw
    /// is proportional to the weights not drawn yet. `None` when fewer than `n` are positive.
    pub fn multinomial_without_replacement(
        &mut self,
        weights: &[f32],
        n: usize,
    ) -> Option<Vec<usize>> {
        let mut w = weights.to_vec();
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.multinomial(&w)?;
            w[i] = 0.0;
            out.push(i);
        }
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<u64> = (0..8)
            .scan(SeededRng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SeededRng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SeededRng::new(43), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = SeededRng::new(0);
        assert!((0..1000)
            .map(|_| r.next_f64())
            .all(|x| (0.0..1.0).contains(&x)));
    }

    #[test]
    fn multinomial_follows_weights() {
        let mut r = SeededRng::new(7);
        let w = [0.0, 0.25, f32::NEG_INFINITY, 0.75];
        let mut counts = [0usize; 4];
        for _ in 0..20_000 {
            counts[r.multinomial(&w).unwrap()] += 1;
        }
        assert_eq!((counts[0], counts[2]), (0, 0));
        let frac = counts[3] as f64 / 20_000.0;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
        assert_eq!(r.multinomial(&[0.0, 0.0]), None);
    }

    #[test]
    fn without_replacement_is_distinct() {
        let mut r = SeededRng::new(1);
        let got = r
            .multinomial_without_replacement(&[0.1, 0.2, 0.3, 0.4], 4)
            .unwrap();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert!(r
            .multinomial_without_replacement(&[0.5, 0.0, 0.5], 3)
            .is_none());
    }
}
