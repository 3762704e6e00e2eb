//! A 1-D convolution for f32 tensors on the CPU, used by the SpeechTokenizer's convolutions
//! in place of candle's `conv1d` (other devices and dtypes go to candle).
//!
//! candle's CPU `conv1d` builds the whole im2col matrix `(B, L_out, C_in·K)` (for the first
//! SEANet stage of a 10 s clip, 160000 × 192 floats), multiplies it with the kernel into a
//! `(B, L_out, C_out)` result and copies that into `(B, C_out, L_out)`: two copies of the
//! largest tensors and a product shaped so that its output is transposed. Here the output
//! is computed in place, `(C_out, L_out)` row-major, as a sum over the kernel taps
//! `Σ_j W[:, :, j] · X[:, j·d + s·t]`, each tap one `gemm` call reading the input through
//! strides (no im2col; for inputs of under 16 channels, e.g. the first convolution of a
//! mono waveform, the taps are gathered into a small im2col block instead). The output is
//! cut into column blocks that stay in cache across the taps, the blocks are shared over
//! candle's CPU pool, and the bias is the initial value of the output. Sums run in another
//! order than candle's, so results agree to float rounding (tested below).

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{CpuStorage, Device, Layout, Storage, Tensor};

use crate::sgemm::PackedLhs;
use crate::{Error, Result};

/// Below this many input channels the taps are gathered into an im2col block.
const MIN_TAP_CHANNELS: usize = 16;
/// Output floats per column block (C_out × columns), about 512 KB: a block stays in L2
/// while every tap adds into it.
const BLOCK_FLOATS: usize = 1 << 17;

/// `conv1d(xs, w) + bias` with no padding: `xs (B, C_in, L)`, `w (C_out, C_in, K)`,
/// `bias (C_out)`, stride `s`, dilation `d` → `(B, C_out, (L - (K-1)·d - 1) / s + 1)`.
pub fn conv1d(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    dilation: usize,
) -> Result<Tensor> {
    if !on_cpu_f32(xs, w) {
        let ys = xs.conv1d(w, 0, stride, dilation, 1)?;
        return Ok(match bias {
            Some(b) => ys.broadcast_add(&b.reshape((1, (), 1))?)?,
            None => ys,
        });
    }
    let (b_sz, c_in, len) = xs.dims3()?;
    let (c_out, w_in, k) = w.dims3()?;
    if w_in != c_in || stride == 0 || dilation == 0 || k == 0 {
        return Err(Error::InvalidArgument(format!(
            "conv1d of input {:?} with kernel {:?}, stride {stride}, dilation {dilation}",
            xs.dims(),
            w.dims()
        )));
    }
    let span = (k - 1) * dilation + 1;
    if len < span {
        return Err(Error::InvalidArgument(format!(
            "conv1d input of {len} samples is shorter than the kernel's span {span}"
        )));
    }
    let l_out = (len - span) / stride + 1;
    let xs = xs.contiguous()?;
    let w = w.contiguous()?;
    let bias = bias_values(bias, c_out, "conv1d")?;
    let mut out = output_with_bias(b_sz * c_out, l_out, bias.as_deref());
    {
        let (xs_store, xs_layout) = xs.storage_and_layout();
        let (w_store, w_layout) = w.storage_and_layout();
        let x = cpu_f32(&xs_store, xs_layout)?;
        let wv = cpu_f32(&w_store, w_layout)?;
        let geo = Geometry {
            c_in,
            c_out,
            len,
            k,
            stride,
            dilation,
            l_out,
        };
        run(&geo, b_sz, x, wv, &mut out);
    }
    Ok(Tensor::from_vec(out, (b_sz, c_out, l_out), &Device::Cpu)?)
}

/// A 1-D convolution's weight packed once for [`conv1d_packed`]: `(C_out, C_in, K)` as the
/// `(C_out, K·C_in)` left operand of the dense kernel.
pub struct PackedConv1d {
    lhs: PackedLhs,
    c_in: usize,
    k: usize,
}

impl PackedConv1d {
    /// Packs `w (C_out, C_in, K)`, f32 on the CPU; `None` on builds without the dense
    /// kernel, other devices or dtypes.
    pub fn new(w: &Tensor) -> Result<Option<Self>> {
        if !crate::sgemm::KERNELS || !on_cpu_f32(w, w) {
            return Ok(None);
        }
        let (c_out, c_in, k) = w.dims3()?;
        let w_taps = w.permute((0, 2, 1))?.contiguous()?;
        let (store, layout) = w_taps.storage_and_layout();
        let lhs = PackedLhs::from_rows(cpu_f32(&store, layout)?, c_out, k * c_in)?;
        Ok(Some(Self { lhs, c_in, k }))
    }
}

/// [`conv1d`] with a packed weight: all taps as one product of depth `K·C_in`, the input's
/// shifted (and strided) rows copied straight into the kernel's panels.
pub fn conv1d_packed(
    xs: &Tensor,
    w: &PackedConv1d,
    bias: Option<&[f32]>,
    stride: usize,
    dilation: usize,
) -> Result<Tensor> {
    conv1d_packed_reflect(xs, w, bias, stride, dilation, (0, 0))
}

