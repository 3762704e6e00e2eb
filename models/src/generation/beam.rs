//! Beam bookkeeping of transformers 4.34 (`generation/beam_search.py`):
//! `BeamHypotheses` (n-best list with length penalty) and `BeamSearchScorer`
//! (`process` and `finalize`), for `num_beam_groups` = 1 and `num_return_sequences` = 1.
//!
//! As in 4.34: a hypothesis' length is its whole token row (left padding and prompt
//! included, the eos excluded: an eos hypothesis is stored without its eos); hypothesis
//! scores are f64 (Python floats) from f32 beam scores; `is_done` uses
//! `cur_len = row length + 1`; eos candidates ranked beyond the first `num_beams` are
//! ignored; the best hypothesis is the last of a stable sort by score.
//!
//! Deviation without effect on results: a prompt that is done keeps its rows in place
//! (HF points them all at row 0); their tokens are pads and are never read.

use super::config::EarlyStopping;
use crate::{Error, Result};

/// A finished (or, at finalize, running) hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hypothesis {
    /// `sum_logprobs / len^length_penalty`.
    pub score: f64,
    /// The row without the eos that ended it.
    pub tokens: Vec<u32>,
    /// True when it ended on an eos token.
    pub eos: bool,
}

/// `BeamHypotheses`: the `num_beams` best finished hypotheses of one prompt.
#[derive(Debug, Clone)]
pub(crate) struct BeamHypotheses {
    num_beams: usize,
    length_penalty: f64,
    early_stopping: EarlyStopping,
    max_length: usize,
    pub beams: Vec<Hypothesis>,
    worst_score: f64,
}

impl BeamHypotheses {
    pub fn new(
        num_beams: usize,
        length_penalty: f64,
        early_stopping: EarlyStopping,
        max_length: usize,
    ) -> Self {
        Self {
            num_beams,
            length_penalty,
            early_stopping,
            max_length,
            beams: Vec::new(),
            worst_score: 1e9,
        }
    }

    /// `BeamHypotheses.add`.
    pub fn add(&mut self, tokens: Vec<u32>, sum_logprobs: f64, eos: bool) {
        let score = sum_logprobs / (tokens.len() as f64).powf(self.length_penalty);
        if self.beams.len() < self.num_beams || score > self.worst_score {
            self.beams.push(Hypothesis { score, tokens, eos });
            if self.beams.len() > self.num_beams {
                let mut sorted: Vec<(f64, usize)> = self
                    .beams
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h.score, i))
                    .collect();
                sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                self.beams.remove(sorted[0].1);
                self.worst_score = sorted[1].0;
            } else {
                self.worst_score = score.min(self.worst_score);
            }
        }
    }

    /// `BeamHypotheses.is_done`.
    pub fn is_done(&self, best_sum_logprobs: f64, cur_len: usize) -> bool {
        if self.beams.len() < self.num_beams {
            return false;
        }
        let attainable = |len: usize| best_sum_logprobs / (len as f64).powf(self.length_penalty);
        match self.early_stopping {
            EarlyStopping::OnFull => true,
            EarlyStopping::Heuristic => self.worst_score >= attainable(cur_len),
            EarlyStopping::Never if self.length_penalty > 0.0 => {
                self.worst_score >= attainable(self.max_length)
            }
            EarlyStopping::Never => self.worst_score >= attainable(cur_len),
        }
    }

    /// The best hypothesis: last of a stable ascending sort by score (HF `sorted(..).pop()`).
    pub fn best(&self) -> Option<&Hypothesis> {
        let mut best: Option<&Hypothesis> = None;
        for h in &self.beams {
            if best.is_none_or(|b| h.score >= b.score) {
                best = Some(h);
            }
        }
        best
    }
}

/// One of the top-k candidates of a prompt: flat beam row, token and running score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    /// Beam score + processed log-prob (f32, as HF's tensor).
    pub score: f32,
    /// The token.
    pub token: u32,
    /// Global beam row (`prompt * num_beams + beam`) it extends.
    pub row: usize,
}

/// `BeamSearchScorer` for a batch of prompts.
#[derive(Debug, Clone)]
pub(crate) struct BeamScorer {
    num_beams: usize,
    pub hyps: Vec<BeamHypotheses>,
    pub done: Vec<bool>,
}

impl BeamScorer {
    pub fn new(
        batch: usize,
        num_beams: usize,
        length_penalty: f64,
        early: EarlyStopping,
        max_length: usize,
    ) -> Self {
        let h = BeamHypotheses::new(num_beams, length_penalty, early, max_length);
        Self {
            num_beams,
            hyps: vec![h; batch],
            done: vec![false; batch],
        }
    }

    /// True when every prompt is done.
    pub fn is_done(&self) -> bool {
        self.done.iter().all(|d| *d)
    }

