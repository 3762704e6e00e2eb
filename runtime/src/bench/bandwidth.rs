//! Memory read bandwidth, the bound of LM decoding on a CPU (every weight is read once
//! per token): all threads sum disjoint slices of a 1 GiB buffer; the best of 5 passes.

use std::time::Instant;

/// Bytes per second read by `threads` threads streaming through 1 GiB.
pub fn read_bandwidth(threads: usize) -> f64 {
    let n = (1usize << 30) / 8;
    let buf: Vec<u64> = (0..n as u64).collect();
    let threads = threads.max(1);
    let chunk = n.div_ceil(threads);
    let mut best = f64::MAX;
    let mut sink = 0u64;
    for _ in 0..5 {
        let start = Instant::now();
        let sums: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(chunk)
                .map(|c| s.spawn(move || c.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
        });
        best = best.min(start.elapsed().as_secs_f64());
        sink = sink.wrapping_add(sums.iter().fold(0, |a, &x| a.wrapping_add(x)));
    }
    std::hint::black_box(sink);
    (n * 8) as f64 / best.max(1e-9)
}