/// [`conv1d_packed`] of the input reflect-padded by `(left, right)` (PyTorch's
/// `F.pad(x, …, mode='reflect')`, both shorter than the input), without the padded copy:
/// the panels read the mirrored samples where a tap falls in the padding.
pub fn conv1d_packed_reflect(
    xs: &Tensor,
    w: &PackedConv1d,
    bias: Option<&[f32]>,
    stride: usize,
    dilation: usize,
    (left, right): (usize, usize),
) -> Result<Tensor> {
    let (b_sz, c_in, len) = xs.dims3()?;
    if (left > 0 || right > 0) && len <= left.max(right) {
        return Err(Error::InvalidArgument(format!(
            "reflect padding ({left}, {right}) of an input of {len} samples"
        )));
    }
    // Padded position `p` → input sample.
    let source = |p: usize| {
        if p < left {
            left - p
        } else if p - left >= len {
            2 * (len - 1) - (p - left)
        } else {
            p - left
        }
    };
    let padded_len = len + left + right;
    let (c_out, k) = (w.lhs.m(), w.k);
    if w.c_in != c_in || stride == 0 || dilation == 0 || k == 0 {
        return Err(Error::InvalidArgument(format!(
            "conv1d of input {:?} with kernel ({c_out}, {}, {k}), stride {stride}, dilation {dilation}",
            xs.dims(),
            w.c_in
        )));
    }
    if bias.is_some_and(|b| b.len() != c_out) {
        return Err(Error::InvalidArgument(
            "conv1d bias does not have the kernel's output channels".into(),
        ));
    }
    let span = (k - 1) * dilation + 1;
    if padded_len < span {
        return Err(Error::InvalidArgument(format!(
            "conv1d input of {padded_len} samples is shorter than the kernel's span {span}"
        )));
    }
    let l_out = (padded_len - span) / stride + 1;
    let xs = xs.contiguous()?;
    // Not zeroed: the jobs below store every value (`set_product` over all columns).
    let mut out = Vec::<f32>::with_capacity(b_sz * c_out * l_out);
    {
        let (xs_store, xs_layout) = xs.storage_and_layout();
        let x = cpu_f32(&xs_store, xs_layout)?;
        let out_ptr = SendPtr(out.as_mut_ptr());
        for_column_blocks(b_sz, c_out, l_out, |b, c0, cols| {
            let xb = &x[b * c_in * len..(b + 1) * c_in * len];
            let fill = |i0: usize, rows: usize, j0: usize, n: usize, panel: &mut [f32]| {
                // Depth index = tap · C_in + channel, walked without a division per row.
                let (mut t, mut c) = (i0 / c_in, i0 % c_in);
                for dst in panel.chunks_exact_mut(16).take(rows) {
                    let row = &xb[c * len..(c + 1) * len];
                    // Padded positions `first + j·stride`, j < n.
                    let first = (c0 + j0) * stride + t * dilation;
                    let last = first + (n.max(1) - 1) * stride;
                    if first < left || last >= left + len {
                        for (j, d) in dst[..n].iter_mut().enumerate() {
                            *d = row[source(first + j * stride)];
                        }
                    } else if stride == 1 {
                        prefetch_ahead(row, first - left);
                        copy_panel_row(dst, &row[first - left..], n);
                    } else {
                        // Four panels ahead is 64 outputs, `64 · stride` samples.
                        prefetch_ahead(row, first - left + 64 * (stride - 1));
                        for (j, d) in dst[..n].iter_mut().enumerate() {
                            *d = row[first - left + j * stride];
                        }
                    }
                    c += 1;
                    if c == c_in {
                        c = 0;
                        t += 1;
                    }
                }
            };
            // SAFETY: this job alone writes columns c0..c0+cols of batch row b's `C_out`
            // rows (`l_out` apart); the panel reads are slice-indexed inside each channel's
            // row (padded positions below (l_out-1)·s + (K-1)·d + 1 ≤ the padded length).
            #[allow(unsafe_code)]
            unsafe {
                let out = out_ptr.get().add(b * c_out * l_out + c0);
                w.lhs.set_product(cols, fill, out, l_out, bias)
            };
        });
    }
    // SAFETY: the jobs covered every column block of every batch row, and each stored all
    // `C_out` rows of its columns.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(b_sz * c_out * l_out)
    };
    Ok(Tensor::from_vec(out, (b_sz, c_out, l_out), &Device::Cpu)?)
}

/// Two 1×1 convolutions of inputs of the same length summed, as one product of depth
/// `C_a + C_b`: `out = W_a · f(a) + W_b · b + bias`, where `w` packs `[W_a | W_b]` (the
/// two weights concatenated along the input channels, `k = 1`) and `f` is ELU when
/// `elu_a`, else the identity, applied as the panels are filled. For a SEANet residual
/// block's tail (`block.3(ELU(h)) + shortcut(x)`): no ELU pass over `h`, no separate
/// shortcut output, no add pass, and a deeper product for the kernel. With `elu_out`, the
/// result is `ELU(out)` (the ELU that follows a residual block in SEANet), applied to each
/// block of columns while it is still in the caches: no pass over the whole output and no
/// second tensor of its size.
pub fn conv1x1_pair(
    (a, elu_a): (&Tensor, bool),
    b: &Tensor,
    w: &PackedConv1d,
    bias: Option<&[f32]>,
    elu_out: bool,
) -> Result<Tensor> {
    let (b_sz, c_a, len) = a.dims3()?;
    let (b_sz_b, c_b, len_b) = b.dims3()?;
    let c_out = w.lhs.m();
    if w.k != 1 || w.c_in != c_a + c_b || b_sz_b != b_sz || len_b != len {
        return Err(Error::InvalidArgument(format!(
            "1×1 convolution pair of inputs {:?} and {:?} with a kernel of {} input channels and {} taps",
            a.dims(),
            b.dims(),
            w.c_in,
            w.k
        )));
    }
    if bias.is_some_and(|v| v.len() != c_out) {
        return Err(Error::InvalidArgument(
            "conv1d bias does not have the kernel's output channels".into(),
        ));
    }
    let (a, b) = (a.contiguous()?, b.contiguous()?);
    // Not zeroed: the jobs below store every value (`set_product` over all columns).
    let mut out = Vec::<f32>::with_capacity(b_sz * c_out * len);
    {
        let (a_store, a_layout) = a.storage_and_layout();
        let (b_store, b_layout) = b.storage_and_layout();
        let (xa, xb) = (cpu_f32(&a_store, a_layout)?, cpu_f32(&b_store, b_layout)?);
        let out_ptr = SendPtr(out.as_mut_ptr());
        for_column_blocks(b_sz, c_out, len, |bi, c0, cols| {
            let (ra, rb) = (&xa[bi * c_a * len..], &xb[bi * c_b * len..]);
            let fill = |i0: usize, rows: usize, j0: usize, n: usize, panel: &mut [f32]| {
                let at = c0 + j0;
                for (i, dst) in (i0..).zip(panel.chunks_exact_mut(16).take(rows)) {
                    if i < c_a {
                        prefetch_ahead(ra, i * len + at);
                        let src = &ra[i * len + at..i * len + at + n];
                        if elu_a {
                            elu_panel_row(dst, src, n);
                        } else {
                            copy_panel_row(dst, src, n);
                        }
                    } else {
                        let c = i - c_a;
                        prefetch_ahead(rb, c * len + at);
                        copy_panel_row(dst, &rb[c * len + at..], n);
                    }
                }
            };
            // SAFETY: this job alone writes columns c0..c0+cols of batch row bi's `C_out`
            // rows (`len` apart); the panel reads are slice-indexed inside one channel's row
            // of `a` or `b` (columns below c0 + cols ≤ len).
            #[allow(unsafe_code)]
            unsafe {
                let out = out_ptr.get().add(bi * c_out * len + c0);
                w.lhs.set_product(cols, fill, out, len, bias);
                if elu_out {
                    for r in 0..c_out {
                        // SAFETY: as above: row r's columns c0..c0+cols are this job's.
                        let row = std::slice::from_raw_parts_mut(out.add(r * len), cols);
                        for v in row {
                            *v = crate::activation::elu_value(*v);
                        }
                    }
                }
            };
        });
    }
    // SAFETY: the jobs covered every column block of every batch row, and each stored all
    // `C_out` rows of its columns.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(b_sz * c_out * len)
    };
    Ok(Tensor::from_vec(out, (b_sz, c_out, len), &Device::Cpu)?)
}

