//! 3 × 3 convolutions (stride 1, padding 1) by Winograd's minimal filtering F(2 × 2, 3 × 3),
//! f32 on the CPU: the unCLIP UNet's and VAE's main convolutions.
//!
//! Each 2 × 2 block of outputs ("tile") is computed from the 4 × 4 input patch around it:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` per channel pair, summed over input channels. The sum
//! over channels of the 16 element-wise products is, for each of the 16 positions `ξ` of
//! the 4 × 4 transform, one matrix product `M_ξ (C_out × tiles) = U_ξ (C_out × C_in) ·
//! V_ξ (C_in × tiles)`, run by the dense kernel ([`PackedLhs`]). That is 16 products of
//! depth `C_in` per 4 outputs where the direct convolution does 4 of depth `9 · C_in`:
//! 2.25 times fewer multiplications, for the cost of the transforms (`O(C · tiles)` each,
//! against `O(C_in · C_out · tiles)` for the products).
//!
//! The transforms of F(2, 3) use only ±1 and ½, so rounding stays at the level of the
//! direct sum's (tests below compare with candle's `conv2d` to 1e-4).
//!
//! The transformed weights `U` are 16/9 the size of the kernel, so they are computed at
//! each call from the direct convolution's packed weight (a few percent of the call at the
//! sizes where [`worth_it`] picks this path) rather than held next to it. Jobs of
//! [`TILES`] tiles of one image go over candle's pool; each transforms its input patch
//! into `V`, runs the 16 products into `M` (both per thread, reused) and writes its 2 × 2
//! output blocks plus the bias.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor};

use crate::cpu_conv::SendPtr;
use crate::sgemm::{PackedLhs, SLIVER_ROWS};
use crate::{Error, Result};

/// Tiles per job: the products' right operand (`C_in` up to 1536 deep × 96 columns) stays
/// in L2, and each job reads `U` once for 96 × 16 multiplications per weight value.
const TILES: usize = 96;

/// Whether F(2 × 2, 3 × 3) pays for a convolution of `c_in` → `c_out` channels over a batch
/// of `b` images of `h × w`: enough channels that the transforms are small next to the
/// products, and enough tiles that transforming the weights at each call is too.
pub fn worth_it(b: usize, h: usize, w: usize, c_in: usize, c_out: usize) -> bool {
    c_in >= 16 && c_out >= 16 && b * h.div_ceil(2) * w.div_ceil(2) >= 256
}

/// `U_ξ = (G g Gᵀ)_ξ` for every output/input channel pair, as 16 packed `C_out × C_in`
/// matrices, from the direct convolution's packed weight: `C_out` rows of depth `9 · C_in`,
/// depth index `tap · C_in + channel` with `tap = 3 · ky + kx`.
pub fn transform_weights(direct: &PackedLhs, c_in: usize) -> Result<Vec<PackedLhs>> {
    let c_out = direct.m();
    if direct.k() != 9 * c_in {
        return Err(Error::InvalidArgument(format!(
            "a 3 × 3 kernel of {c_in} input channels has depth {}, not {}",
            9 * c_in,
            direct.k()
        )));
    }
    const R: usize = SLIVER_ROWS;
    let slivers = c_out.div_ceil(R);
    let src = direct.slivers();
    let mut u: Vec<Vec<f32>> = (0..16).map(|_| vec![0f32; slivers * R * c_in]).collect();
    let dst: Vec<SendPtr> = u.iter_mut().map(|v| SendPtr(v.as_mut_ptr())).collect();
    let next = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_| loop {
        let s = next.fetch_add(1, Ordering::Relaxed);
        if s >= slivers {
            break;
        }
        for ci in 0..c_in {
            // kern[r]: the 3 × 3 kernel of output channel s·6 + r, input channel ci.
            let mut kern = [[[0f32; 3]; 3]; R];
            for tap in 0..9 {
                let at = (s * 9 * c_in + tap * c_in + ci) * R;
                for (k, &val) in kern.iter_mut().zip(&src[at..at + R]) {
                    k[tap / 3][tap % 3] = val;
                }
            }
            for (r, k) in kern.iter().enumerate() {
                // G g Gᵀ: G applied to each column of g, then to each row of the result.
                let cols = [0, 1, 2].map(|kx| g_times([k[0][kx], k[1][kx], k[2][kx]]));
                for i in 0..4 {
                    let row = g_times([cols[0][i], cols[1][i], cols[2][i]]);
                    for (j, &val) in row.iter().enumerate() {
                        // SAFETY: `(s · c_in + ci) · 6 + r` < slivers · 6 · c_in, the length
                        // of every `u[ξ]`; sliver `s` is written by this job alone.
                        #[allow(unsafe_code)]
                        unsafe {
                            *dst[i * 4 + j].get().add((s * c_in + ci) * R + r) = val;
                        }
                    }
                }
            }
        }
    });
    u.into_iter()
        .map(|data| Ok(PackedLhs::from_slivers(c_out, c_in, data)?))
        .collect()
}