    /// `BeamSearchScorer.process`: `candidates[b]` are prompt `b`'s top candidates, best
    /// first; `rows` the current beam rows. Returns the next beams (score, token, source
    /// row) for all `batch × num_beams` rows.
    pub fn process(
        &mut self,
        rows: &[Vec<u32>],
        candidates: &[Vec<Candidate>],
        eos: &[u32],
        pad: u32,
    ) -> Result<Vec<Candidate>> {
        let k = self.num_beams;
        let mut next = Vec::with_capacity(candidates.len() * k);
        for (b, cands) in candidates.iter().enumerate() {
            if self.done[b] {
                next.extend((0..k).map(|j| Candidate {
                    score: 0.0,
                    token: pad,
                    row: b * k + j,
                }));
                continue;
            }
            let mut kept = 0;
            for (rank, c) in cands.iter().enumerate() {
                if eos.contains(&c.token) {
                    if rank >= k {
                        continue;
                    }
                    let tokens = rows.get(c.row).cloned().unwrap_or_default();
                    self.hyps[b].add(tokens, f64::from(c.score), true);
                } else {
                    next.push(*c);
                    kept += 1;
                }
                if kept == k {
                    break;
                }
            }
            if kept < k {
                return Err(Error::InvalidArgument(format!(
                    "beam search found {kept} non-eos candidates for {k} beams"
                )));
            }
            let best = cands
                .first()
                .map_or(f64::NEG_INFINITY, |c| f64::from(c.score));
            let cur_len = rows.get(b * k).map_or(0, Vec::len) + 1;
            self.done[b] = self.hyps[b].is_done(best, cur_len);
        }
        Ok(next)
    }

    /// `BeamSearchScorer.finalize`: adds the running beams of unfinished prompts and returns
    /// the best hypothesis of each prompt.
    pub fn finalize(mut self, rows: &[Vec<u32>], beam_scores: &[f32]) -> Vec<Hypothesis> {
        let k = self.num_beams;
        for (b, hyps) in self.hyps.iter_mut().enumerate() {
            if self.done[b] {
                continue;
            }
            for r in b * k..(b + 1) * k {
                let (Some(tokens), Some(&score)) = (rows.get(r), beam_scores.get(r)) else {
                    continue;
                };
                hyps.add(tokens.clone(), f64::from(score), false);
            }
        }
        self.hyps
            .iter()
            .map(|h| {
                h.best().cloned().unwrap_or(Hypothesis {
                    score: f64::NEG_INFINITY,
                    tokens: Vec::new(),
                    eos: false,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hypotheses_keep_the_n_best_with_length_penalty() {
        let mut h = BeamHypotheses::new(2, 1.0, EarlyStopping::Heuristic, 10);
        h.add(vec![1, 2], -2.0, true); // -1.0
        h.add(vec![1, 2, 3, 4], -2.0, true); // -0.5
        assert_eq!(h.worst_score, -1.0);
        h.add(vec![1, 2, 3, 4], -6.0, true); // -1.5: worse than worst, refused
        assert_eq!(h.beams.len(), 2);
        h.add(vec![1, 2, 3, 4], -3.2, true); // -0.8: replaces -1.0
        let scores: Vec<f64> = h.beams.iter().map(|b| b.score).collect();
        assert_eq!(scores, vec![-0.5, -0.8]);
        assert_eq!(h.worst_score, -0.8);
        assert_eq!(h.best().unwrap().score, -0.5);
        // length_penalty 2: divide by len^2.
        let mut h2 = BeamHypotheses::new(1, 2.0, EarlyStopping::Heuristic, 10);
        h2.add(vec![0; 4], -8.0, false);
        assert_eq!(h2.beams[0].score, -0.5);
    }

    #[test]
    fn is_done_variants() {
        let mut h = BeamHypotheses::new(1, 1.0, EarlyStopping::Heuristic, 10);
        assert!(!h.is_done(-1.0, 5));
        h.add(vec![0; 4], -2.0, true); // -0.5
                                       // best running -3 at len 5 → -0.6 ≤ -0.5: done; -2 at len 5 → -0.4 > -0.5: not done.
        assert!(h.is_done(-3.0, 5));
        assert!(!h.is_done(-2.0, 5));
        h.early_stopping = EarlyStopping::OnFull;
        assert!(h.is_done(-0.0, 5));
        h.early_stopping = EarlyStopping::Never;
        // -4.5 / max_length 10 = -0.45 > -0.5: not done; -6 / 10 = -0.6: done.
        assert!(!h.is_done(-4.5, 5));
        assert!(h.is_done(-6.0, 5));
    }

    #[test]
    fn best_prefers_the_latest_on_ties() {
        let mut h = BeamHypotheses::new(3, 1.0, EarlyStopping::Heuristic, 10);
        h.add(vec![1], -1.0, true);
        h.add(vec![2], -1.0, false);
        assert_eq!(h.best().unwrap().tokens, vec![2]);
    }

    #[test]
    fn process_skips_late_eos_and_fills_beams() {
        let mut s = BeamScorer::new(1, 2, 1.0, EarlyStopping::Heuristic, 10);
        let rows = vec![vec![5, 6], vec![5, 7]];
        let c = |score, token, row| Candidate { score, token, row };
        // eos (9) at rank 0 → hypothesis; eos at rank 2 (≥ num_beams) ignored.
        let cands = vec![vec![
            c(-1.0, 9, 1),
            c(-1.5, 3, 0),
            c(-2.0, 9, 0),
            c(-2.5, 4, 1),
        ]];
        let next = s.process(&rows, &cands, &[9], 0).unwrap();
        assert_eq!(next, vec![c(-1.5, 3, 0), c(-2.5, 4, 1)]);
        assert_eq!(s.hyps[0].beams.len(), 1);
        assert_eq!(s.hyps[0].beams[0].tokens, vec![5, 7]);
        assert!((s.hyps[0].beams[0].score - (-0.5)).abs() < 1e-12);
        assert!(!s.done[0]);
    }
}