/// A transposed 1-D convolution (`K` a multiple of the stride `s`, `m = K / s`) as one
/// packed stride-1 convolution: output sample `t·s + r` of channel `o` is
/// `Σ_q Σ_ci w[o, q·s + r, ci] · x[ci, t − q]`, i.e. for each phase `r` a correlation of the
/// zero-padded input with `m` taps. The phases become output rows `o·s + r` (taps reversed),
/// so the whole layer is one product of depth `m·C_in` by our kernel, then the phases are
/// interleaved back into time. Same multiplications as the direct form, none on zeros.
pub struct PackedConvTranspose1d {
    conv: PackedConv1d,
    c_out: usize,
    k: usize,
    stride: usize,
}

impl std::fmt::Debug for PackedConvTranspose1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedConvTranspose1d({} → {}, k {}, stride {})",
            self.conv.c_in, self.c_out, self.k, self.stride
        )
    }
}

impl PackedConvTranspose1d {
    /// From the weight rows `w_rows (C_out·K, C_in)` (row `o·K + j` = tap `j` of output
    /// channel `o`), f32 on the CPU; `None` on builds without the dense kernel, other
    /// devices or dtypes.
    pub fn new(w_rows: &Tensor, c_out: usize, k: usize, stride: usize) -> Result<Option<Self>> {
        if !crate::sgemm::KERNELS || !on_cpu_f32(w_rows, w_rows) {
            return Ok(None);
        }
        let (rows, c_in) = w_rows.dims2()?;
        if stride == 0 || k == 0 || !k.is_multiple_of(stride) || rows != c_out * k {
            return Err(Error::InvalidArgument(format!(
                "transposed conv1d weight rows {:?} for {c_out} channels, kernel {k}, stride {stride}",
                w_rows.dims()
            )));
        }
        let m = k / stride;
        let w = w_rows.flatten_all()?.to_vec1::<f32>()?;
        let mut phases = vec![0f32; c_out * stride * c_in * m];
        for o in 0..c_out {
            for r in 0..stride {
                for ci in 0..c_in {
                    for q in 0..m {
                        let j = (m - 1 - q) * stride + r;
                        phases[((o * stride + r) * c_in + ci) * m + q] = w[(o * k + j) * c_in + ci];
                    }
                }
            }
        }
        let phases = Tensor::from_vec(phases, (c_out * stride, c_in, m), &Device::Cpu)?;
        Ok(PackedConv1d::new(&phases)?.map(|conv| Self {
            conv,
            c_out,
            k,
            stride,
        }))
    }
}

/// [`conv_transpose1d_full`] with a [`PackedConvTranspose1d`]: `(B, C_in, T)` →
/// `(B, C_out, (T − 1)·s + K)`, no bias.
pub fn conv_transpose1d_packed(xs: &Tensor, w: &PackedConvTranspose1d) -> Result<Tensor> {
    let (b_sz, c_in, t_len) = xs.dims3()?;
    if c_in != w.conv.c_in || t_len == 0 {
        return Err(Error::InvalidArgument(format!(
            "transposed conv1d of input {:?} with {} input channels",
            xs.dims(),
            w.conv.c_in
        )));
    }
    let (s, m) = (w.stride, w.k / w.stride);
    let xs = xs.to_dtype(candle_core::DType::F32)?;
    let padded = if m > 1 {
        xs.pad_with_zeros(candle_core::D::Minus1, m - 1, m - 1)?
    } else {
        xs
    };
    // (B, C_out·s, T + m − 1): phase r of channel o in row o·s + r.
    let phases = conv1d_packed(&padded, &w.conv, None, 1, 1)?;
    let width = t_len + m - 1;
    let len = b_sz * w.c_out * width * s;
    // Not zeroed: the interleave below stores every value.
    let mut out = Vec::<f32>::with_capacity(len);
    {
        let (store, layout) = phases.storage_and_layout();
        let src = cpu_f32(&store, layout)?;
        if src.len() != len {
            return Err(Error::InvalidArgument(format!(
                "transposed conv1d phases of {} values for an output of {len}",
                src.len()
            )));
        }
        let dst = out.spare_capacity_mut();
        crate::activation::par_rows((src, s * width), (dst, width * s), |src, dst| {
            for (src, dst) in src
                .chunks_exact(s * width)
                .zip(dst.chunks_exact_mut(width * s))
            {
                for (r, row) in src.chunks_exact(width).enumerate() {
                    for (t, &v) in row.iter().enumerate() {
                        dst[t * s + r].write(v);
                    }
                }
            }
        });
    }
    // SAFETY: `par_rows` passed each of the `B · C_out` rows (`s · width` phase values in,
    // as many out) to the closure, which stored output `t·s + r` for every phase `r < s`
    // and time `t < width`: all `len` values.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    Ok(Tensor::from_vec(
        out,
        (b_sz, w.c_out, width * s),
        &Device::Cpu,
    )?)
}

/// Runs `job(b, c0, cols)` for every block of output columns `c0 .. c0+cols` of every batch
/// row (`width` columns of `c_out` rows each; blocks of about `BLOCK_FLOATS` outputs), the
/// blocks dealt out over candle's pool as threads come free.
fn for_column_blocks(
    b_sz: usize,
    c_out: usize,
    width: usize,
    job: impl Fn(usize, usize, usize) + Sync,
) {
    let cols = (BLOCK_FLOATS / c_out.max(1)).clamp(256, 8192).min(width);
    if cols == 0 {
        return;
    }
    let per_row = width.div_ceil(cols);
    let jobs = b_sz * per_row;
    let next = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_| loop {
        let at = next.fetch_add(1, Ordering::Relaxed);
        if at >= jobs {
            break;
        }
        let (b, c0) = (at / per_row, (at % per_row) * cols);
        job(b, c0, cols.min(width - c0));
    });
}

/// Whether both tensors are f32 on the CPU (the kernels here); otherwise candle runs it.
fn on_cpu_f32(xs: &Tensor, w: &Tensor) -> bool {
    matches!(xs.device(), Device::Cpu)
        && xs.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32
}

/// Reflect padding of the last dimension of an f32 CPU tensor (`left` and `right` both
/// shorter than it), row by row on candle's pool: each row is one copy plus the mirrored
/// ends, where candle's `index_select` gathers every value through an index on one thread.
/// `None` for other tensors.
pub fn pad_reflect_last(xs: &Tensor, left: usize, right: usize) -> Result<Option<Tensor>> {
    let len = xs.dim(candle_core::D::Minus1)?;
    if !on_cpu_f32(xs, xs) || len <= left.max(right) {
        return Ok(None);
    }
    let xs = xs.contiguous()?;
    let (storage, layout) = xs.storage_and_layout();
    let src = cpu_f32(&storage, layout)?;
    let width = left + len + right;
    let mut out = vec![0f32; src.len() / len * width];
    crate::activation::par_rows((src, len), (&mut out, width), |src, dst| {
        for (s, d) in src.chunks_exact(len).zip(dst.chunks_exact_mut(width)) {
            for (j, v) in d[..left].iter_mut().enumerate() {
                *v = s[left - j];
            }
            d[left..left + len].copy_from_slice(s);
            for (j, v) in d[left + len..].iter_mut().enumerate() {
                *v = s[len - 2 - j];
            }
        }
    });
    let mut dims = xs.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = width;
    }
    Ok(Some(Tensor::from_vec(out, dims, &Device::Cpu)?))
}

