//! Our own CPU kernels for `x · Wᵀ` with a ggml `q4_K` or `q6_K` weight (the two types of a
//! q4_k_m GGUF), used by [`super::linear::Linear`] on x86-64 builds with AVX2, FMA and F16C.
//!
//! Why not candle's `QMatMul`: it runs one full pass over the weight matrix per input row, so
//! a beam of 5 reads the 3.7 GB of MIO-7B's weights 5 times per token and a 128-token prefill
//! 128 times, and its row-by-row `q4_K` dot is compute-bound on two cores. Here
//! * `q4_K` weights are repacked at load time 8 rows at a time ([`PackedQ4K`]): one vector
//!   lane per row, so an input byte is broadcast once for 8 rows, the scales and minimums of
//!   8 rows apply with one multiply each, and there are no horizontal sums;
//! * `q6_K` weights stay in ggml's layout ([`QGemv`]), with the `-32` offset of every 6-bit
//!   value taken out once per 256-block from the input's 16-value sums (`32 · Σ scale·bsum`)
//!   instead of once per value;
//! * the weight rows are split over candle's own CPU worker pool (the threads every candle op
//!   uses, so no second pool competes for the cores), and each tile of 16 rows is multiplied
//!   with every input row while it sits in cache: the weights are read from memory once per
//!   call whatever the number of input rows.
//!
//! Inputs are quantized to ggml's `q8_K` exactly as candle (and ggml) do and the integer dot
//! products are exact, so results equal `QMatMul`'s up to float summation order (tested
//! below). `cargo bench -p mio-models --bench qgemv` compares the two.

use std::sync::Mutex;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape};

/// Values per k-quant block.
const QK: usize = 256;
/// Bytes of one `q4_K` block: `d`, `dmin` (f16), 12 bytes of 6-bit scales and mins, 128 of nibbles.
const Q4K_BYTES: usize = 144;
/// Bytes of one `q6_K` block: 128 low nibbles, 64 bytes of high bit pairs, 16 i8 scales, `d`.
const Q6K_BYTES: usize = 210;
/// Weight rows multiplied with every input row while they are in cache.
const ROW_TILE: usize = 16;

/// One 256-value block of an input row quantized to 8 bits (ggml `block_q8_K`, reordered so
/// both arrays are 32-byte aligned).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Q8K {
    qs: [i8; QK],
    /// Sums of each 16 consecutive `qs`.
    bsums: [i16; QK / 16],
    /// Sums of each 32 consecutive `qs` (one per `q4_K` sub-block).
    bsum32: [i16; QK / 32],
    d: f32,
}

impl Q8K {
    const ZERO: Q8K = Q8K {
        qs: [0; QK],
        bsums: [0; QK / 16],
        bsum32: [0; QK / 32],
        d: 0.0,
    };
}

/// ggml's `quantize_row_q8_K` as candle writes it (`round`, scale from the signed maximum).
fn quantize_q8k(xs: &[f32], ys: &mut [Q8K]) {
    for (x, y) in xs.chunks_exact(QK).zip(ys.iter_mut()) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *y = Q8K::ZERO;
            continue;
        }
        let iscale = -127f32 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = (iscale * v).round().clamp(-128., 127.) as i8;
        }
        for (s, g) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        for (s, p) in y.bsum32.iter_mut().zip(y.bsums.chunks_exact(2)) {
            *s = p[0] + p[1];
        }
        y.d = 1.0 / iscale;
    }
}

/// `xs (…, k) → (…, n)` with a `q6_K` weight `(n, k)` held by a `QMatMul`, as a candle op.
pub struct QGemv<'a> {
    w: &'a QTensor,
    n: usize,
    k: usize,
}

impl<'a> QGemv<'a> {
    /// The op for `mm` when it is a `q6_K` tensor on the CPU and this build has the kernels
    /// (x86-64 with AVX2, FMA and F16C); `None` means: use `QMatMul`.
    pub fn for_matmul(mm: &'a QMatMul, device: &Device) -> Option<Self> {
        if !KERNELS || !device.is_cpu() {
            return None;
        }
        let QMatMul::QTensor(w) = mm else {
            return None;
        };
        // q4_K is packed at load time instead ([`PackedQ4K`]): row by row it is no faster
        // than candle's kernel.
        if w.dtype() != GgmlDType::Q6K {
            return None;
        }
        let (n, k) = w.shape().dims2().ok()?;
        k.is_multiple_of(QK).then_some(QGemv {
            w: w.as_ref(),
            n,
            k,
        })
    }
}