/// `G x` for `G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]`.
fn g_times([a, b, c]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

thread_local! {
    /// Each thread's transformed input `V` and products `M`, reused across calls.
    static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `conv2d(xs, w, padding 1) + bias` for `xs (B, C_in, H, W)` f32 on the CPU and the 16
/// transformed weights of [`transform_weights`] (`C_out × C_in` each) → `(B, C_out, H, W)`.
pub fn conv3x3(xs: &Tensor, u: &[PackedLhs], bias: Option<&[f32]>) -> Result<Tensor> {
    let (b_sz, c_in, h, w) = xs.dims4()?;
    let c_out = u.first().map_or(0, |u| u.m());
    if u.len() != 16 || u.iter().any(|u| u.m() != c_out || u.k() != c_in) {
        return Err(Error::InvalidArgument(format!(
            "Winograd weights do not fit an input of {c_in} channels"
        )));
    }
    if bias.is_some_and(|b| b.len() != c_out) {
        return Err(Error::InvalidArgument(
            "conv2d bias does not have the kernel's output channels".into(),
        ));
    }
    let xs = xs.contiguous()?;
    let (store, layout) = xs.storage_and_layout();
    let x = match (&*store, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)), Some((a, e))) => &v[a..e],
        _ => {
            return Err(Error::InvalidArgument(
                "conv2d: an f32 CPU tensor expected".into(),
            ))
        }
    };
    let plane = h * w;
    let tw = w.div_ceil(2);
    let tiles = h.div_ceil(2) * tw;
    let mut out = vec![0f32; b_sz * c_out * plane];
    if tiles == 0 || c_out == 0 {
        return Ok(Tensor::from_vec(out, (b_sz, c_out, h, w), &Device::Cpu)?);
    }
    // Jobs of at most TILES tiles, as even as whole panels allow.
    let per_image = tiles.div_ceil(TILES);
    let job_tiles = tiles.div_ceil(per_image).next_multiple_of(16).min(tiles);
    let per_image = tiles.div_ceil(job_tiles);
    let jobs = b_sz * per_image;
    let next = AtomicUsize::new(0);
    let out_at = SendPtr(out.as_mut_ptr());
    candle_core::utils::barrier_pool().execute(|_| {
        BUFFERS.with(|bufs| {
            let (v, m) = &mut *bufs.borrow_mut();
            if v.len() < 16 * c_in * TILES {
                v.resize(16 * c_in * TILES, 0.0);
            }
            if m.len() < 16 * c_out * TILES {
                m.resize(16 * c_out * TILES, 0.0);
            }
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                if job >= jobs {
                    break;
                }
                let (bi, t0) = (job / per_image, (job % per_image) * job_tiles);
                let nt = job_tiles.min(tiles - t0);
                let image = &x[bi * c_in * plane..(bi + 1) * c_in * plane];
                let tiles_at = Tiles { h, w, tw, t0, nt };
                transform_input(image, c_in, &tiles_at, v);
                let step = nt.div_ceil(16) * 16 * c_in;
                for (xi, u) in u.iter().enumerate() {
                    // SAFETY: `m[ξ]` holds `c_out` rows of `nt` floats, this thread's own;
                    // `v[ξ]` is ⌈nt / 16⌉ panels of depth `c_in`.
                    #[allow(unsafe_code)]
                    unsafe {
                        let out = m.as_mut_ptr().add(xi * c_out * nt);
                        u.set_product_panels(nt, &v[xi * step..(xi + 1) * step], out, nt);
                    }
                }
                // SAFETY (pointer arithmetic): image bi's output planes start inside `out`.
                #[allow(unsafe_code)]
                let dst = unsafe { out_at.get().add(bi * c_out * plane) };
                transform_output(m, c_out, &tiles_at, bias, dst);
            }
        })
    });
    Ok(Tensor::from_vec(out, (b_sz, c_out, h, w), &Device::Cpu)?)
}