/// The bias as f32 values, checked to have `c_out` of them.
fn bias_values(bias: Option<&Tensor>, c_out: usize, op: &str) -> Result<Option<Vec<f32>>> {
    let Some(bias) = bias else { return Ok(None) };
    let v = bias
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if v.len() != c_out {
        return Err(Error::InvalidArgument(format!(
            "{op} bias does not have the kernel's {c_out} output channels"
        )));
    }
    Ok(Some(v))
}

/// Asks the CPU to start loading `data[at + 64 ..]` (four 16-column panels further along
/// the same row, at stride 1) into the caches. A panel fill reads 64 bytes from each of `K`
/// rows of the input, rows far apart in a long signal: more streams than the hardware
/// prefetcher follows (`cargo bench --bench conv1d`: 10–20 % faster on the long-signal
/// shapes with the fixed-size copy below). A hint only: no address is dereferenced.
#[inline(always)]
fn prefetch_ahead(data: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = data.as_ptr().wrapping_add(at + 64);
        // SAFETY: a prefetch hint does not access memory (no fault on any address).
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}

/// `dst[..n] = src[..n]` for one row of a 16-column panel: whole rows (`n = 16`, all but
/// a block's last panel) as a fixed-size copy the compiler turns into register moves
/// instead of a `memcpy` call per row.
#[inline(always)]
fn copy_panel_row(dst: &mut [f32], src: &[f32], n: usize) {
    let whole = (
        dst.get_mut(..16)
            .and_then(|d| <&mut [f32; 16]>::try_from(d).ok()),
        src.get(..16).and_then(|s| <&[f32; 16]>::try_from(s).ok()),
    );
    match whole {
        (Some(d), Some(s)) if n == 16 => *d = *s,
        _ => dst[..n].copy_from_slice(&src[..n]),
    }
}

/// `dst[..n] = ELU(src[..n])`, whole rows at a fixed size (as [`copy_panel_row`]) so the
/// loop vectorizes.
#[inline(always)]
fn elu_panel_row(dst: &mut [f32], src: &[f32], n: usize) {
    let elu = crate::activation::elu_value;
    match (dst.get_mut(..16), src.get(..16)) {
        (Some(d), Some(s)) if n == 16 => {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = elu(x);
            }
        }
        _ => {
            for (d, &x) in dst[..n].iter_mut().zip(src) {
                *d = elu(x);
            }
        }
    }
}

/// A zeroed `(rows, row_len)` output, row `r` set to `bias[r % C_out]` when there is one.
fn output_with_bias(rows: usize, row_len: usize, bias: Option<&[f32]>) -> Vec<f32> {
    match bias {
        // Written once with the bias (no zeroing pass first: a reused block of the tensor
        // allocator would be cleared with a memset).
        Some(b) if !b.is_empty() => {
            let mut out = Vec::with_capacity(rows * row_len);
            for &v in b.iter().cycle().take(rows) {
                out.extend(std::iter::repeat_n(v, row_len));
            }
            out
        }
        _ => vec![0f32; rows * row_len],
    }
}

fn cpu_f32<'a>(storage: &'a Storage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(&v[a..b]),
        _ => Err(Error::InvalidArgument(
            "conv1d: a contiguous f32 CPU tensor expected".into(),
        )),
    }
}

/// Sizes of one convolution.
struct Geometry {
    c_in: usize,
    c_out: usize,
    len: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    l_out: usize,
}

/// `dst (m × n) += lhs (m × k) · rhs (k × n)` on the calling thread, every matrix given as
/// a pointer and its (row, column) strides in elements.
///
/// # Safety
/// Every element the strides reach must lie inside its allocation, and no other thread may
/// read or write the `dst` elements during the call.
#[allow(unsafe_code)]
unsafe fn add_product(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    (dst_rs, dst_cs): (usize, usize),
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    // SAFETY: the caller's contract (above) is gemm's.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            true,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Splits every batch row's output columns into blocks and runs them over candle's pool.
fn run(g: &Geometry, b_sz: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    let cols = (BLOCK_FLOATS / g.c_out.max(1))
        .clamp(64, 4096)
        .min(g.l_out.max(1));
    let per_row = g.l_out.div_ceil(cols);
    let jobs = b_sz * per_row;
    let next = AtomicUsize::new(0);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let out_len = out.len();
    let pool = candle_core::utils::barrier_pool();
    pool.execute(|_| {
        let mut scratch = Vec::new();
        loop {
            let job = next.fetch_add(1, Ordering::Relaxed);
            if job >= jobs {
                break;
            }
            let (b, blk) = (job / per_row, job % per_row);
            let t0 = blk * cols;
            let n = cols.min(g.l_out - t0);
            let xb = &x[b * g.c_in * g.len..(b + 1) * g.c_in * g.len];
            let dst_off = b * g.c_out * g.l_out + t0;
            // Block (b, blk) owns columns t0..t0+n of the C_out rows of batch row b: no other
            // job writes them.
            block(g, xb, w, out_ptr, out_len, dst_off, t0, n, &mut scratch);
        }
    });
}

/// The output pointer, shared by the pool's threads (each writes its own blocks).
pub(crate) struct SendPtr<T = f32>(pub(crate) *mut T);

// A pointer copies whatever it points at (no `T: Copy` bound, as `derive` would add).
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the field).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
// SAFETY: the pointer is only written through in disjoint blocks, by one thread each (see
// `run`, `activation::par_rows`), of values that may move between threads.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Adds every tap's product into output columns `t0..t0+n` of one batch row.
#[allow(clippy::too_many_arguments)]
#[allow(unsafe_code)]
fn block(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    out: SendPtr,
    out_len: usize,
    dst_off: usize,
    t0: usize,
    n: usize,
    scratch: &mut Vec<f32>,
) {
    let d = g.dilation;
    // Last output element this block touches, and the last input element read.
    debug_assert!(dst_off + (g.c_out - 1) * g.l_out + n <= out_len);
    debug_assert!((g.c_in - 1) * g.len + (t0 + n - 1) * g.stride + (g.k - 1) * d < x.len());
    let _ = out_len;
    if g.c_in < MIN_TAP_CHANNELS {
        // Gather the C_in·K tap rows of these columns, then one product.
        let rows = g.c_in * g.k;
        scratch.clear();
        scratch.resize(rows * n, 0.0);
        for ci in 0..g.c_in {
            for j in 0..g.k {
                let row = &mut scratch[(ci * g.k + j) * n..(ci * g.k + j + 1) * n];
                let base = ci * g.len + t0 * g.stride + j * d;
                for (t, v) in row.iter_mut().enumerate() {
                    *v = x[base + t * g.stride];
                }
            }
        }
        // SAFETY: dst rows are `l_out` apart, `n` columns from `dst_off` (in bounds: the
        // debug assertion above, and `t0 + n <= l_out`); lhs is `w` as (C_out, C_in·K)
        // row-major; rhs is `scratch` as (C_in·K, n) row-major. Only this job writes them.
        unsafe {
            add_product(
                (g.c_out, n, rows),
                out.get().add(dst_off),
                (g.l_out, 1),
                w.as_ptr(),
                (rows, 1),
                scratch.as_ptr(),
                (n, 1),
            );
        }
        return;
    }
    for j in 0..g.k {
        // SAFETY: lhs = W[:, :, j]: rows C_in·K apart, columns K apart, from offset j (< K);
        // rhs = X[:, j·d + s·t] for t in t0..t0+n: rows `len` apart, columns `s` apart, the
        // last read in bounds (debug assertion above: `(t0+n-1)·s + (K-1)·d < len`, which
        // holds because `t0 + n <= l_out`); dst as above.
        unsafe {
            add_product(
                (g.c_out, n, g.c_in),
                out.get().add(dst_off),
                (g.l_out, 1),
                w.as_ptr().add(j),
                (g.c_in * g.k, g.k),
                x.as_ptr().add(t0 * g.stride + j * d),
                (g.len, g.stride),
            );
        }
    }
}

