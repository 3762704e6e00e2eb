//! Throughput and time left of a long byte-counted job (the app's import bar): rate since
//! the job's byte total last changed, reports thinned to one per interval (the last byte is
//! always reported).

use std::time::{Duration, Instant};

use serde::Serialize;

/// How fast a job goes and how long it has left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pace {
    /// Bytes per second so far.
    pub rate_bytes_per_s: f64,
    /// Seconds left at that rate (`None` before any byte is done).
    pub eta_s: Option<f64>,
}

/// Turns `(done, total)` observations into thinned [`Pace`] reports.
#[derive(Debug, Clone)]
pub struct PaceMeter {
    every: Duration,
    started: Option<Instant>,
    total: u64,
    last_report: Option<Instant>,
    last_seen: Option<Instant>,
}

impl PaceMeter {
    /// A meter reporting at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            started: None,
            total: 0,
            last_report: None,
            last_seen: None,
        }
    }

    /// The pace at `done` of `total` bytes at `now`, or `None` when the last report was less
    /// than the interval ago (a finished job, `done >= total`, always reports). A new
    /// `total` starts a new phase: its rate counts from the observation before it.
    pub fn observe(&mut self, done: u64, total: u64, now: Instant) -> Option<Pace> {
        if self.started.is_none() || total != self.total {
            self.started = Some(self.last_seen.unwrap_or(now));
            self.total = total;
        }
        self.last_seen = Some(now);
        let finished = done >= total;
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !finished && !due {
            return None;
        }
        self.last_report = Some(now);
        let secs = self
            .started
            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64());
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let left = total.saturating_sub(done) as f64;
        let eta_s = if finished {
            Some(0.0)
        } else if rate > 0.0 {
            Some(left / rate)
        } else {
            None
        };
        Some(Pace {
            rate_bytes_per_s: rate,
            eta_s,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rate_eta_and_thinning() {
        let t0 = Instant::now();
        let mut m = PaceMeter::new(Duration::from_millis(100));
        let first = m.observe(0, 1000, t0).unwrap();
        assert_eq!(first.eta_s, None);
        // 10 ms later: thinned out.
        assert!(m
            .observe(10, 1000, t0 + Duration::from_millis(10))
            .is_none());
        // 1 s in, 250 bytes: 250 B/s, 3 s left.
        let p = m.observe(250, 1000, t0 + Duration::from_secs(1)).unwrap();
        assert!((p.rate_bytes_per_s - 250.0).abs() < 1e-9);
        assert!((p.eta_s.unwrap() - 3.0).abs() < 1e-9);
        // The end is reported even right after another report.
        let end = m
            .observe(1000, 1000, t0 + Duration::from_millis(1001))
            .unwrap();
        assert_eq!(end.eta_s, Some(0.0));
    }

    #[test]
    fn a_new_total_restarts_the_clock() {
        let t0 = Instant::now();
        let mut m = PaceMeter::new(Duration::ZERO);
        m.observe(500, 500, t0 + Duration::from_secs(5));
        let p = m.observe(100, 400, t0 + Duration::from_secs(6)).unwrap();
        // The second phase started at 5 s: 100 bytes in 1 s.
        assert!((p.rate_bytes_per_s - 100.0).abs() < 1e-9);
        assert!((p.eta_s.unwrap() - 3.0).abs() < 1e-9);
    }
}
