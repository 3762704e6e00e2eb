//! libjpeg-turbo's post-IDCT steps for [`super::jpeg`]: `jdsample.c` fancy upsampling
//! (`h2v1`, `h1v2`, `h2v2` triangle filters with their rounding biases; edge columns
//! handled as libjpeg does, edge rows replicated like `jdmainct.c`'s context rows) and
//! `jdcolor.c` `ycc_rgb_convert` (16-bit fixed-point tables). Bit-exact with libjpeg-turbo.

/// `jdsample.c` fancy upsampling of one component plane to `w × h`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn upsample(
    plane: &[u8],
    stride: usize,
    cw: usize,
    ch: usize,
    fx: usize,
    fy: usize,
    w: usize,
    h: usize,
) -> Vec<u8> {
    let at = |x: usize, y: usize| i32::from(plane[y * stride + x]);
    let mut out = vec![0u8; w * h];
    let mut row = vec![0i32; 2 * cw];
    for y in 0..h {
        let (near, far, bias_v) = if fy == 2 {
            let r = y / 2;
            if y % 2 == 0 {
                (r, r.saturating_sub(1), 1)
            } else {
                (r, (r + 1).min(ch - 1), 2)
            }
        } else {
            (y, y, 0)
        };
        let col = |x: usize| {
            if fy == 2 {
                3 * at(x, near) + at(x, far)
            } else {
                at(x, near)
            }
        };
        match (fx, fy) {
            (1, 1) => (0..cw).for_each(|x| row[x] = at(x, near)),
            (1, _) => (0..cw).for_each(|x| row[x] = (col(x) + bias_v) >> 2),
            (_, 1) => {
                for x in 0..cw {
                    let (c, l, r) = (
                        at(x, near),
                        at(x.saturating_sub(1), near),
                        at((x + 1).min(cw - 1), near),
                    );
                    row[2 * x] = if x == 0 { c } else { (3 * c + l + 1) >> 2 };
                    row[2 * x + 1] = if x + 1 == cw { c } else { (3 * c + r + 2) >> 2 };
                }
            }
            _ => {
                for x in 0..cw {
                    let (c, l, r) = (col(x), col(x.saturating_sub(1)), col((x + 1).min(cw - 1)));
                    row[2 * x] = if x == 0 {
                        (4 * c + 8) >> 4
                    } else {
                        (3 * c + l + 8) >> 4
                    };
                    row[2 * x + 1] = if x + 1 == cw {
                        (4 * c + 7) >> 4
                    } else {
                        (3 * c + r + 7) >> 4
                    };
                }
            }
        }
        for (o, v) in out[y * w..(y + 1) * w].iter_mut().zip(&row) {
            *o = (*v).clamp(0, 255) as u8;
        }
    }
    out
}

/// `jdcolor.c` `ycc_rgb_convert` with its 16-bit fixed-point tables.
pub(crate) fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    const SCALEBITS: u32 = 16;
    const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
    let fix = |x: f64| (x * f64::from(1u32 << SCALEBITS) + 0.5) as i64;
    let (cr_r, cb_b, cr_g, cb_g) = (fix(1.40200), fix(1.77200), fix(0.71414), fix(0.34414));
    for (i, px) in out.chunks_exact_mut(3).enumerate() {
        let (yy, b, r) = (
            i64::from(y[i]),
            i64::from(cb[i]) - 128,
            i64::from(cr[i]) - 128,
        );
        let red = yy + ((cr_r * r + ONE_HALF) >> SCALEBITS);
        let green = yy + ((-cb_g * b + ONE_HALF + -cr_g * r) >> SCALEBITS);
        let blue = yy + ((cb_b * b + ONE_HALF) >> SCALEBITS);
        px[0] = red.clamp(0, 255) as u8;
        px[1] = green.clamp(0, 255) as u8;
        px[2] = blue.clamp(0, 255) as u8;
    }
}