/// The full output of a transposed 1-D convolution without bias, f32 on the CPU:
/// `xs (B, C_in, T)`, `w_rows (C_out·K, C_in)` (row `o·K + j` = tap `j` of output channel
/// `o`), stride `s` → `(B, C_out, (T - 1)·s + K)` with `out[o, t·s + j] = Σ_ci w[o·K + j, ci] ·
/// x[ci, t]`. Each tap is one `gemm` that adds straight into every `s`-th output column (no
/// `(C_out·K, T)` frames tensor, no overlap-add copies); the output channels are split over
/// candle's pool. `None` when the inputs are not f32 on the CPU (use tensor ops).
pub fn conv_transpose1d_full(
    xs: &Tensor,
    w_rows: &Tensor,
    c_out: usize,
    k: usize,
    stride: usize,
) -> Result<Option<Tensor>> {
    if !on_cpu_f32(xs, w_rows) {
        return Ok(None);
    }
    let (b_sz, c_in, t_len) = xs.dims3()?;
    if w_rows.dims2()? != (c_out * k, c_in) || stride == 0 || k == 0 || t_len == 0 {
        return Err(Error::InvalidArgument(format!(
            "transposed conv1d of input {:?} with weight rows {:?} for {c_out} channels, kernel {k}, stride {stride}",
            xs.dims(),
            w_rows.dims()
        )));
    }
    let l_full = (t_len - 1) * stride + k;
    let xs = xs.contiguous()?;
    let w_rows = w_rows.contiguous()?;
    let mut out = vec![0f32; b_sz * c_out * l_full];
    {
        let (xs_store, xs_layout) = xs.storage_and_layout();
        let (w_store, w_layout) = w_rows.storage_and_layout();
        let x = cpu_f32(&xs_store, xs_layout)?;
        let w = cpu_f32(&w_store, w_layout)?;
        let pool = candle_core::utils::barrier_pool();
        let threads = pool.n_workers() + 1;
        let per = c_out.div_ceil(threads).max(1);
        let out_ptr = SendPtr(out.as_mut_ptr());
        pool.execute(|tid| {
            let o0 = tid * per;
            if o0 >= c_out {
                return;
            }
            let rows = per.min(c_out - o0);
            for b in 0..b_sz {
                for j in 0..k {
                    // SAFETY: this thread alone writes output rows o0..o0+rows of batch row
                    // b. dst: rows `l_full` apart, columns `stride` apart from column j: the
                    // last, (t_len-1)·s + j < l_full. lhs: rows o0.. of tap j, `K·C_in`
                    // apart, columns 1 apart (C_in of them). rhs: x of batch row b,
                    // (C_in, T) row-major.
                    #[allow(unsafe_code)]
                    unsafe {
                        add_product(
                            (rows, t_len, c_in),
                            out_ptr.get().add((b * c_out + o0) * l_full + j),
                            (l_full, stride),
                            w.as_ptr().add((o0 * k + j) * c_in),
                            (k * c_in, 1),
                            x.as_ptr().add(b * c_in * t_len),
                            (t_len, 1),
                        );
                    }
                }
            }
        });
    }
    Ok(Some(Tensor::from_vec(
        out,
        (b_sz, c_out, l_full),
        &Device::Cpu,
    )?))
}

/// `conv2d(xs, w, padding) + bias` with stride 1, f32 on the CPU: `xs (B, C_in, H, W)`,
/// `w (C_out, C_in, KH, KW)` → `(B, C_out, H + 2p - KH + 1, W + 2p - KW + 1)`. `None` when
/// the inputs are not f32 on the CPU (use candle's `conv2d`).
///
/// The zero-padded input `(C_in, Hp, Wp)` is read as a `(C_in, Hp·Wp)` matrix: output
/// position `(y, x)` at "wide" column `y·Wp + x` is then `Σ_taps W[:, :, dy, dx] · X[:, c +
/// dy·Wp + dx]`, every tap one `gemm` over shifted columns of the same matrix (no im2col
/// matrix of `C_in·KH·KW` rows), computing `KW - 1` columns per row that are thrown away
/// when the valid `W_out` columns are copied out. Column blocks go over candle's pool.
pub fn conv2d_s1(
    xs: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
) -> Result<Option<Tensor>> {
    if !on_cpu_f32(xs, w) {
        return Ok(None);
    }
    let (c_out, w_in, kh, kw) = w.dims4()?;
    // Weight as (C_out, KH·KW, C_in): tap t's (C_out, C_in) block has unit column stride.
    let w_taps = w.permute((0, 2, 3, 1))?.contiguous()?;
    let bias = bias_values(bias, c_out, "conv2d")?;
    let (w_store, w_layout) = w_taps.storage_and_layout();
    let wv = cpu_f32(&w_store, w_layout)?;
    let taps = kh * kw;
    let geometry = Conv2dShape {
        c_out,
        c_in: w_in,
        kh,
        kw,
        padding,
    };
    let ys = run_conv2d_s1(xs, &geometry, bias.as_deref(), |job| {
        for t in 0..taps {
            let (dy, dx) = (t / kw, t % kw);
            // SAFETY: the job alone writes wide columns c0..c0+n of its batch row (rows
            // `n_wide` apart). Reads: input column c + dy·Wp + dx ≤ (n_wide - 1) + (KH-1)·Wp
            // + KW-1 = Hp·Wp - 1 inside each channel's plane (`plane` apart); weights: tap
            // t's (C_out, C_in) block, rows KH·KW·C_in apart.
            #[allow(unsafe_code)]
            unsafe {
                add_product(
                    (c_out, job.n, w_in),
                    job.out,
                    (job.n_wide, 1),
                    wv.as_ptr().add(t * w_in),
                    (taps * w_in, 1),
                    job.x.as_ptr().add(job.c0 + dy * job.wp + dx),
                    (job.plane, 1),
                );
            }
        }
    })?;
    Ok(Some(ys))
}