impl CustomOp1 for QGemv<'_> {
    fn name(&self) -> &'static str {
        "mio-qgemv"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = input_rows(self.name(), storage, layout, self.k)?;
        let m = xs.len() / self.k;
        let w = self.w.data()?;
        let out = matmul_q6k(&w, self.n, self.k, xs, m)?;
        Ok((CpuStorage::F32(out), out_shape(layout, self.n)))
    }
}

/// Quantizes `m` input rows of `k` values to `q8_K` blocks.
fn quantize_rows(xs: &[f32], m: usize, k: usize) -> Vec<Q8K> {
    let nb = k / QK;
    let mut q8 = vec![Q8K::ZERO; m * nb];
    for (x, y) in xs.chunks_exact(k).zip(q8.chunks_exact_mut(nb)) {
        quantize_q8k(x, y);
    }
    q8
}

/// Runs `kernel(group bytes, input row, outputs)` for every group of `group_rows` weight rows
/// (`group_bytes` each, back to back in `w`) and every input row, the groups split over
/// candle's CPU pool. Returns `(m, n)`, dropping the padding rows of the last group.
#[allow(clippy::too_many_arguments)]
fn run_groups(
    w: &[u8],
    group_rows: usize,
    group_bytes: usize,
    n: usize,
    q8: &[Q8K],
    nb: usize,
    m: usize,
    kernel: impl Fn(&[u8], &[Q8K], &mut [f32]) + Sync,
) -> Vec<f32> {
    let groups = n.div_ceil(group_rows);
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    let per_thread = groups.div_ceil(threads).max(1);
    // Weight row `j` gives `out_t[j * m .. (j + 1) * m]`: each thread writes one contiguous
    // chunk of whole groups.
    let stride = group_rows * m;
    let mut out_t = vec![0f32; groups * stride];
    if m > 0 && nb > 0 {
        let chunks: Vec<Mutex<&mut [f32]>> = out_t
            .chunks_mut(per_thread * stride)
            .map(Mutex::new)
            .collect();
        let tile = (ROW_TILE / group_rows).max(1);
        pool.execute(|tid| {
            let Some(chunk) = chunks.get(tid) else {
                return;
            };
            let mut chunk = chunk.lock().unwrap_or_else(|e| e.into_inner());
            let g0 = tid * per_thread;
            let mine = chunk.len() / stride;
            let mut buf = [0f32; 8];
            let buf = &mut buf[..group_rows.min(8)];
            for t0 in (0..mine).step_by(tile) {
                let t1 = (t0 + tile).min(mine);
                for (a, y) in q8.chunks_exact(nb).enumerate() {
                    for g in t0..t1 {
                        let at = (g0 + g) * group_bytes;
                        kernel(&w[at..at + group_bytes], y, buf);
                        for (r, &v) in buf.iter().enumerate() {
                            chunk[(g * group_rows + r) * m + a] = v;
                        }
                    }
                }
            }
        });
    }
    if m == 1 {
        out_t.truncate(n);
        return out_t;
    }
    let mut out = vec![0f32; m * n];
    for (j, col) in out_t.chunks_exact(m).take(n).enumerate() {
        for (a, &v) in col.iter().enumerate() {
            out[a * n + j] = v;
        }
    }
    out
}

/// `(m, k) · (n, k)ᵀ → (m, n)` for `m` input rows and a `q6_K` weight of `n` rows of ggml
/// blocks, one row at a time.
fn matmul_q6k(w: &[u8], n: usize, k: usize, xs: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
    let nb = k / QK;
    let row_bytes = nb * Q6K_BYTES;
    if !k.is_multiple_of(QK) || w.len() != n * row_bytes || xs.len() != m * k {
        candle_core::bail!(
            "mio-qgemv: q6_K weight of {} bytes for ({n}, {k}) and input of {} for {m} rows",
            w.len(),
            xs.len()
        );
    }
    let q8 = quantize_rows(xs, m, k);
    Ok(run_groups(w, 1, row_bytes, n, &q8, nb, m, |wr, y, out| {
        out[0] = dot_q6k(wr, y)
    }))
}

