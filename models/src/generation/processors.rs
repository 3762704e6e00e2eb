//! Logits processors and warpers of transformers 4.34 (`generation/logits_process.py`),
//! applied in place to one row of scores (`vocab` f32 values):
//! `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper`,
//! `TopPLogitsWarper`, plus the soft-max helpers the search loops need.
//!
//! Order, as `GenerationMixin._get_logits_processor` / `_get_logits_warper` build it:
//! repetition penalty, then (our custom processor, appended after HF's) modality
//! constraints; for sampling then temperature, top-k, top-p. Filtered tokens get `-inf`.
//!
//! Deviations: ties in sorts are broken by token id (torch's CPU sort order is unspecified);
//! soft-max sums are accumulated in f64.

use super::config::GenerationConfig;

/// `RepetitionPenaltyLogitsProcessor`: every token that occurs in `ids` (the whole row so
/// far, prompt and padding included, as HF's `input_ids`) has its score divided by `penalty`
/// when positive, multiplied when negative. Each distinct token is penalised once.
pub fn repetition_penalty(scores: &mut [f32], ids: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen: Vec<u32> = ids.to_vec();
    seen.sort_unstable();
    seen.dedup();
    for id in seen {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = if *s < 0.0 { *s * penalty } else { *s / penalty };
        }
    }
}

/// `TemperatureLogitsWarper`: scores / temperature.
pub fn temperature(scores: &mut [f32], temperature: f32) {
    for s in scores.iter_mut() {
        *s /= temperature;
    }
}