/// A stride-1 convolution's weight for [`conv2d_s1_packed`]: `(C_out, C_in, KH, KW)` packed
/// once as the `(C_out, KH·KW·C_in)` left operand of the dense kernel ([`PackedLhs`]).
pub struct PackedConv2d {
    lhs: PackedLhs,
    c_in: usize,
    kh: usize,
    kw: usize,
}

impl PackedConv2d {
    /// Packs `w (C_out, C_in, KH, KW)`, f32 on the CPU; `None` on builds without the dense
    /// kernel, other devices or dtypes.
    pub fn new(w: &Tensor) -> Result<Option<Self>> {
        if !crate::sgemm::KERNELS || !on_cpu_f32(w, w) {
            return Ok(None);
        }
        let (c_out, c_in, kh, kw) = w.dims4()?;
        let w_taps = w.permute((0, 2, 3, 1))?.contiguous()?;
        let (store, layout) = w_taps.storage_and_layout();
        let lhs = PackedLhs::from_rows(cpu_f32(&store, layout)?, c_out, kh * kw * c_in)?;
        Ok(Some(Self { lhs, c_in, kh, kw }))
    }

    /// The packed weight: `C_out` rows of depth `KH·KW·C_in` (index `tap · C_in + channel`).
    pub fn lhs(&self) -> &PackedLhs {
        &self.lhs
    }
}

/// [`conv2d_s1`] with a packed weight. 3 × 3 kernels with padding 1 (the unCLIP UNet's and
/// VAE's) go to Winograd's F(2 × 2, 3 × 3) ([`crate::winograd`]) where it pays. Otherwise
/// the taps are one product of depth `KH·KW·C_in` instead of `KH·KW` products of depth
/// `C_in`, so each output block is written once per 1536-deep block instead of once per
/// tap, and the weight is never repacked; the input's shifted rows are copied into the
/// kernel's 16-column panels as they are needed.
pub fn conv2d_s1_packed(
    xs: &Tensor,
    w: &PackedConv2d,
    bias: Option<&[f32]>,
    padding: usize,
) -> Result<Tensor> {
    // Both paths check the bias and the input's shape.
    if let Ok((b, x_in, h, wd)) = xs.dims4() {
        if (w.kh, w.kw, padding) == (3, 3, 1)
            && x_in == w.c_in
            && crate::winograd::worth_it(b, h, wd, w.c_in, w.lhs.m())
        {
            let u = crate::winograd::transform_weights(&w.lhs, w.c_in)?;
            return crate::winograd::conv3x3(xs, &u, bias);
        }
    }
    conv2d_s1_packed_direct(xs, w, bias, padding)
}

/// [`conv2d_s1_packed`] without the Winograd path: the direct sum over the taps.
pub fn conv2d_s1_packed_direct(
    xs: &Tensor,
    w: &PackedConv2d,
    bias: Option<&[f32]>,
    padding: usize,
) -> Result<Tensor> {
    let geometry = Conv2dShape {
        c_out: w.lhs.m(),
        c_in: w.c_in,
        kh: w.kh,
        kw: w.kw,
        padding,
    };
    if bias.is_some_and(|b| b.len() != geometry.c_out) {
        return Err(Error::InvalidArgument(
            "conv2d bias does not have the kernel's output channels".into(),
        ));
    }
    let (c_in, kw) = (w.c_in, w.kw);
    run_conv2d_s1(xs, &geometry, bias, |job| {
        let fill = |i0: usize, rows: usize, j0: usize, cols: usize, panel: &mut [f32]| {
            // Depth index = tap · C_in + channel, walked without a division per row.
            let (mut t, mut c) = (i0 / c_in, i0 % c_in);
            let mut tap_at = job.c0 + (t / kw) * job.wp + t % kw + j0;
            for dst in panel.chunks_exact_mut(16).take(rows) {
                let at = c * job.plane + tap_at;
                dst[..cols].copy_from_slice(&job.x[at..at + cols]);
                c += 1;
                if c == c_in {
                    c = 0;
                    t += 1;
                    tap_at = job.c0 + (t / kw) * job.wp + t % kw + j0;
                }
            }
        };
        // SAFETY: the job alone writes wide columns c0..c0+n of its batch row, rows `n_wide`
        // apart; the panel reads stay inside the padded planes (see `conv2d_s1`).
        #[allow(unsafe_code)]
        unsafe {
            w.lhs.add_product(job.n, fill, job.out, job.n_wide)
        };
    })
}

/// The shape of a stride-1 convolution.
struct Conv2dShape {
    c_out: usize,
    c_in: usize,
    kh: usize,
    kw: usize,
    padding: usize,
}

/// One job of [`run_conv2d_s1`]: wide output columns `c0 .. c0+n` of one batch row.
struct Conv2dJob<'a> {
    /// The batch row's padded input, `C_in` planes of `plane` values.
    x: &'a [f32],
    /// The output at (channel 0, wide column `c0`), rows `n_wide` apart.
    out: *mut f32,
    c0: usize,
    n: usize,
    n_wide: usize,
    wp: usize,
    plane: usize,
}