/// Rows per group of a [`PackedQ4K`].
const GROUP: usize = 8;
/// Bytes of one packed block: 8 rows × 256 values.
const PACKED_BYTES: usize = 1184;
/// Offsets inside a packed block.
const P_D: usize = 0; // 8 × f16 `d`
const P_DMIN: usize = 16; // 8 × f16 `dmin`
const P_SCALES: usize = 32; // [sub-block j][row r] u8 scale
const P_MINS: usize = 96; // [pair p][row r][2] u8 mins of sub-blocks 2p, 2p + 1
const P_QS: usize = 160; // [pair t][chunk c][row r][4] bytes of `qs[32t + 4c ..][..4]`

/// A `q4_K` weight `(n, k)` repacked 8 rows at a time, so the AVX2 kernel works on 8 rows
/// per instruction (one lane per row): activation bytes are broadcast once for 8 rows, scales
/// and mins apply to 8 rows with one multiply, and no horizontal sums are needed. The
/// arithmetic is `q4_K`'s, exactly: packing moves bytes and unpacks the 6-bit scales and mins
/// to bytes (1184 bytes per 8 × 256 values instead of 1152). Built at load time from the
/// GGUF's bytes; the ggml blocks are not kept.
#[derive(Clone)]
pub struct PackedQ4K {
    data: Vec<u8>,
    n: usize,
    k: usize,
}

impl std::fmt::Debug for PackedQ4K {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedQ4K({}, {})", self.n, self.k)
    }
}

impl PackedQ4K {
    /// Whether this build packs `q4_K` weights for `device` (the CPU of an x86-64 build with
    /// AVX2, FMA and F16C).
    pub fn available(device: &Device) -> bool {
        KERNELS && device.is_cpu()
    }

    /// Packs `n` rows of `k / 256` ggml `q4_K` blocks (`raw`, as a GGUF stores them).
    pub fn pack(raw: &[u8], n: usize, k: usize) -> crate::Result<Self> {
        let nb = k / QK;
        if !k.is_multiple_of(QK) || raw.len() != n * nb * Q4K_BYTES {
            return Err(crate::Error::InvalidArgument(format!(
                "q4_K weight ({n}, {k}) needs {} bytes of whole blocks, got {}",
                n.saturating_mul(nb * Q4K_BYTES),
                raw.len()
            )));
        }
        let groups = n.div_ceil(GROUP);
        let mut data = vec![0u8; groups * nb * PACKED_BYTES];
        for (g, gdata) in data.chunks_exact_mut(nb * PACKED_BYTES).enumerate() {
            for (b, p) in gdata.chunks_exact_mut(PACKED_BYTES).enumerate() {
                for r in 0..GROUP.min(n - g * GROUP) {
                    let at = ((g * GROUP + r) * nb + b) * Q4K_BYTES;
                    let blk = &raw[at..at + Q4K_BYTES];
                    p[P_D + 2 * r..P_D + 2 * r + 2].copy_from_slice(&blk[0..2]);
                    p[P_DMIN + 2 * r..P_DMIN + 2 * r + 2].copy_from_slice(&blk[2..4]);
                    let (sc, mn) = q4k_scales_mins(&blk[4..16]);
                    for j in 0..8 {
                        p[P_SCALES + 8 * j + r] = sc[j];
                    }
                    for pair in 0..4 {
                        p[P_MINS + 16 * pair + 2 * r] = mn[2 * pair];
                        p[P_MINS + 16 * pair + 2 * r + 1] = mn[2 * pair + 1];
                    }
                    for t in 0..4 {
                        for c in 0..8 {
                            let dst = P_QS + ((t * 8 + c) * GROUP + r) * 4;
                            let src = 16 + 32 * t + 4 * c;
                            p[dst..dst + 4].copy_from_slice(&blk[src..src + 4]);
                        }
                    }
                }
            }
        }
        Ok(PackedQ4K { data, n, k })
    }