/// Tiles `t0 .. t0+nt` (row-major, `tw` per row) of an `h × w` image.
struct Tiles {
    h: usize,
    w: usize,
    tw: usize,
    t0: usize,
    nt: usize,
}

impl Tiles {
    /// The job's tiles as runs along tile rows: `(ty, tx0, n, tl)`, tiles `tx0 .. tx0+n` of
    /// tile row `ty`, the first being the job's tile `tl`.
    fn runs(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let mut tl = 0;
        std::iter::from_fn(move || {
            if tl >= self.nt {
                return None;
            }
            let t = self.t0 + tl;
            let (ty, tx0) = (t / self.tw, t % self.tw);
            let n = (self.tw - tx0).min(self.nt - tl);
            let run = (ty, tx0, n, tl);
            tl += n;
            Some(run)
        })
    }
}

/// `V_ξ[c][t] = (Bᵀ d B)_ξ` for every channel `c` and tile `t` of the job (in panels, below),
/// `d` the 4 × 4 input patch whose top-left corner is one row and column before the
/// tile's outputs (zero outside the image: the padding). `Bᵀ = [1 0 -1 0; 0 1 1 0;
/// 0 -1 1 0; 0 1 0 -1]`. Computed a run of tiles at a time, in loops over the tiles that
/// vectorize: the four patch rows are split into their even and odd columns, combined
/// vertically (`Bᵀ d`), then horizontally (`· B`) with neighbouring even/odd columns.
fn transform_input(image: &[f32], c_in: usize, t: &Tiles, v: &mut [f32]) {
    let (h, w, nt) = (t.h, t.w, t.nt);
    // V_ξ is in the dense kernel's 16-column panels: V[((ξ · P + p) · C_in + c) · 16 + j]
    // for tile 16 p + j.
    let panels = nt.div_ceil(16);
    let len = t.tw.min(nt) + 1;
    // even[i · len + k], odd[i · len + k]: columns 2(tx0 + k) - 1 and 2(tx0 + k) of patch
    // row i, then of row i of Bᵀ d.
    let mut even = vec![0f32; 4 * len];
    let mut odd = vec![0f32; 4 * len];
    let mut row = vec![0f32; 4 * len];
    for c in 0..c_in {
        let p = &image[c * h * w..(c + 1) * h * w];
        for (ty, tx0, n, tl) in t.runs() {
            for i in 0..4 {
                let (e, o) = (&mut even[i * len..][..=n], &mut odd[i * len..][..=n]);
                let y = (2 * ty + i).wrapping_sub(1);
                if y >= h {
                    e.fill(0.0);
                    o.fill(0.0);
                    continue;
                }
                let r = &p[y * w..(y + 1) * w];
                if tx0 >= 1 && 2 * (tx0 + n) < w {
                    for k in 0..=n {
                        let x = 2 * (tx0 + k);
                        e[k] = r[x - 1];
                        o[k] = r[x];
                    }
                } else {
                    for k in 0..=n {
                        let x = 2 * (tx0 + k);
                        e[k] = if x >= 1 && x - 1 < w { r[x - 1] } else { 0.0 };
                        o[k] = if x < w { r[x] } else { 0.0 };
                    }
                }
            }
            vertical(&mut even, len, n + 1);
            vertical(&mut odd, len, n + 1);
            // (Bᵀ d) B: tile k's patch columns are even k, odd k, even k+1, odd k+1; computed
            // into `row`, then stored a panel's stretch of tiles at a time.
            for i in 0..4 {
                let (e, o) = (&even[i * len..][..=n], &odd[i * len..][..=n]);
                let (r0, rest) = row.split_at_mut(len);
                let (r1, rest) = rest.split_at_mut(len);
                let (r2, r3) = rest.split_at_mut(len);
                for k in 0..n {
                    r0[k] = e[k] - e[k + 1];
                    r1[k] = o[k] + e[k + 1];
                    r2[k] = e[k + 1] - o[k];
                    r3[k] = o[k] - o[k + 1];
                }
                for (j, r) in row.chunks_exact(len).enumerate() {
                    let mut k = 0;
                    while k < n {
                        let (p, col) = ((tl + k) / 16, (tl + k) % 16);
                        let run = (16 - col).min(n - k);
                        let at = (((i * 4 + j) * panels + p) * c_in + c) * 16 + col;
                        v[at..at + run].copy_from_slice(&r[k..k + run]);
                        k += run;
                    }
                }
            }
        }
    }
    // Columns past the last tile, in the last panel: zero (their products are not kept).
    if nt % 16 != 0 {
        for panel in v
            .chunks_exact_mut(c_in * 16)
            .skip(panels - 1)
            .step_by(panels)
            .take(16)
        {
            for col in panel.chunks_exact_mut(16) {
                col[nt % 16..].fill(0.0);
            }
        }
    }
}