/// Pads the input, splits the "wide" output (see [`conv2d_s1`]) of every batch row into
/// column blocks over candle's pool, runs `block` on each (which adds the product into its
/// bias-initialised columns) and keeps the valid columns.
fn run_conv2d_s1(
    xs: &Tensor,
    g: &Conv2dShape,
    bias: Option<&[f32]>,
    block: impl Fn(&Conv2dJob) + Sync,
) -> Result<Tensor> {
    let (b_sz, c_in, h, wd) = xs.dims4()?;
    let (c_out, p) = (g.c_out, g.padding);
    let (hp, wp) = (h + 2 * p, wd + 2 * p);
    if g.c_in != c_in || g.kh == 0 || g.kw == 0 || hp < g.kh || wp < g.kw {
        return Err(Error::InvalidArgument(format!(
            "conv2d of input {:?} with kernel ({c_out}, {}, {}, {}), padding {p}",
            xs.dims(),
            g.c_in,
            g.kh,
            g.kw
        )));
    }
    let (ho, wo) = (hp - g.kh + 1, wp - g.kw + 1);
    let xs = if p > 0 {
        xs.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
    } else {
        xs.contiguous()?
    };
    // Wide columns needed: up to the last valid output position.
    let n_wide = (ho - 1) * wp + wo;
    let plane = hp * wp;
    let mut wide = output_with_bias(b_sz * c_out, n_wide, bias);
    {
        let (xs_store, xs_layout) = xs.storage_and_layout();
        let x = cpu_f32(&xs_store, xs_layout)?;
        let out_ptr = SendPtr(wide.as_mut_ptr());
        for_column_blocks(b_sz, c_out, n_wide, |b, c0, n| {
            // SAFETY (pointer arithmetic): batch row b's block starts inside `wide`.
            #[allow(unsafe_code)]
            let out = unsafe { out_ptr.get().add(b * c_out * n_wide + c0) };
            block(&Conv2dJob {
                x: &x[b * c_in * plane..(b + 1) * c_in * plane],
                out,
                c0,
                n,
                n_wide,
                wp,
                plane,
            });
        });
    }
    // Keep the `W_out` valid columns of every wide row.
    let mut out = vec![0f32; b_sz * c_out * ho * wo];
    for (dst, src) in out.chunks_exact_mut(ho * wo).zip(wide.chunks_exact(n_wide)) {
        for y in 0..ho {
            dst[y * wo..(y + 1) * wo].copy_from_slice(&src[y * wp..y * wp + wo]);
        }
    }
    Ok(Tensor::from_vec(out, (b_sz, c_out, ho, wo), &Device::Cpu)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_of_1x1_convolutions_is_their_sum() {
        let dev = Device::Cpu;
        let (c_a, c_b, c_out, len) = (13, 21, 29, 700);
        let a = Tensor::randn(0f32, 1., (2, c_a, len), &dev).unwrap();
        let b = Tensor::randn(0f32, 1., (2, c_b, len), &dev).unwrap();
        let wa = Tensor::randn(0f32, 0.3, (c_out, c_a, 1), &dev).unwrap();
        let wb = Tensor::randn(0f32, 0.3, (c_out, c_b, 1), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
        let packed = PackedConv1d::new(&Tensor::cat(&[&wa, &wb], 1).unwrap()).unwrap();
        assert_eq!(packed.is_some(), crate::sgemm::KERNELS);
        let Some(w) = packed else { return };
        let bv = bias.to_vec1::<f32>().unwrap();
        for elu_a in [false, true] {
            let fa = if elu_a {
                a.elu(1.0).unwrap()
            } else {
                a.clone()
            };
            let want = (fa.conv1d(&wa, 0, 1, 1, 1).unwrap() + b.conv1d(&wb, 0, 1, 1, 1).unwrap())
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1)).unwrap())
                .unwrap();
            let got = conv1x1_pair((&a, elu_a), &b, &w, Some(&bv), false).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = crate::sgemm::tests::max_abs_diff(&got, &want);
            assert!(diff < 1e-5, "elu {elu_a}: {diff}");
            // The ELU of the output fused in: exactly our ELU pass over the plain result.
            let fused = conv1x1_pair((&a, elu_a), &b, &w, Some(&bv), true).unwrap();
            let separate = crate::activation::elu(&got).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.into_iter().map(f32::to_bits).collect()
            };
            assert_eq!(bits(&fused), bits(&separate), "elu {elu_a}");
        }
        // Inputs that do not fit the kernel or each other.
        let short = b.narrow(2, 0, len - 1).unwrap();
        assert!(conv1x1_pair((&a, true), &short, &w, None, false).is_err());
        let fewer = a.narrow(1, 0, c_a - 1).unwrap();
        assert!(conv1x1_pair((&fewer, true), &b, &w, None, false).is_err());
        assert!(conv1x1_pair((&a, true), &b, &w, Some(&bv[1..]), false).is_err());
    }

    fn check(b: usize, c_in: usize, c_out: usize, len: usize, k: usize, s: usize, d: usize) {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 1., (b, c_in, len), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.3, (c_out, c_in, k), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
        let theirs = xs
            .conv1d(&w, 0, s, d, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((1, (), 1)).unwrap())
            .unwrap();
        let mut results = vec![conv1d(&xs, &w, Some(&bias), s, d).unwrap()];
        // The packed-weight path, where this build has the dense kernel.
        if let Some(packed) = PackedConv1d::new(&w).unwrap() {
            let bv = bias.to_vec1::<f32>().unwrap();
            results.push(conv1d_packed(&xs, &packed, Some(&bv), s, d).unwrap());
        }
        assert_eq!(results.len(), 1 + crate::sgemm::KERNELS as usize);
        for ours in results {
            assert_eq!(
                ours.dims(),
                theirs.dims(),
                "{b} {c_in} {c_out} {len} {k} {s} {d}"
            );
            let diff = (ours - &theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{b} {c_in} {c_out} {len} {k} {s} {d}: {diff}");
        }
    }

    #[test]
    fn matches_candle_conv1d() {
        // Mono input (im2col block), the SEANet shapes (k 7 / 3 with dilation / 1, strided
        // down-sampling k = 2s), many column blocks, batch rows, a non-contiguous input.
        check(1, 1, 8, 300, 7, 1, 1);
        check(2, 20, 24, 257, 3, 1, 3);
        check(1, 32, 16, 5000, 1, 1, 1);
        check(2, 16, 32, 1003, 8, 4, 1);
        check(1, 64, 128, 9000, 4, 2, 1);
        check(1, 3, 5, 40, 5, 3, 2);
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 1., (1, 40, 24), &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let w = Tensor::randn(0f32, 1., (6, 24, 3), &dev).unwrap();
        let ours = conv1d(&xs, &w, None, 1, 1).unwrap();
        let theirs = xs.conv1d(&w, 0, 1, 1, 1).unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
    }

    #[test]
    fn reflect_padding_read_in_place_equals_padding_first() {
        let dev = Device::Cpu;
        // (b, c_in, c_out, len, k, stride, dilation, left, right): the SEANet shapes (k 7,
        // dilated k 3, strided k = 2s with the extra right padding), pads up to len - 1, and
        // column blocks that start and end inside the padding.
        for &(b, c_in, c_out, len, k, st, d, l, r) in &[
            (1, 1, 8, 300, 7, 1, 1, 3, 3),
            (2, 5, 7, 97, 3, 1, 3, 3, 3),
            (1, 6, 9, 1003, 16, 8, 1, 4, 9),
            (2, 4, 6, 5, 5, 1, 1, 4, 4),
            (1, 3, 5, 40, 4, 2, 1, 1, 2),
            (1, 8, 8, 20_000, 7, 1, 1, 6, 0),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c_in, len), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.3, (c_out, c_in, k), &dev).unwrap();
            let bv: Vec<f32> = (0..c_out).map(|i| i as f32 * 0.1).collect();
            let packed = PackedConv1d::new(&w).unwrap();
            assert_eq!(packed.is_some(), crate::sgemm::KERNELS);
            let Some(packed) = packed else { return };
            let padded = pad_reflect_last(&xs, l, r).unwrap().unwrap();
            let first = conv1d_packed(&padded, &packed, Some(&bv), st, d).unwrap();
            let fused = conv1d_packed_reflect(&xs, &packed, Some(&bv), st, d, (l, r)).unwrap();
            assert_eq!(fused.dims(), first.dims());
            // Same products in the same order: bit-equal.
            assert_eq!(
                fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                first.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{b} {c_in} {c_out} {len} {k} {st} {d} {l} {r}"
            );
        }
        let xs = Tensor::randn(0f32, 1., (1, 2, 4), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.3, (3, 2, 3), &dev).unwrap();
        if let Some(packed) = PackedConv1d::new(&w).unwrap() {
            assert!(conv1d_packed_reflect(&xs, &packed, None, 1, 1, (4, 0)).is_err());
        }
    }

    #[test]
    fn transposed_matches_candle_conv_transpose1d() {
        let dev = Device::Cpu;
        for &(b, c_in, c_out, t, k, s) in &[
            (1, 8, 4, 30, 16, 8),
            (2, 6, 4, 17, 10, 5),
            (2, 6, 5, 17, 1, 1),
            (2, 6, 5, 17, 10, 5),
            (1, 3, 2, 1, 4, 2),
            (1, 16, 8, 40, 3, 1),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c_in, t), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.3, (c_in, c_out, k), &dev).unwrap();
            // candle one batch row at a time: its CPU conv_transpose1d (0.11) gives other
            // results for B = 2 than for the same rows run one by one (seen here; our
            // SConvTranspose1d never used it).
            let per_row: Vec<Tensor> = (0..b)
                .map(|i| {
                    xs.narrow(0, i, 1)
                        .unwrap()
                        .conv_transpose1d(&w, 0, 0, s, 1, 1)
                        .unwrap()
                })
                .collect();
            let theirs = Tensor::cat(&per_row, 0).unwrap();
            let rows = w
                .reshape((c_in, c_out * k))
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap();
            let ours = conv_transpose1d_full(&xs, &rows, c_out, k, s)
                .unwrap()
                .unwrap();
            // The packed form (phases as output rows), where this build has the kernel.
            let packed = PackedConvTranspose1d::new(&rows, c_out, k, s).unwrap();
            assert_eq!(packed.is_some(), crate::sgemm::KERNELS);
            if let Some(packed) = packed {
                let phased = conv_transpose1d_packed(&xs, &packed).unwrap();
                assert_eq!(phased.dims(), theirs.dims());
                let diff = (phased - &theirs)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap();
                assert!(
                    diff.to_scalar::<f32>().unwrap() < 1e-4,
                    "packed {b} {c_in} {c_out} {t} {k} {s}"
                );
            }
            assert_eq!(ours.dims(), theirs.dims());
            let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(
                diff.to_scalar::<f32>().unwrap() < 1e-4,
                "{b} {c_in} {c_out} {t} {k} {s}"
            );
        }
        let xs = Tensor::zeros((1, 3, 5), candle_core::DType::F32, &dev).unwrap();
        let rows = Tensor::zeros((7, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv_transpose1d_full(&xs, &rows, 2, 4, 2).is_err());
        // The packed form: weight rows that are not C_out·K, a kernel that is not a multiple
        // of the stride, an input of other channels.
        if crate::sgemm::KERNELS {
            assert!(PackedConvTranspose1d::new(&rows, 2, 4, 2).is_err());
            let rows = Tensor::zeros((6, 3), candle_core::DType::F32, &dev).unwrap();
            assert!(PackedConvTranspose1d::new(&rows, 2, 3, 2).is_err());
            let packed = PackedConvTranspose1d::new(&rows, 3, 2, 2).unwrap().unwrap();
            let four = Tensor::zeros((1, 4, 5), candle_core::DType::F32, &dev).unwrap();
            assert!(conv_transpose1d_packed(&four, &packed).is_err());
            assert_eq!(
                conv_transpose1d_packed(&xs, &packed).unwrap().dims(),
                &[1, 3, 10]
            );
        }
        let f16 = xs.to_dtype(candle_core::DType::F16).unwrap();
        assert!(conv_transpose1d_full(&f16, &rows, 2, 4, 2)
            .unwrap()
            .is_none());
    }

    #[test]
    fn conv2d_matches_candle() {
        let dev = Device::Cpu;
        for &(b, c_in, c_out, h, w, k, p) in &[
            (1, 4, 8, 9, 7, 3, 1),
            (2, 20, 6, 16, 16, 3, 1),
            (2, 12, 10, 5, 6, 1, 0),
            (1, 3, 4, 6, 5, 3, 0),
            (1, 8, 300, 40, 33, 3, 1),
            // Enough channels and tiles for the Winograd path of the packed convolution.
            (1, 32, 24, 34, 31, 3, 1),
        ] {
            let xs = Tensor::randn(0f32, 1., (b, c_in, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 0.3, (c_out, c_in, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., c_out, &dev).unwrap();
            let theirs = xs
                .conv2d(&wt, p, 1, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, (), 1, 1)).unwrap())
                .unwrap();
            let ours = conv2d_s1(&xs, &wt, Some(&bias), p).unwrap().unwrap();
            let mut results = vec![ours];
            // The packed-weight path, where this build has the dense kernel.
            if let Some(packed) = PackedConv2d::new(&wt).unwrap() {
                let b = bias.to_vec1::<f32>().unwrap();
                results.push(conv2d_s1_packed(&xs, &packed, Some(&b), p).unwrap());
            }
            assert_eq!(results.len(), 1 + crate::sgemm::KERNELS as usize);
            for ours in results {
                assert_eq!(ours.dims(), theirs.dims());
                let diff = (ours - &theirs).unwrap().abs().unwrap().max_all().unwrap();
                assert!(
                    diff.to_scalar::<f32>().unwrap() < 1e-4,
                    "{b} {c_in} {c_out} {h} {w} {k} {p}"
                );
            }
        }
        let xs = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let wt = Tensor::zeros((2, 3, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv2d_s1(&xs, &wt, None, 0).is_err());
        if let Some(packed) = PackedConv2d::new(&wt).unwrap() {
            assert!(conv2d_s1_packed(&xs, &packed, None, 0).is_err());
            assert!(conv2d_s1_packed(&xs, &packed, Some(&[0.0; 3]), 1).is_err());
        }
        assert!(
            conv2d_s1(&xs.to_dtype(candle_core::DType::F16).unwrap(), &wt, None, 1)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        let dev = Device::Cpu;
        let xs = Tensor::zeros((1, 4, 10), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((2, 3, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv1d(&xs, &w, None, 1, 1).is_err());
        let w = Tensor::zeros((2, 4, 11), candle_core::DType::F32, &dev).unwrap();
        let err = conv1d(&xs, &w, None, 1, 1).unwrap_err().to_string();
        assert!(err.contains("shorter than the kernel"), "{err}");
        let w = Tensor::zeros((2, 4, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(conv1d(&xs, &w, None, 0, 1).is_err());
        let bias = Tensor::zeros(5, candle_core::DType::F32, &dev).unwrap();
        assert!(conv1d(&xs, &w, Some(&bias), 1, 1).is_err());
    }
}