    /// `(n, k)` of the weight.
    pub fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// `xs (…, k) → (…, n)`, f32.
    pub fn forward(&self, xs: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        xs.apply_op1_no_bwd(self)
    }

    fn matmul(&self, xs: &[f32], m: usize) -> Vec<f32> {
        let nb = self.k / QK;
        let q8 = quantize_rows(xs, m, self.k);
        run_groups(
            &self.data,
            GROUP,
            nb * PACKED_BYTES,
            self.n,
            &q8,
            nb,
            m,
            group_dot_q4k,
        )
    }
}

impl CustomOp1 for PackedQ4K {
    fn name(&self) -> &'static str {
        "mio-q4k-x8"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xs = input_rows(self.name(), storage, layout, self.k)?;
        let m = xs.len() / self.k;
        let out = self.matmul(xs, m);
        Ok((CpuStorage::F32(out), out_shape(layout, self.n)))
    }
}

/// The contiguous f32 input of a matmul op, checked to end in `k` columns.
pub(crate) fn input_rows<'s>(
    name: &str,
    storage: &'s CpuStorage,
    layout: &Layout,
    k: usize,
) -> candle_core::Result<&'s [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{name}: f32 input expected");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{name}: contiguous input expected");
    };
    if layout.dims().last() != Some(&k) {
        candle_core::bail!(
            "{name}: input {:?} does not end in the weight's {k} columns",
            layout.dims()
        );
    }
    Ok(&data[start..end])
}

fn out_shape(layout: &Layout, n: usize) -> Shape {
    let mut dims = layout.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    Shape::from(dims)
}

/// The 6-bit scales and mins of the 8 sub-blocks of a `q4_K` block (ggml `get_scale_min_k4`).
fn q4k_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for j in 4..8 {
        sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    (sc, mn)
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
const KERNELS: bool = true;
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
const KERNELS: bool = false;

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
use avx2::{dot_q6k, group_dot_q4k};

/// Portable stand-ins so the module compiles everywhere; [`QGemv::for_matmul`] never picks
/// this module without AVX2, so these only run in this module's tests.
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
use portable::{dot_q6k, group_dot_q4k};

#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ),
    allow(dead_code)
)]
mod portable {
    use super::{f16_at, q4k_scales_mins, Q4K_BYTES, Q6K_BYTES, Q8K};
    use super::{GROUP, PACKED_BYTES, P_D, P_DMIN, P_MINS, P_QS, P_SCALES};

    /// 8 rows of a [`super::PackedQ4K`] group · one input row, from the packed layout.
    pub(super) fn group_dot_q4k(g: &[u8], ys: &[Q8K], out: &mut [f32]) {
        for (r, o) in out.iter_mut().enumerate().take(GROUP) {
            let mut sum = 0f32;
            for (p, y) in g.chunks_exact(PACKED_BYTES).zip(ys) {
                let (d, dmin) = (f16_at(p, P_D + 2 * r), f16_at(p, P_DMIN + 2 * r));
                let (mut sumi, mut summ) = (0i32, 0i32);
                for t in 0..4 {
                    let (mut lo, mut hi) = (0i32, 0i32);
                    for c in 0..8 {
                        for i in 0..4 {
                            let q = p[P_QS + ((t * 8 + c) * GROUP + r) * 4 + i];
                            lo += (q & 0xF) as i32 * y.qs[64 * t + 4 * c + i] as i32;
                            hi += (q >> 4) as i32 * y.qs[64 * t + 32 + 4 * c + i] as i32;
                        }
                    }
                    sumi += p[P_SCALES + 8 * (2 * t) + r] as i32 * lo;
                    sumi += p[P_SCALES + 8 * (2 * t + 1) + r] as i32 * hi;
                }
                for pair in 0..4 {
                    for h in 0..2 {
                        let mn = p[P_MINS + 16 * pair + 2 * r + h] as i32;
                        summ += mn * y.bsum32[2 * pair + h] as i32;
                    }
                }
                sum += d * y.d * sumi as f32 - dmin * y.d * summ as f32;
            }
            *o = sum;
        }
    }