/// Rows `0..4` (`len` apart, `n` values used) ← `Bᵀ` times them: `r0 - r2, r1 + r2,
/// r2 - r1, r1 - r3`.
fn vertical(rows: &mut [f32], len: usize, n: usize) {
    let (r0, rest) = rows.split_at_mut(len);
    let (r1, rest) = rest.split_at_mut(len);
    let (r2, r3) = rest.split_at_mut(len);
    for k in 0..n {
        let (a, b, c, d) = (r0[k], r1[k], r2[k], r3[k]);
        r0[k] = a - c;
        r1[k] = b + c;
        r2[k] = c - b;
        r3[k] = b - d;
    }
}

/// Writes `Aᵀ M A + bias` (`Aᵀ = [1 1 1 0; 0 1 -1 -1]`) of every output channel and tile of
/// the job into the image's output planes at `dst` (the outputs inside the image only), a
/// run of tiles at a time.
fn transform_output(m: &[f32], c_out: usize, t: &Tiles, bias: Option<&[f32]>, dst: *mut f32) {
    let (h, w, nt) = (t.h, t.w, t.nt);
    let mut pair = vec![[0f32; 2]; t.tw.min(nt)];
    for co in 0..c_out {
        let b = bias.map_or(0.0, |b| b[co]);
        let row = |xi: usize, tl: usize, n: usize| {
            let at = (xi * c_out + co) * nt + tl;
            &m[at..at + n]
        };
        for (ty, tx0, n, tl) in t.runs() {
            for dy in 0..2 {
                let y = 2 * ty + dy;
                if y >= h {
                    break;
                }
                // Aᵀ over the rows of M: rows 0 + (1 + 2), or 1 - (2 + 3).
                let (r0, r1, r2) = if dy == 0 { (0, 1, 2) } else { (1, 2, 3) };
                let sign = if dy == 0 { 1.0 } else { -1.0 };
                let col = |j: usize| {
                    (
                        row(r0 * 4 + j, tl, n),
                        row(r1 * 4 + j, tl, n),
                        row(r2 * 4 + j, tl, n),
                    )
                };
                let (a0, a1, a2) = col(0);
                let (b0, b1, b2) = col(1);
                let (c0, c1, c2) = col(2);
                let (d0, d1, d2) = col(3);
                for k in 0..n {
                    // s_j = M[r0][j] ± (M[r1][j] + M[r2][j]) per column j of the tile.
                    let s0 = a0[k] + sign * (a1[k] + a2[k]);
                    let s1 = b0[k] + sign * (b1[k] + b2[k]);
                    let s2 = c0[k] + sign * (c1[k] + c2[k]);
                    let s3 = d0[k] + sign * (d1[k] + d2[k]);
                    pair[k] = [s0 + s1 + s2 + b, s1 - s2 - s3 + b];
                }
                let x0 = 2 * tx0;
                let width = (2 * n).min(w - x0);
                // SAFETY: row y, columns x0 .. x0+width of channel co lie in this image's
                // output planes; tiles tx0 .. tx0+n of tile row ty belong to this job alone.
                #[allow(unsafe_code)]
                let out = unsafe {
                    std::slice::from_raw_parts_mut(dst.add((co * h + y) * w + x0), width)
                };
                for (o, &val) in out.iter_mut().zip(pair.iter().flatten()) {
                    *o = val;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cpu_conv::PackedConv2d;

    #[test]
    fn matches_candle_conv2d() {
        if !crate::sgemm::KERNELS {
            return;
        }
        let dev = Device::Cpu;
        // Odd and even sizes, one tile, several jobs per image, and depth past one block.
        for &(b, c_in, c_out, h, w) in &[
            (1, 16, 16, 8, 8),
            (2, 20, 33, 9, 7),
            (1, 18, 17, 1, 1),
            (1, 24, 40, 2, 3),
            (2, 17, 19, 31, 26),
            (1, 1600, 20, 5, 6),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c_in, h, w), &dev).unwrap();
            // Weights of the usual initialisation's scale: outputs of about unit size.
            let std = 1.0 / (9.0 * c_in as f32).sqrt();
            let wt = Tensor::randn(0f32, std, (c_out, c_in, 3, 3), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
            let theirs = xs
                .conv2d(&wt, 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
                .unwrap();
            let packed = PackedConv2d::new(&wt).unwrap().unwrap();
            let u = transform_weights(packed.lhs(), c_in).unwrap();
            let bv = bias.to_vec1::<f32>().unwrap();
            let ours = conv3x3(&xs, &u, Some(&bv)).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let diff = crate::sgemm::tests::max_abs_diff(&ours, &theirs);
            assert!(diff < 1e-4, "{b} {c_in} {c_out} {h} {w}: {diff}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        if !crate::sgemm::KERNELS {
            return;
        }
        let dev = Device::Cpu;
        let wt = Tensor::zeros((4, 16, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let packed = PackedConv2d::new(&wt).unwrap().unwrap();
        assert!(transform_weights(packed.lhs(), 15).is_err());
        let u = transform_weights(packed.lhs(), 16).unwrap();
        let xs = Tensor::zeros((1, 15, 4, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(conv3x3(&xs, &u, None).is_err());
        let xs = Tensor::zeros((1, 16, 4, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(conv3x3(&xs, &u, Some(&[0.0; 3])).is_err());
        assert!(conv3x3(&xs, &u[..15], None).is_err());
        let ys = conv3x3(&xs, &u, Some(&[1.0; 4])).unwrap();
        assert_eq!(ys.dims(), &[1, 4, 4, 4]);
    }
}