/// `TopKLogitsWarper`: keeps the tokens scoring at least the k-th best score (ties at the
/// threshold survive), `k = max(top_k, min_tokens_to_keep)`.
pub fn top_k(scores: &mut [f32], top_k: usize, min_tokens_to_keep: usize) {
    let k = top_k.max(min_tokens_to_keep).min(scores.len());
    if k == 0 || k == scores.len() {
        return;
    }
    let mut sorted: Vec<f32> = scores.to_vec();
    sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    for s in scores.iter_mut() {
        if *s < threshold {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// `TopPLogitsWarper`: sorts ascending, removes the tokens whose cumulative probability
/// is `<= 1 - top_p`, always keeping the `min_tokens_to_keep` best.
pub fn top_p(scores: &mut [f32], top_p: f64, min_tokens_to_keep: usize) {
    if scores.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let sorted: Vec<f32> = order.iter().map(|&i| scores[i]).collect();
    let probs = softmax(&sorted);
    // HF compares the f32 cumulative sum with the Python float `1 - top_p`, cast to f32.
    let limit = (1.0 - top_p) as f32;
    let keep_from = scores.len().saturating_sub(min_tokens_to_keep);
    let mut cumulative = 0f32;
    for (rank, (&idx, p)) in order.iter().zip(probs).enumerate() {
        cumulative += p;
        if rank < keep_from && cumulative <= limit {
            scores[idx] = f32::NEG_INFINITY;
        }
    }
}

/// The sampling warpers of `_get_logits_warper`, in its order (temperature, top-k, top-p).
/// `min_tokens_to_keep` is 2 for beam sampling, 1 otherwise.
pub fn warp(scores: &mut [f32], cfg: &GenerationConfig, min_tokens_to_keep: usize) {
    if cfg.temperature != 1.0 {
        temperature(scores, cfg.temperature);
    }
    if cfg.top_k != 0 {
        top_k(scores, cfg.top_k, min_tokens_to_keep);
    }
    if cfg.top_p < 1.0 {
        top_p(scores, cfg.top_p, min_tokens_to_keep);
    }
}

/// Soft-max of `xs` (f64 accumulation, f32 result). All `-inf` gives all zeros.
pub fn softmax(xs: &[f32]) -> Vec<f32> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![0.0; xs.len()];
    }
    let exps: Vec<f64> = xs.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// Log-soft-max of `xs` in place (`x - max - ln Σ exp(x - max)`, f64 sum).
pub fn log_softmax(xs: &mut [f32]) {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return;
    }
    let sum: f64 = xs.iter().map(|&x| f64::from(x - max).exp()).sum();
    let log_sum = sum.ln() as f32;
    for x in xs.iter_mut() {
        *x = (*x - max) - log_sum;
    }
}

/// Index of the largest score (the first one on ties, as `torch.argmax`).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NEG: f32 = f32::NEG_INFINITY;

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative_once() {
        let mut s = vec![2.0, -1.0, 3.0, 0.5];
        // token 0 twice (penalised once), token 1 negative, token 3 untouched.
        repetition_penalty(&mut s, &[0, 1, 0], 2.0);
        assert_eq!(s, vec![1.0, -2.0, 3.0, 0.5]);
        let mut same = vec![2.0, -1.0];
        repetition_penalty(&mut same, &[0, 1], 1.0);
        assert_eq!(same, vec![2.0, -1.0]);
    }

    #[test]
    fn temperature_divides() {
        let mut s = vec![1.0, -2.0];
        temperature(&mut s, 0.5);
        assert_eq!(s, vec![2.0, -4.0]);
    }

    #[test]
    fn top_k_keeps_k_best_and_ties() {
        let mut s = vec![1.0, 5.0, 3.0, 3.0, 0.0];
        top_k(&mut s, 2, 1);
        // threshold = 3.0: both 3.0 survive, as HF's `scores < kth` rule.
        assert_eq!(s, vec![NEG, 5.0, 3.0, 3.0, NEG]);
        let mut s = vec![1.0, 5.0, 3.0];
        top_k(&mut s, 1, 2);
        assert_eq!(s, vec![NEG, 5.0, 3.0]);
    }

    #[test]
    fn top_p_matches_hf_rule() {
        let p = [0.05f32, 0.15, 0.3, 0.5];
        let logits: Vec<f32> = p.iter().map(|x| x.ln()).collect();
        // ascending cumulative: 0.05, 0.2, 0.5, 1.0; top_p 0.7 removes cum <= 0.3.
        let mut s = logits.clone();
        top_p(&mut s, 0.7, 1);
        assert_eq!(&s[..2], &[NEG, NEG]);
        assert_eq!(&s[2..], &logits[2..]);
        // top_p 0.9 removes cum <= 0.1: only the first.
        let mut s = logits.clone();
        top_p(&mut s, 0.9, 1);
        assert_eq!(s[0], NEG);
        assert_eq!(&s[1..], &logits[1..]);
        // top_p 0 removes everything but the min_tokens_to_keep best.
        let mut s = logits.clone();
        top_p(&mut s, 0.0, 2);
        assert_eq!(&s[..2], &[NEG, NEG]);
        assert_eq!(&s[2..], &logits[2..]);
        // order of the input does not matter.
        let mut s = vec![logits[3], logits[0], logits[2], logits[1]];
        top_p(&mut s, 0.7, 1);
        assert_eq!(s, vec![logits[3], NEG, logits[2], NEG]);
    }

    #[test]
    fn softmax_helpers() {
        let mut x = vec![0.0f32, 1.0f32.ln(), 3.0f32.ln()];
        let p = softmax(&x);
        assert!((p[0] - 0.2).abs() < 1e-6 && (p[2] - 0.6).abs() < 1e-6);
        log_softmax(&mut x);
        assert!((x[2] - 0.6f32.ln()).abs() < 1e-6);
        assert_eq!(softmax(&[NEG, NEG]), vec![0.0, 0.0]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn warp_order_and_switches() {
        let cfg = GenerationConfig {
            temperature: 2.0,
            top_k: 0,
            top_p: 1.0,
            ..Default::default()
        };
        let mut s = vec![2.0, 4.0];
        warp(&mut s, &cfg, 1);
        assert_eq!(s, vec![1.0, 2.0]);
        let cfg = GenerationConfig {
            top_k: 1,
            ..Default::default()
        };
        let mut s = vec![2.0, 4.0, 1.0];
        warp(&mut s, &cfg, 1);
        assert_eq!(s, vec![NEG, 4.0, NEG]);
    }
}