    /// One ggml `q4_K` row · one input row (the reference for the packed kernels' tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) fn dot_q4k(w: &[u8], ys: &[Q8K]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in w.chunks_exact(Q4K_BYTES).zip(ys) {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let (sc, mn) = q4k_scales_mins(&b[4..16]);
            let qs = &b[16..];
            let (mut sumi, mut summ) = (0i32, 0i32);
            for j in 0..4 {
                let (mut lo, mut hi) = (0i32, 0i32);
                for i in 0..32 {
                    let q = qs[32 * j + i];
                    lo += (q & 0xF) as i32 * y.qs[64 * j + i] as i32;
                    hi += (q >> 4) as i32 * y.qs[64 * j + 32 + i] as i32;
                }
                sumi += sc[2 * j] as i32 * lo + sc[2 * j + 1] as i32 * hi;
            }
            for (&m, &b) in mn.iter().zip(&y.bsum32) {
                summ += m as i32 * b as i32;
            }
            sum += d * y.d * sumi as f32 - dmin * y.d * summ as f32;
        }
        sum
    }

    pub(super) fn dot_q6k(w: &[u8], ys: &[Q8K]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in w.chunks_exact(Q6K_BYTES).zip(ys) {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            let mut q = [0i32; 256];
            for half in 0..2 {
                for l in 0..32 {
                    let (a, c, h) = (ql[64 * half + l], ql[64 * half + 32 + l], qh[32 * half + l]);
                    let o = 128 * half;
                    q[o + l] = ((a & 0xF) | ((h & 3) << 4)) as i32 - 32;
                    q[o + l + 32] = ((c & 0xF) | (((h >> 2) & 3) << 4)) as i32 - 32;
                    q[o + l + 64] = ((a >> 4) | (((h >> 4) & 3) << 4)) as i32 - 32;
                    q[o + l + 96] = ((c >> 4) | (((h >> 6) & 3) << 4)) as i32 - 32;
                }
            }
            let mut sumi = 0i32;
            for g in 0..16 {
                let s: i32 = (0..16)
                    .map(|i| q[16 * g + i] * y.qs[16 * g + i] as i32)
                    .sum();
                sumi += sc[g] as i8 as i32 * s;
            }
            sum += d * y.d * sumi as f32;
        }
        sum
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
#[allow(unsafe_code)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{f16_at, Q6K_BYTES, Q8K};
    use super::{GROUP, PACKED_BYTES, P_D, P_DMIN, P_MINS, P_QS, P_SCALES};

    /// `_mm_shuffle_epi8` masks: mask `k` repeats byte `2k` eight times, then byte `2k + 1`.
    const SCALE_PAIRS: [[u8; 16]; 8] = {
        let mut m = [[0u8; 16]; 8];
        let mut k = 0;
        while k < 8 {
            let mut i = 0;
            while i < 8 {
                m[k][i] = 2 * k as u8;
                m[k][i + 8] = 2 * k as u8 + 1;
                i += 1;
            }
            k += 1;
        }
        m
    };

    use crate::activation::hsum_avx2 as hsum;

    /// 8 rows of a [`super::PackedQ4K`] group (whole packed blocks) · one `q8_K` input row;
    /// lane `r` of every vector is row `r`.
    pub(super) fn group_dot_q4k(g: &[u8], ys: &[Q8K], out: &mut [f32]) {
        let mut res = [0f32; GROUP];
        // SAFETY: AVX2/FMA/F16C are enabled at compile time (this module's cfg). Every load
        // lies inside one `PACKED_BYTES` block that `chunks_exact` hands out: 16 bytes at
        // `P_D`/`P_DMIN`, 8 at `P_SCALES + 8j` (j < 8), 16 at `P_MINS + 16p` (p < 4), 32 at
        // `P_QS + 32(8t + c)` (t < 4, c < 8, so at most `P_QS + 1024 = PACKED_BYTES`); input
        // reads are 4 bytes at `64t + 4c (+32)` < 256 of `y.qs`, and `res` has 8 floats.
        unsafe {
            let m4 = _mm256_set1_epi8(0xF);
            let ones = _mm256_set1_epi16(1);
            let mut acc = _mm256_setzero_ps();
            for (p, y) in g.chunks_exact(PACKED_BYTES).zip(ys) {
                let p = p.as_ptr();
                let yq = y.qs.as_ptr();
                let mut sumi = _mm256_setzero_si256();
                for t in 0..4 {
                    let mut lo16 = _mm256_setzero_si256();
                    let mut hi16 = _mm256_setzero_si256();
                    for c in 0..8 {
                        let w =
                            _mm256_loadu_si256(p.add(P_QS + 32 * (8 * t + c)) as *const __m256i);
                        let lo = _mm256_and_si256(w, m4);
                        let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                        let ylo = _mm256_set1_epi32(
                            (yq.add(64 * t + 4 * c) as *const i32).read_unaligned(),
                        );
                        let yhi = _mm256_set1_epi32(
                            (yq.add(64 * t + 32 + 4 * c) as *const i32).read_unaligned(),
                        );
                        // ≤ 8 × 2 × 15 × 128 = 30720: no i16 overflow.
                        lo16 = _mm256_add_epi16(lo16, _mm256_maddubs_epi16(lo, ylo));
                        hi16 = _mm256_add_epi16(hi16, _mm256_maddubs_epi16(hi, yhi));
                    }
                    let sc_lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        p.add(P_SCALES + 8 * (2 * t)) as *const __m128i,
                    ));
                    let sc_hi = _mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        p.add(P_SCALES + 8 * (2 * t + 1)) as *const __m128i,
                    ));
                    sumi = _mm256_add_epi32(
                        sumi,
                        _mm256_mullo_epi32(_mm256_madd_epi16(lo16, ones), sc_lo),
                    );
                    sumi = _mm256_add_epi32(
                        sumi,
                        _mm256_mullo_epi32(_mm256_madd_epi16(hi16, ones), sc_hi),
                    );
                }
                let mut summ = _mm256_setzero_si256();
                for pair in 0..4 {
                    let mins = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                        p.add(P_MINS + 16 * pair) as *const __m128i
                    ));
                    let b = (y.bsum32[2 * pair] as u16 as u32)
                        | ((y.bsum32[2 * pair + 1] as u16 as u32) << 16);
                    summ = _mm256_add_epi32(
                        summ,
                        _mm256_madd_epi16(mins, _mm256_set1_epi32(b as i32)),
                    );
                }
                let yd = _mm256_set1_ps(y.d);
                let d = _mm256_mul_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(P_D) as *const __m128i)),
                    yd,
                );
                let dmin = _mm256_mul_ps(
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(P_DMIN) as *const __m128i)),
                    yd,
                );
                acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
                acc = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(summ), acc);
            }
            _mm256_storeu_ps(res.as_mut_ptr(), acc);
        }
        for (o, r) in out.iter_mut().zip(res) {
            *o = r;
        }
    }

    /// One `q6_K` weight row (whole blocks) · one `q8_K` input row.
    pub(super) fn dot_q6k(w: &[u8], ys: &[Q8K]) -> f32 {
        // SAFETY: AVX2/FMA are enabled at compile time (this module's cfg). Loads: `ql` 32 bytes
        // at 0, 32, 64, 96 and `qh` at 128, 160, 16 scale bytes at 192, all inside the 210-byte
        // block `chunks_exact` hands out; `y.qs` (256 bytes at offset 0) and `y.bsums` (32 bytes
        // at offset 256) of the 32-byte-aligned `Q8K` are aligned loads.
        unsafe {
            let m4 = _mm256_set1_epi8(0xF);
            let m3 = _mm256_set1_epi8(3);
            let masks: [__m128i; 8] =
                std::array::from_fn(|k| _mm_loadu_si128(SCALE_PAIRS[k].as_ptr() as *const __m128i));
            let mut acc = _mm256_setzero_ps();
            for (b, y) in w.chunks_exact(Q6K_BYTES).zip(ys) {
                let d = f16_at(b, 208);
                let p = b.as_ptr();
                let sc = _mm_loadu_si128(p.add(192) as *const __m128i);
                // Σ (q - 32)·y·s = Σ q·y·s - 32 Σ_g s_g·bsum_g, the offset once per block.
                let bs = _mm256_load_si256(y.bsums.as_ptr() as *const __m256i);
                let off = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), bs);
                let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
                let yq = y.qs.as_ptr();
                for half in 0..2 {
                    let l0 = _mm256_loadu_si256(p.add(64 * half) as *const __m256i);
                    let l1 = _mm256_loadu_si256(p.add(64 * half + 32) as *const __m256i);
                    let h = _mm256_loadu_si256(p.add(128 + 32 * half) as *const __m256i);
                    let qa = _mm256_or_si256(
                        _mm256_and_si256(l0, m4),
                        _mm256_slli_epi16(_mm256_and_si256(h, m3), 4),
                    );
                    let qb = _mm256_or_si256(
                        _mm256_and_si256(l1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4),
                    );
                    let qc = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4),
                    );
                    let qd = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4),
                    );
                    let yo = yq.add(128 * half);
                    let pa = _mm256_maddubs_epi16(qa, _mm256_load_si256(yo as *const __m256i));
                    let pb =
                        _mm256_maddubs_epi16(qb, _mm256_load_si256(yo.add(32) as *const __m256i));
                    let pc =
                        _mm256_maddubs_epi16(qc, _mm256_load_si256(yo.add(64) as *const __m256i));
                    let pd =
                        _mm256_maddubs_epi16(qd, _mm256_load_si256(yo.add(96) as *const __m256i));
                    let s =
                        |k: usize| _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, masks[4 * half + k]));
                    let pa = _mm256_madd_epi16(s(0), pa);
                    let pb = _mm256_madd_epi16(s(1), pb);
                    let pc = _mm256_madd_epi16(s(2), pc);
                    let pd = _mm256_madd_epi16(s(3), pd);
                    sumi = _mm256_add_epi32(
                        sumi,
                        _mm256_add_epi32(_mm256_add_epi32(pa, pb), _mm256_add_epi32(pc, pd)),
                    );
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), _mm256_cvtepi32_ps(sumi), acc);
            }
            hsum(acc)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use candle_core::{Module, Tensor};

    fn weights(dtype: GgmlDType, n: usize, k: usize, seed: u64) -> QMatMul {
        let dev = Device::Cpu;
        // Deterministic, varied values (some rows all zero to hit the zero-scale paths).
        let v: Vec<f32> = (0..n * k)
            .map(|i| {
                let row = i / k;
                if row % 7 == 6 {
                    0.0
                } else {
                    let x = ((i as u64 + seed) * 2654435761 % 10007) as f32 / 10007.0;
                    (x - 0.45) * (1.0 + (row % 3) as f32)
                }
            })
            .collect();
        let w = Tensor::from_vec(v, (n, k), &dev).unwrap();
        QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap()
    }

    fn input(m: usize, k: usize) -> Tensor {
        let v: Vec<f32> = (0..m * k)
            .map(|i| {
                (((i * 7919) % 1009) as f32 / 1009.0 - 0.5) * if i % 5 == 0 { 3.0 } else { 1.0 }
            })
            .collect();
        Tensor::from_vec(v, (m, k), &Device::Cpu).unwrap()
    }

    fn assert_close(ours: &[f32], theirs: &[f32]) {
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "element {i}: ours {a}, candle {b}"
            );
        }
    }

    fn to_vec(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 256),
        (1, 37, 512),
        (5, 64, 768),
        (17, 33, 256),
        (40, 9, 1024),
        (3, 8, 256),
    ];

    #[test]
    fn q6k_matches_candle_qmatmul() {
        for (m, n, k) in SHAPES {
            let mm = weights(GgmlDType::Q6K, n, k, (m * n + k) as u64);
            let xs = input(m, k);
            let theirs = mm.forward(&xs).unwrap();
            let op = QGemv::for_matmul(&mm, &Device::Cpu);
            assert_eq!(op.is_some(), KERNELS, "kernel availability on this build");
            let QMatMul::QTensor(w) = &mm else {
                panic!("quantized")
            };
            let ours = matmul_q6k(&w.data().unwrap(), n, k, &to_vec(&xs), m).unwrap();
            assert_close(&ours, &to_vec(&theirs));
            if let Some(op) = op {
                let via_op = xs.apply_op1_no_bwd(&op).unwrap();
                assert_eq!(via_op.dims(), theirs.dims());
                assert_close(&to_vec(&via_op), &to_vec(&theirs));
            }
        }
    }

    #[test]
    fn packed_q4k_matches_candle_qmatmul() {
        for (m, n, k) in SHAPES {
            let mm = weights(GgmlDType::Q4K, n, k, (m * n + k) as u64);
            let xs = input(m, k);
            let theirs = mm.forward(&xs).unwrap();
            let QMatMul::QTensor(w) = &mm else {
                panic!("quantized")
            };
            let packed = PackedQ4K::pack(&w.data().unwrap(), n, k).unwrap();
            assert_eq!(packed.dims(), (n, k));
            assert_eq!(packed.data.len(), n.div_ceil(8) * (k / 256) * PACKED_BYTES);
            assert_close(&packed.matmul(&to_vec(&xs), m), &to_vec(&theirs));
            let via_op = packed.forward(&xs).unwrap();
            assert_eq!(via_op.dims(), theirs.dims());
            assert_close(&to_vec(&via_op), &to_vec(&theirs));
        }
    }

    #[test]
    fn the_portable_dots_agree_with_the_kernels_and_the_ggml_layout() {
        let (n, k) = (8, 768);
        let xv = to_vec(&input(1, k));
        let mut y = vec![Q8K::ZERO; k / 256];
        quantize_q8k(&xv, &mut y);
        for (dtype, block) in [(GgmlDType::Q4K, Q4K_BYTES), (GgmlDType::Q6K, Q6K_BYTES)] {
            let mm = weights(dtype, n, k, 11);
            let QMatMul::QTensor(w) = &mm else {
                panic!("quantized")
            };
            let bytes = w.data().unwrap();
            let row = (k / 256) * block;
            let rows: Vec<f32> = (0..n)
                .map(|r| {
                    let wr = &bytes[r * row..(r + 1) * row];
                    if dtype == GgmlDType::Q4K {
                        portable::dot_q4k(wr, &y)
                    } else {
                        let (a, b) = (dot_q6k(wr, &y), portable::dot_q6k(wr, &y));
                        assert!(
                            (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "q6_K row {r}: {a} vs {b}"
                        );
                        b
                    }
                })
                .collect();
            if dtype == GgmlDType::Q4K {
                // The packed layout, read back by the portable code and by the kernel, gives
                // the same rows as the ggml blocks.
                let packed = PackedQ4K::pack(&bytes, n, k).unwrap();
                let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
                portable::group_dot_q4k(&packed.data, &y, &mut a);
                group_dot_q4k(&packed.data, &y, &mut b);
                assert_close(&a, &rows);
                assert_close(&b, &rows);
            }
        }
    }

    #[test]
    fn leading_dims_are_kept_and_bad_inputs_are_errors() {
        let mm = weights(GgmlDType::Q4K, 8, 256, 3);
        let QMatMul::QTensor(w) = &mm else {
            panic!("quantized")
        };
        let packed = PackedQ4K::pack(&w.data().unwrap(), 8, 256).unwrap();
        let xs = input(6, 256).reshape((2, 3, 256)).unwrap();
        assert_eq!(packed.forward(&xs).unwrap().dims(), &[2, 3, 8]);
        let err = packed.forward(&input(2, 512)).unwrap_err().to_string();
        assert!(err.contains("256 columns"), "{err}");
        let err = PackedQ4K::pack(&[0u8; 100], 8, 256)
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole blocks"), "{err}");
        assert!(PackedQ4K::pack(&[], 1, 100).is_err());
        assert!(matmul_q6k(&[0u8; 10], 8, 256, &[0.0; 256], 1).is_err());
        // q8_0 and q4_K QMatMuls have no row kernel here (q4_K is packed at load instead).
        assert!(QGemv::for_matmul(&weights(GgmlDType::Q8_0, 8, 256, 3), &Device::Cpu).is_none());
        assert!(QGemv::for_matmul(&mm, &Device::Cpu).is_none());
    }
}
