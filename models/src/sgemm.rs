//! Our f32 matrix product for dense layers on the CPU: `x · Wᵀ + b` with the weight packed
//! once, at load time, into the layout the kernel reads ([`PackedRhs`]), used by [`Dense`].
//!
//! Why: candle's `Linear` hands `x · Wᵀ` to the `gemm` crate, which repacks the transposed
//! weight on every call (a strided gather: `perf` put that packing at 10 % of a real-size
//! EVA ViT-g forward) and then adds the bias in a second pass over the output. Here the
//! weight sits in 16-column panels (`panel[k][16]`, zero-padded past the last column) from
//! the start, the bias is the output's initial value, and the product is the usual blocked
//! scheme (BLIS): the input is packed in 6-row slivers per 256-deep block, and a 6 × 16
//! register tile (12 AVX accumulators) runs over each pair of slivers while the weight
//! panel sits in L1 and the input block in L2. The output columns are split over candle's
//! CPU pool (the threads every candle op uses, so no second pool competes for the cores).
//!
//! The AVX2/FMA kernel is compiled on x86-64 builds with those features (this repository's
//! baseline, `.cargo/config.toml`); CPUs with AVX-512F run a 24 × 16 tile instead (chosen at
//! run time, same additions in the same order: `tiles` below); elsewhere a portable kernel
//! keeps the module working, but [`Dense`] then keeps candle's own matmul, which has NEON
//! kernels. Results equal
//! candle's up to float summation order (tests below).

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};
use candle_nn::VarBuilder;

/// Rows of the register tile.
const MR: usize = 6;
/// Columns of the register tile (two AVX vectors) and of a weight panel.
const NR: usize = 16;
/// Largest depth of one block: a 16-column weight panel of this depth is 96 KiB and an
/// input sliver 36 KiB, both read from L2. Deep blocks mean few passes over the output:
/// with BLIS's usual 256 (panel in L1) a 514 × 1408 → 6144 layer ran at 110–125 GFLOP/s on
/// two Zen 3 cores, with 1408–1536 at 155–165 (`cargo bench --bench dense`).
const KC: usize = 1536;
/// Input rows packed per block: 48 × 1536 floats is 288 KiB (L2).
const MC: usize = 48;
/// Weight floats per chunk of a thread's panels (see [`PackedRhs::columns`]).
/// 1 MiB: in `cargo bench --bench dense`, ViT-g's fc1 (514 × 1408 → 6144) took 45 ms
/// unchunked and 40 ms with chunks of 1–4 MiB (8 MiB: 45 again), qkv 30 → 28.
const CHUNK_FLOATS: usize = 1 << 18;
/// Packed input floats per group of row blocks when the panels are chunked.
const GROUP_FLOATS: usize = 1 << 20;

/// Whether this build has the AVX2/FMA kernel (and [`Dense`] packs its weights).
pub const KERNELS: bool = cfg!(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
));

/// The weight `W` (`n × k`, row-major, as a linear layer stores it) of `x · Wᵀ`, in 16-column
/// panels: `data[(p · k + i) · 16 + j] = W[p · 16 + j][i]`, zero past column `n`.
pub struct PackedRhs {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl std::fmt::Debug for PackedRhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedRhs({} → {})", self.k, self.n)
    }
}

impl PackedRhs {
    /// Packs `w`, `n` rows of `k` values.
    pub fn from_rows(w: &[f32], n: usize, k: usize) -> candle_core::Result<Self> {
        if w.len() != n * k {
            candle_core::bail!("weight of {} values is not {n} × {k}", w.len());
        }
        Ok(Self::from_strided_rows(w, n, k, k))
    }

    /// Output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Depth (input columns).
    pub fn k(&self) -> usize {
        self.k
    }

    /// `out (m × n) = x (m × k, rows `lda` apart) · Wᵀ (+ bias)`, over candle's CPU pool.
    pub fn matmul(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        let (n, k) = (self.n, self.k);
        self.check_sizes(x, m, bias, out.len())?;
        if m == 0 || n == 0 {
            return Ok(());
        }
        if k == 0 {
            // An empty sum: the bias (or zeros) in every row.
            for row in out.chunks_exact_mut(n) {
                match bias {
                    Some(b) => row.copy_from_slice(b),
                    None => row.fill(0.0),
                }
            }
            return Ok(());
        }
        // SAFETY: `out` holds `m · n` floats (checked above).
        #[allow(unsafe_code)]
        unsafe {
            self.product(x, m, bias, out.as_mut_ptr(), Then::Nothing)
        };
        Ok(())
    }

    /// [`Self::matmul`] into a new vector that the kernel writes without its being zeroed
    /// first: every output is stored by the first depth block's tiles, so the `memset` a
    /// `vec![0.0; …]` costs (about 1 % of a SEED forward, on the calling thread alone while
    /// the pool's other threads wait) is not needed.
    pub fn matmul_new(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
    ) -> candle_core::Result<Vec<f32>> {
        self.matmul_new_then(x, m, bias, Then::Nothing)
    }

    /// [`Self::matmul_new`], then `then` applied to every output tile as soon as it is
    /// final (an error when an added residual is not `m × n`).
    pub fn matmul_new_then(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        then: Then<'_>,
    ) -> candle_core::Result<Vec<f32>> {
        let (n, k) = (self.n, self.k);
        if let Then::Add(residual) = then {
            if residual.len() != m * n {
                candle_core::bail!(
                    "a residual of {} values for {m} × {n} outputs",
                    residual.len()
                );
            }
        }
        if k == 0 || m == 0 || n == 0 {
            let mut out = vec![0f32; m * n];
            self.matmul(x, m, bias, &mut out)?;
            for (r, row) in out.chunks_exact_mut(n.max(1)).enumerate() {
                then.apply(row, r, 0, n);
            }
            return Ok(out);
        }
        self.check_sizes(x, m, bias, m * n)?;
        let mut out = Vec::<f32>::with_capacity(m * n);
        #[allow(unsafe_code)]
        // SAFETY: the capacity holds `m · n` floats; `product` stores every one of them
        // (depth `k > 0`: the first depth block's tiles set each output of every row block
        // and panel, later blocks add to values set before), so all are initialised when
        // the length is set.
        unsafe {
            self.product(x, m, bias, out.as_mut_ptr(), then);
            out.set_len(m * n);
        }
        Ok(out)
    }

    /// An error unless `x` is `m` rows of the layer's inputs, `out_len` is `m` rows of its
    /// outputs and `bias` (when given) has one value per output.
    fn check_sizes(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out_len: usize,
    ) -> candle_core::Result<()> {
        let (n, k) = (self.n, self.k);
        if x.len() != m * k || out_len != m * n || bias.is_some_and(|b| b.len() != n) {
            candle_core::bail!(
                "matmul of {} inputs and {out_len} outputs does not fit {m} rows of a {k} → {n} layer",
                x.len()
            );
        }
        Ok(())
    }

    /// The product of [`Self::matmul`] (sizes checked by the caller, `k > 0`) into `out`.
    ///
    /// # Safety
    /// `out` points at `m · n` writable floats that nothing else uses during the call; the
    /// first depth block writes each of them before any is read.
    #[allow(unsafe_code)]
    unsafe fn product(
        &self,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        out: *mut f32,
        then: Then<'_>,
    ) {
        let (n, k) = (self.n, self.k);
        let pool = candle_core::utils::barrier_pool();
        let threads = (pool.n_workers() + 1).min(n.div_ceil(NR)).max(1);
        let panels_per = n.div_ceil(NR).div_ceil(threads);
        let out_at = SendPtr(out);
        pool.execute(|tid| {
            let p0 = tid * panels_per;
            let p1 = ((tid + 1) * panels_per).min(n.div_ceil(NR));
            if p0 >= p1 {
                return;
            }
            let out_ptr = out_at.get();
            // SAFETY: thread `tid` writes only columns `p0·16 .. min(p1·16, n)` of `out`
            // (`m × n`, checked above), disjoint from every other thread's; `x`, `bias` and
            // the panels are only read and their sizes were checked above.
            #[allow(unsafe_code)]
            unsafe {
                self.columns((x, k), m, bias, (out_ptr, n), (p0, p1), then);
            }
        });
    }

    /// The product for weight panels `p0..p1` into `out` (rows `ldc` apart) from `x` (`m`
    /// rows of `k` values, `lda` apart).
    ///
    /// # Safety
    /// `out` points at `m` rows of at least `n` floats, `ldc` apart, of which no other thread
    /// touches columns `p0·16 .. min(p1·16, n)` during the call; `x` holds
    /// `(m − 1) · lda + k` values (`lda ≥ k`), `bias` `n`.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    unsafe fn columns(
        &self,
        (x, lda): (&[f32], usize),
        m: usize,
        bias: Option<&[f32]>,
        (out, ldc): (*mut f32, usize),
        (p0, p1): (usize, usize),
        then: Then<'_>,
    ) {
        let (n, k) = (self.n, self.k);
        // Equal blocks of at most KC: 1408 stays one block, 6144 is four of 1536.
        let kcb = k.div_ceil(k.div_ceil(KC));
        // Panels per chunk: this thread's weight panels in chunks that stay in the L3
        // cache while every row block passes over them (else each row block streams them
        // from memory again); the input rows of a chunked product are packed for many row
        // blocks at once, so that the repacking per chunk stays small.
        let chunk = (CHUNK_FLOATS / (NR * kcb)).max(1);
        let group = if p1 - p0 > chunk {
            (GROUP_FLOATS / kcb / MC).max(1) * MC
        } else {
            MC
        };
        PACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let need = group.min(m).div_ceil(MR) * MR * kcb;
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
            let ap = buf.as_mut_slice();
            for pc in (0..k).step_by(kcb) {
                let kc = (k - pc).min(kcb);
                let init = match pc {
                    0 => Init::Set,
                    _ => Init::Add,
                };
                for g0 in (0..m).step_by(group) {
                    let rows = (m - g0).min(group);
                    pack_rows(x, lda, g0, rows, pc, kc, ap);
                    for c0 in (p0..p1).step_by(chunk) {
                        for ic in (0..rows).step_by(MC) {
                            let mc = (rows - ic).min(MC);
                            let a = &ap[ic / MR * MR * kc..];
                            for p in c0..(c0 + chunk).min(p1) {
                                let j0 = p * NR;
                                let nr = (n - j0).min(NR);
                                let panel = &self.data[(p * k + pc) * NR..(p * k + pc + kc) * NR];
                                let bias = bias.map(|b| &b[j0..j0 + nr]);
                                // SAFETY: rows `g0+ic .. +mc` and columns `j0 .. j0+nr` lie
                                // in `out` and in this thread's columns (the caller's
                                // contract); `a` holds `⌈mc / 6⌉` packed slivers of `6 · kc`
                                // values, `6 · kc` apart.
                                unsafe {
                                    tiles(
                                        kc,
                                        (a, MR * kc),
                                        panel,
                                        (out.add((g0 + ic) * ldc + j0), ldc),
                                        (mc, nr),
                                        init,
                                        bias,
                                    );
                                }
                                if pc + kc == k {
                                    for r in g0 + ic..g0 + ic + mc {
                                        // SAFETY: as for the tile, which just stored them.
                                        let row = unsafe {
                                            std::slice::from_raw_parts_mut(
                                                out.add(r * ldc + j0),
                                                nr,
                                            )
                                        };
                                        then.apply(row, r, j0, ldc);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    /// Packs `V` (`k` rows of `n` values, rows `ld` apart) as the right-hand side of `P · V`
    /// (the transpose of [`PackedRhs::from_rows`]'s `W`).
    fn from_columns(v: &[f32], k: usize, n: usize, ld: usize) -> Self {
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (p, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            let (j0, nr) = (p * NR, NR.min(n - p * NR));
            for (i, dst) in panel.chunks_exact_mut(NR).enumerate() {
                dst[..nr].copy_from_slice(&v[i * ld + j0..i * ld + j0 + nr]);
            }
        }
        Self { k, n, data }
    }

    /// Packs `W` (`n` rows of `k` values, rows `ld` apart) for `x · Wᵀ`.
    fn from_strided_rows(w: &[f32], n: usize, k: usize, ld: usize) -> Self {
        Self {
            k,
            n,
            data: interleave_rows(w, n, k, ld, NR),
        }
    }
}

/// The left-hand matrix `W` (`m × k`, row-major) of `W · X`, packed once in 6-row slivers
/// over the whole depth: `data[(s · k + i) · 6 + r] = W[s · 6 + r][i]`, zero past row `m`.
/// For convolutions, whose weights are the constant left operand ([`crate::cpu_conv`]).
pub struct PackedLhs {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedLhs {
    /// Packs `w`, `m` rows of `k` values.
    pub fn from_rows(w: &[f32], m: usize, k: usize) -> candle_core::Result<Self> {
        if w.len() != m * k {
            candle_core::bail!("weight of {} values is not {m} × {k}", w.len());
        }
        Ok(Self {
            m,
            k,
            data: interleave_rows(w, m, k, k, MR),
        })
    }

    /// Rows (output channels).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Depth.
    pub fn k(&self) -> usize {
        self.k
    }

    /// `out (m × n, rows `ldc` apart) += W · X` on this thread, where `fill(i0, rows, j0,
    /// cols, panel)` writes rows `i0 .. i0+rows` (depth) and columns `j0 .. j0+cols` of `X`
    /// into `panel[i · 16 + j]` (`cols ≤ 16`; the rest of the panel is zero already).
    ///
    /// # Safety
    /// `out` points at `m` rows of at least `n` floats, `ldc` apart, that no other thread
    /// touches during the call.
    #[allow(unsafe_code)]
    pub unsafe fn add_product(
        &self,
        n: usize,
        fill: impl Fn(usize, usize, usize, usize, &mut [f32]),
        out: *mut f32,
        ldc: usize,
    ) {
        if self.m == 0 || n == 0 || self.k == 0 {
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.filled_product(n, fill, (out, ldc), Init::Add, None) }
    }

    /// `out ← W · X + bias` (`bias[r]` added to row `r`, when given), `X` filled as for
    /// [`Self::add_product`]. The first depth block's tiles store their sums without reading
    /// `out` (nothing in it is read: it may hold anything), the bias is added to each tile
    /// while it is in L1, later blocks add on: every output is `(Σ₁ + bias) + Σ₂ …`, the
    /// same values and roundings as `add_product` onto an output holding the bias, without
    /// the pass that writes the bias first or the kernel's loads of it (a long audio
    /// signal's convolution output is tens of MB).
    ///
    /// # Safety
    /// As [`Self::add_product`]; `bias` (when given) holds `m` values.
    #[allow(unsafe_code)]
    pub unsafe fn set_product(
        &self,
        n: usize,
        fill: impl Fn(usize, usize, usize, usize, &mut [f32]),
        out: *mut f32,
        ldc: usize,
        bias: Option<&[f32]>,
    ) {
        let (m, k) = (self.m, self.k);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            for r in 0..m {
                let v = bias.and_then(|b| b.get(r)).copied().unwrap_or(0.0);
                // SAFETY: row `r < m` has `n` writable floats (the contract).
                unsafe { std::slice::from_raw_parts_mut(out.add(r * ldc), n) }.fill(v);
            }
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.filled_product(n, fill, (out, ldc), Init::Set, bias) }
    }

    /// The product over `n` columns filled by `fill` (as [`Self::add_product`]), depth
    /// block by depth block: the first one stored with `first` (and `bias[r]` added to row
    /// `r` when given), every later one added.
    ///
    /// # Safety
    /// As [`Self::add_product`]; `k > 0`; `bias` (when given) holds `m` values.
    #[allow(unsafe_code)]
    unsafe fn filled_product(
        &self,
        n: usize,
        fill: impl Fn(usize, usize, usize, usize, &mut [f32]),
        (out, ldc): (*mut f32, usize),
        first: Init,
        bias: Option<&[f32]>,
    ) {
        let k = self.k;
        let kcb = k.div_ceil(k.div_ceil(KC));
        let panels = n.div_ceil(NR);
        PACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            if buf.len() < panels * NR * kcb {
                buf.resize(panels * NR * kcb, 0.0);
            }
            for pc in (0..k).step_by(kcb) {
                let kc = (k - pc).min(kcb);
                let bp = &mut buf[..panels * NR * kc];
                for (p, panel) in bp.chunks_exact_mut(NR * kc).enumerate() {
                    let cols = NR.min(n - p * NR);
                    if cols < NR {
                        panel.fill(0.0);
                    }
                    fill(pc, kc, p * NR, cols, panel);
                }
                let bp = &bp[..];
                let (init, row_bias) = match pc {
                    0 => (first, bias),
                    _ => (Init::Add, None),
                };
                // SAFETY: the caller's contract.
                unsafe {
                    self.block(
                        n,
                        (pc, kc),
                        |p| &bp[p * NR * kc..][..NR * kc],
                        (out, ldc),
                        init,
                        row_bias,
                    )
                };
            }
        });
    }

    /// `out ← W · X` where `X` (`k × n`) is given already in 16-column panels over the whole
    /// depth: `panels[(p · k + i) · 16 + j] = X[i][p · 16 + j]` (columns past `n` are read
    /// but their products are not stored).
    ///
    /// # Safety
    /// As [`Self::add_product`]; `panels` holds `⌈n / 16⌉ · 16 · k` values.
    #[allow(unsafe_code)]
    pub unsafe fn set_product_panels(&self, n: usize, panels: &[f32], out: *mut f32, ldc: usize) {
        let k = self.k;
        if self.m == 0 || n == 0 || k == 0 || panels.len() < n.div_ceil(NR) * NR * k {
            return;
        }
        let kcb = k.div_ceil(k.div_ceil(KC));
        for pc in (0..k).step_by(kcb) {
            let kc = (k - pc).min(kcb);
            let init = if pc == 0 { Init::Set } else { Init::Add };
            let panel = |p: usize| &panels[(p * k + pc) * NR..(p * k + pc + kc) * NR];
            // SAFETY: the caller's contract.
            unsafe { self.block(n, (pc, kc), panel, (out, ldc), init, None) };
        }
    }

    /// One depth block `pc .. pc+kc` of the product over all rows and the `n` columns, the
    /// 16-column panels of `X` for that block given by `panel(p)` (`kc · 16` values); then
    /// `bias[r]` added to every stored value of row `r` (when given), tile by tile.
    ///
    /// # Safety
    /// As [`Self::add_product`]; `bias` (when given) holds `m` values.
    #[allow(unsafe_code)]
    unsafe fn block<'a>(
        &self,
        n: usize,
        (pc, kc): (usize, usize),
        panel: impl Fn(usize) -> &'a [f32],
        (out, ldc): (*mut f32, usize),
        init: Init,
        bias: Option<&[f32]>,
    ) {
        let (m, k) = (self.m, self.k);
        for ic in (0..m).step_by(MC) {
            let mc = (m - ic).min(MC);
            // Slivers `ic / 6 ..` from depth `pc`, `6 · k` values apart.
            let slivers = &self.data[(ic / MR * k + pc) * MR..];
            for p in 0..n.div_ceil(NR) {
                let (panel, nr) = (panel(p), NR.min(n - p * NR));
                // The output rows four panels ahead, fetched for writing: a convolution's
                // `m` rows are one signal length apart, too many streams for the hardware
                // prefetcher (`cargo bench --bench conv1d`: the 1 × 1 shape 28.8 → 27.2 ms).
                #[cfg(target_arch = "x86_64")]
                for r in 0..mc {
                    let at = out.wrapping_add((ic + r) * ldc + p * NR + 4 * NR);
                    // SAFETY: a prefetch hint does not access memory (no fault on any address).
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>(
                            at.cast(),
                        )
                    };
                }
                // SAFETY: rows `ic .. ic+mc`, columns `p·16 .. +nr` lie in `out` (the
                // caller's contract); sliver `t` of the block starts at `t · 6 · k` in
                // `slivers` and holds `6 · kc` values from there (`pc + kc ≤ k`).
                unsafe {
                    tiles(
                        kc,
                        (slivers, MR * k),
                        panel,
                        (out.add(ic * ldc + p * NR), ldc),
                        (mc, nr),
                        init,
                        None,
                    );
                }
                if let Some(bias) = bias.and_then(|b| b.get(ic..ic + mc)) {
                    for (r, &b) in bias.iter().enumerate() {
                        // SAFETY: row `ic + r < m`, columns `p·16 .. +nr` lie in `out` (the
                        // caller's contract) and were just written by this thread.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(out.add((ic + r) * ldc + p * NR), nr)
                        };
                        for v in row {
                            *v += b;
                        }
                    }
                }
            }
        }
    }

    /// The packed values (`data[(s · k + i) · 6 + r] = W[s · 6 + r][i]`).
    pub(crate) fn slivers(&self) -> &[f32] {
        &self.data
    }

    /// A packed `m × k` matrix from values already in the packed layout ([`Self::slivers`]).
    pub(crate) fn from_slivers(m: usize, k: usize, data: Vec<f32>) -> candle_core::Result<Self> {
        if data.len() != m.div_ceil(MR) * MR * k {
            candle_core::bail!(
                "{} packed values are not {m} × {k} in 6-row slivers",
                data.len()
            );
        }
        Ok(Self { m, k, data })
    }
}

/// Rows of a [`PackedLhs`] sliver.
pub(crate) const SLIVER_ROWS: usize = MR;

/// Rows of queries per task of [`attention`]: their scores against 9216 keys (the unCLIP
/// UNet's 96 × 96 latents) are 3.5 MiB.
const QUERY_ROWS: usize = 96;

/// `softmax(scale · q kᵀ) v` for every head: `q` is `b` × `n` rows of `heads · d` values,
/// `k` and `v` `b` × `m` rows of `heads · d`, each given as its first value and the
/// distance between rows (so `q`, `k` and `v` may be column ranges of one fused `qkv`
/// output); the result is `b × n` contiguous rows of `heads · d`.
///
/// The work is `b · heads · blocks` tasks (a block: up to 96 query rows of one head), dealt
/// out to the pool's threads as equal consecutive ranges in one call: each thread packs `k`
/// and `v` of a head when its range reaches it, computes each block's scores with the dense
/// kernel, takes their exponentials in place (shifted by the row's maximum;
/// [`crate::activation::exp_avx2`]), multiplies with `v` and divides each output row by its
/// sum of exponentials (`d` divisions per row instead of `m`), while the scores sit in
/// cache. (It was one pool call per head, packing on the calling thread while the others
/// waited, with 257 rows as blocks of 96 + 96 + 65 dealt to two threads: one of them idle a
/// third of the time.)
pub fn attention(
    (q, ldq): (&[f32], usize),
    (k, ldk): (&[f32], usize),
    (v, ldv): (&[f32], usize),
    (b, n, m): (usize, usize, usize),
    (heads, d): (usize, usize),
    scale: f32,
) -> candle_core::Result<Vec<f32>> {
    let inner = heads * d;
    let fits = |x: &[f32], ld: usize, rows: usize| {
        ld >= inner && (rows == 0 || x.len() >= (rows - 1) * ld + inner)
    };
    if !fits(q, ldq, b * n) || !fits(k, ldk, b * m) || !fits(v, ldv, b * m) {
        candle_core::bail!("attention inputs do not fit {b} × ({n} | {m}) rows of {heads} × {d}");
    }
    if b * n * inner == 0 || m == 0 {
        return Ok(vec![0f32; b * n * inner]);
    }
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    let blocks = n.div_ceil(QUERY_ROWS);
    // Equal blocks: 257 rows are 86 + 86 + 85.
    let block_rows = n.div_ceil(blocks);
    let tasks = b * heads * blocks;
    let mut out = Vec::<f32>::with_capacity(b * n * inner);
    let out_at = SendPtr(out.as_mut_ptr());
    pool.execute(|tid| {
        let (t0, t1) = (tid * tasks / threads, (tid + 1) * tasks / threads);
        let out_ptr = out_at.get();
        let mut scores = vec![0f32; block_rows * m];
        let mut sums = vec![0f32; block_rows];
        let mut packed: Option<(usize, PackedRhs, PackedRhs)> = None;
        for task in t0..t1 {
            let (pair, blk) = (task / blocks, task % blocks);
            let (bi, h) = (pair / heads, pair % heads);
            let (kp, vp) = match &packed {
                Some((at, kp, vp)) if *at == pair => (kp, vp),
                _ => {
                    let (kv, vv) = (bi * m * ldk + h * d, bi * m * ldv + h * d);
                    let kp = PackedRhs::from_strided_rows(&k[kv..], m, d, ldk);
                    let vp = PackedRhs::from_columns(&v[vv..], m, d, ldv);
                    let (_, kp, vp) = packed.insert((pair, kp, vp));
                    (&*kp, &*vp)
                }
            };
            let r0 = blk * block_rows;
            let rows = block_rows.min(n - r0);
            let qa = (bi * n + r0) * ldq + h * d;
            let at = (bi * n + r0) * inner + h * d;
            // SAFETY: `scores` holds `rows × m`; the output rows `r0 .. r0+rows` of this
            // batch entry, columns `h·d .. (h+1)·d` (read back for the division as `d`
            // floats from row starts `at + r·inner`), belong to this task alone (tasks are
            // dealt out to threads once) and are stored by `vp.columns` before they are
            // read; `q`'s rows start at `qa`, `ldq` apart, with `d` values each (checked).
            #[allow(unsafe_code)]
            unsafe {
                kp.columns(
                    (&q[qa..], ldq),
                    rows,
                    None,
                    (scores.as_mut_ptr(), m),
                    (0, m.div_ceil(NR)),
                    Then::Nothing,
                );
                for (row, sum) in scores.chunks_exact_mut(m).zip(&mut sums).take(rows) {
                    *sum = softmax_unnormalized(row, scale);
                }
                vp.columns(
                    (&scores, m),
                    rows,
                    None,
                    (out_ptr.add(at), inner),
                    (0, d.div_ceil(NR)),
                    Then::Nothing,
                );
                for (r, &sum) in sums.iter().enumerate().take(rows) {
                    let row = std::slice::from_raw_parts_mut(out_ptr.add(at + r * inner), d);
                    let inv = 1.0 / sum;
                    for x in row {
                        *x *= inv;
                    }
                }
            }
        }
    });
    // SAFETY: the tasks cover every batch entry, head and query row: each output row's
    // `heads · d` values were stored above (`m > 0`: the first depth block sets them).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(b * n * inner)
    };
    Ok(out)
}

/// [`attention`] on `qkv (b × n × 3·heads·d)`, the fused projection's output (`q`, `k`,
/// `v` side by side in each row), read in place; `None` as for [`attention_tensors`].
pub fn attention_fused_qkv(
    qkv: &Tensor,
    heads: usize,
    scale: f64,
) -> candle_core::Result<Option<Tensor>> {
    if !fused_attention_runs_on(qkv) {
        return Ok(None);
    }
    let (b, n, width3) = qkv.dims3()?;
    if heads == 0 || width3 % (3 * heads) != 0 {
        candle_core::bail!("fused qkv of {:?} with {heads} heads", qkv.dims());
    }
    let inner = width3 / 3;
    let qkv = qkv.contiguous()?;
    let (st, l) = qkv.storage_and_layout();
    let all = cpu_slice(&st, l)?;
    let out = attention(
        (all, width3),
        (all.get(inner..).unwrap_or_default(), width3),
        (all.get(2 * inner..).unwrap_or_default(), width3),
        (b, n, n),
        (heads, inner / heads),
        scale as f32,
    )?;
    Ok(Some(Tensor::from_vec(out, (b, n, inner), &Device::Cpu)?))
}

/// [`attention`] on tensors `q (b × n × heads·d)`, `k`, `v (b × m × heads·d)`, all f32 on
/// the CPU; `None` (nothing computed) for any other device or dtype, or without the kernel.
pub fn attention_tensors(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f64,
) -> candle_core::Result<Option<Tensor>> {
    if ![q, k, v].into_iter().all(fused_attention_runs_on) {
        return Ok(None);
    }
    let (b, n, inner) = q.dims3()?;
    let (bk, m, inner_k) = k.dims3()?;
    if bk != b || inner_k != inner || v.dims() != k.dims() || heads == 0 || inner % heads != 0 {
        candle_core::bail!(
            "attention of q {:?}, k {:?}, v {:?} with {heads} heads",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let out = attention(
        (cpu_slice(&qs, ql)?, inner),
        (cpu_slice(&ks, kl)?, inner),
        (cpu_slice(&vs, vl)?, inner),
        (b, n, m),
        (heads, inner / heads),
        scale as f32,
    )?;
    Ok(Some(Tensor::from_vec(out, (b, n, inner), &Device::Cpu)?))
}

/// Whether [`attention_tensors`] computes for this tensor (f32 on the CPU, kernel built).
pub fn fused_attention_runs_on(t: &Tensor) -> bool {
    KERNELS && matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// The values of a contiguous f32 CPU tensor's storage.
fn cpu_slice<'a>(s: &'a candle_core::Storage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (candle_core::Storage::Cpu(CpuStorage::F32(d)), Some((a, e))) => Ok(&d[a..e]),
        _ => candle_core::bail!("contiguous f32 CPU tensor expected"),
    }
}

/// `row ← exp(scale · row - max)`, returning the sum of the new values (dividing by it is
/// left to the caller: [`attention`] scales its `d` outputs per row instead of the `m`
/// weights). Written as 8-lane reductions so the compiler vectorizes them (a plain `sum +=`
/// loop stays scalar).
fn softmax_unnormalized(row: &mut [f32], scale: f32) -> f32 {
    const L: usize = 8;
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = row.chunks_exact(L);
    for c in &mut chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    let shift = -max * scale;
    let mut lanes = [0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    // SAFETY: unaligned loads and stores of whole 8-float chunks; the CPU has AVX2/FMA (the
    // build's target features).
    #[allow(unsafe_code)]
    unsafe {
        use std::arch::x86_64::*;
        let (scale, shift) = (_mm256_set1_ps(scale), _mm256_set1_ps(shift));
        let mut acc = _mm256_setzero_ps();
        for c in &mut chunks {
            let x = _mm256_loadu_ps(c.as_ptr());
            let e = crate::activation::exp_avx2(_mm256_fmadd_ps(x, scale, shift));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            acc = _mm256_add_ps(acc, e);
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    }
    for c in &mut chunks {
        for (s, x) in lanes.iter_mut().zip(c) {
            *x = crate::activation::exp_value(x.mul_add(scale, shift));
            *s += *x;
        }
    }
    let mut sum: f32 = 0.0;
    for x in chunks.into_remainder() {
        *x = crate::activation::exp_value(x.mul_add(scale, shift));
        sum += *x;
    }
    sum + lanes.iter().sum::<f32>()
}

/// `rows` rows of `k` values (`ld` apart) in groups of `group` rows, each group stored
/// value-major: `out[(g · k + i) · group + r] = w[(g · group + r) · ld + i]`, zero past the
/// last row (the layout of both packed operands).
fn interleave_rows(w: &[f32], rows: usize, k: usize, ld: usize, group: usize) -> Vec<f32> {
    let mut data = vec![0f32; rows.div_ceil(group.max(1)) * group * k];
    if data.is_empty() {
        // No depth (a layer with no inputs): nothing to pack.
        return data;
    }
    for (g, block) in data.chunks_exact_mut(group * k).enumerate() {
        for r in 0..group.min(rows - g * group) {
            let row = &w[(g * group + r) * ld..(g * group + r) * ld + k];
            for (i, &v) in row.iter().enumerate() {
                block[i * group + r] = v;
            }
        }
    }
    data
}

thread_local! {
    /// Each thread's packed input block, reused across calls.
    static PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A raw output pointer shared by the pool's threads, each writing its own columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the threads sharing it write disjoint elements (see `PackedRhs::matmul`).
#[allow(unsafe_code)]
unsafe impl Send for SendPtr {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// How a tile's first block treats the output.
#[derive(Clone, Copy, PartialEq)]
enum Init {
    /// Overwrite (with the bias added when there is one).
    Set,
    /// Add to what is there.
    Add,
}

/// What a product does to each output once its last depth block is stored, while the tile
/// is in L1 (instead of another pass over the whole output, which a 514 × 6144 GELU input
/// no longer finds in any cache).
#[derive(Clone, Copy, Debug)]
pub enum Then<'a> {
    /// Nothing: the product (and bias) as it is.
    Nothing,
    /// The exact GELU ([`crate::activation::gelu_erf_value`]) of every output, the same
    /// values as [`crate::activation::gelu_erf`] over the finished output.
    Gelu,
    /// `residual + output`, `residual` laid out as the output (`m` rows of `n`): the same
    /// values as adding the finished output to it (one rounded addition either way).
    Add(&'a [f32]),
}

impl Then<'_> {
    /// Applies this to `values`, the outputs of row `r` from column `j0` (a residual's rows
    /// `ld` apart).
    #[inline]
    fn apply(self, values: &mut [f32], r: usize, j0: usize, ld: usize) {
        match self {
            Then::Nothing => {}
            Then::Gelu => {
                for v in values {
                    *v = crate::activation::gelu_erf_value(*v);
                }
            }
            Then::Add(residual) => {
                let from = r * ld + j0;
                if let Some(res) = residual.get(from..from + values.len()) {
                    for (v, &x) in values.iter_mut().zip(res) {
                        *v += x;
                    }
                }
            }
        }
    }
}

/// Packs rows `r0 .. r0+mc`, columns `c0 .. c0+kc` of `x` (rows `lda` apart) into 6-row
/// slivers, `ap[s · 6 · kc + i · 6 + r]`, zero past the last row.
fn pack_rows(x: &[f32], lda: usize, r0: usize, mc: usize, c0: usize, kc: usize, ap: &mut [f32]) {
    for (s, sliver) in ap[..mc.div_ceil(MR) * MR * kc]
        .chunks_exact_mut(MR * kc)
        .enumerate()
    {
        if (s + 1) * MR <= mc {
            // A whole sliver: read the 6 rows side by side, write each 6-value group once.
            let at = |r: usize| (r0 + s * MR + r) * lda + c0;
            let rows: [&[f32]; MR] = std::array::from_fn(|r| &x[at(r)..at(r) + kc]);
            for (i, group) in sliver.chunks_exact_mut(MR).enumerate() {
                for (g, row) in group.iter_mut().zip(&rows) {
                    *g = row[i];
                }
            }
            continue;
        }
        for r in 0..MR {
            let row = s * MR + r;
            if row < mc {
                let src = &x[(r0 + row) * lda + c0..(r0 + row) * lda + c0 + kc];
                for (i, &v) in src.iter().enumerate() {
                    sliver[i * MR + r] = v;
                }
            } else {
                for i in 0..kc {
                    sliver[i * MR + r] = 0.0;
                }
            }
        }
    }
}

/// The `mc × nr` output block (`nr ≤ 16`) of the `⌈mc / 6⌉` packed slivers `a[t · stride ..]`
/// (`6 · kc` values each) with one `kc`-deep panel `b`: four slivers (24 rows) at a time
/// with the AVX-512 kernel where the CPU has it, else one 6-row [`tile`] at a time. Both
/// compute every output as the same sequence of fused multiply-adds, so their results are
/// bit-equal.
///
/// # Safety
/// `out` points at the block's first element of a row-major matrix with rows `ldc` apart,
/// and the `mc` rows of `nr` columns from there are writable; `a` holds
/// `(⌈mc / 6⌉ − 1) · stride + 6 · kc` values, `b` `16 · kc`, `bias` (when given) `nr`.
#[allow(unsafe_code)]
#[inline]
unsafe fn tiles(
    kc: usize,
    (a, stride): (&[f32], usize),
    b: &[f32],
    (out, ldc): (*mut f32, usize),
    (mc, nr): (usize, usize),
    init: Init,
    bias: Option<&[f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() && b.len() >= NR * kc {
        let mut ir = 0;
        while ir < mc {
            let rows = (mc - ir).min(avx512::SLIVERS * MR);
            let a = &a[ir / MR * stride..];
            let (add, bias) = (init == Init::Add, bias.filter(|_| init == Init::Set));
            // SAFETY: the kernel's contract is this function's, for the slivers and rows
            // from `ir`; the CPU has AVX-512F (checked).
            unsafe {
                let out = out.add(ir * ldc);
                match rows.div_ceil(MR) {
                    4 => avx512::tile::<4>(kc, (a, stride), b, (out, ldc), (rows, nr), add, bias),
                    3 => avx512::tile::<3>(kc, (a, stride), b, (out, ldc), (rows, nr), add, bias),
                    2 => avx512::tile::<2>(kc, (a, stride), b, (out, ldc), (rows, nr), add, bias),
                    _ => avx512::tile::<1>(kc, (a, stride), b, (out, ldc), (rows, nr), add, bias),
                }
            }
            ir += rows;
        }
        return;
    }
    for ir in (0..mc).step_by(MR) {
        // SAFETY: the caller's contract, for the sliver and rows from `ir`.
        unsafe {
            tile(
                kc,
                &a[ir / MR * stride..],
                b,
                out.add(ir * ldc),
                ldc,
                ((mc - ir).min(MR), nr),
                init,
                bias,
            );
        }
    }
}

/// One `mr × nr` output tile (at most 6 × 16) from a packed sliver and a weight panel.
///
/// # Safety
/// `out` points at the tile's first element of a row-major matrix with rows `ldc` apart,
/// and the `mr` rows of `nr` columns from there are writable.
#[allow(unsafe_code, clippy::too_many_arguments)]
#[inline]
unsafe fn tile(
    kc: usize,
    a: &[f32],
    b: &[f32],
    out: *mut f32,
    ldc: usize,
    (mr, nr): (usize, usize),
    init: Init,
    bias: Option<&[f32]>,
) {
    let mut acc = [[0f32; NR]; MR];
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))]
    {
        if mr == MR && nr == NR && a.len() >= MR * kc && b.len() >= NR * kc {
            // A whole tile: written back from the registers (the same additions as below).
            // SAFETY: the slices hold 6·kc and 16·kc floats (checked), the tile's 6 rows of
            // 16 floats are writable (the contract), `bias` has `nr` = 16 values when given.
            unsafe { avx2::tile_full(kc, a, b, out, ldc, init == Init::Add, bias) };
            return;
        }
        // SAFETY: `a` holds 6·kc and `b` 16·kc floats (slices), the features are compiled in.
        unsafe { avx2::product(kc, a, b, &mut acc) };
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )))]
    portable_product(kc, a, b, &mut acc);
    for (r, row) in acc.iter().enumerate().take(mr) {
        // SAFETY: row `r < mr` and columns `< nr` of the tile are writable (the contract).
        let dst = unsafe { std::slice::from_raw_parts_mut(out.add(r * ldc), nr) };
        match init {
            Init::Set => match bias {
                Some(b) => {
                    for ((d, &v), &b) in dst.iter_mut().zip(row).zip(b) {
                        *d = v + b;
                    }
                }
                None => dst.copy_from_slice(&row[..nr]),
            },
            Init::Add => {
                for (d, &v) in dst.iter_mut().zip(row) {
                    *d += v;
                }
            }
        }
    }
}

/// The tile product in plain Rust (what the AVX2 kernel computes, same summation order).
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ),
    allow(dead_code)
)]
fn portable_product(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (row, &x) in acc.iter_mut().zip(av) {
            for (c, &y) in row.iter_mut().zip(bv) {
                *c = x.mul_add(y, *c);
            }
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
#[allow(unsafe_code)]
mod avx2 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    /// A whole 6 × 16 tile: the product of [`product`], then per row either `out = acc + bias`
    /// (or `acc`) or `out = out + acc` (`add`), straight from the registers.
    ///
    /// # Safety
    /// As [`product`]; `out` points at 6 writable rows of 16 floats, `ldc` apart; `bias`, when
    /// given, holds at least 16 values.
    #[inline]
    pub unsafe fn tile_full(
        kc: usize,
        a: &[f32],
        b: &[f32],
        out: *mut f32,
        ldc: usize,
        add: bool,
        bias: Option<&[f32]>,
    ) {
        // SAFETY: the contract; loads and stores stay in row r's 16 floats at out + r·ldc.
        unsafe {
            let rows = registers(kc, a, b);
            for (r, (lo, hi)) in rows.into_iter().enumerate() {
                let dst = out.add(r * ldc);
                let (lo, hi) = if add {
                    (
                        _mm256_add_ps(_mm256_loadu_ps(dst), lo),
                        _mm256_add_ps(_mm256_loadu_ps(dst.add(8)), hi),
                    )
                } else if let Some(bias) = bias {
                    (
                        _mm256_add_ps(lo, _mm256_loadu_ps(bias.as_ptr())),
                        _mm256_add_ps(hi, _mm256_loadu_ps(bias.as_ptr().add(8))),
                    )
                } else {
                    (lo, hi)
                };
                _mm256_storeu_ps(dst, lo);
                _mm256_storeu_ps(dst.add(8), hi);
            }
        }
    }

    /// `acc[r][j] = Σ_i a[i·6 + r] · b[i·16 + j]` for `i < kc`, 12 accumulators in registers.
    ///
    /// # Safety
    /// `a` holds at least `6 · kc` and `b` at least `16 · kc` floats.
    #[inline]
    pub unsafe fn product(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
        // SAFETY: the contract; stores go to `acc`, 6 rows of 16 floats.
        unsafe {
            let rows = registers(kc, a, b);
            for (dst, (lo, hi)) in acc.iter_mut().zip(rows) {
                _mm256_storeu_ps(dst.as_mut_ptr(), lo);
                _mm256_storeu_ps(dst.as_mut_ptr().add(8), hi);
            }
        }
    }

    /// The 6 × 16 product as six pairs of registers (row r: columns 0–7, 8–15).
    ///
    /// # Safety
    /// `a` holds at least `6 · kc` and `b` at least `16 · kc` floats.
    #[inline(always)]
    unsafe fn registers(kc: usize, a: &[f32], b: &[f32]) -> [(__m256, __m256); MR] {
        debug_assert!(a.len() >= MR * kc && b.len() >= NR * kc);
        // SAFETY: every load below is within `a[..6·kc]` / `b[..16·kc]` (the contract).
        unsafe {
            let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
            let z = _mm256_setzero_ps();
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(pb);
                let b1 = _mm256_loadu_ps(pb.add(8));
                let x = _mm256_broadcast_ss(&*pa);
                c00 = _mm256_fmadd_ps(x, b0, c00);
                c01 = _mm256_fmadd_ps(x, b1, c01);
                let x = _mm256_broadcast_ss(&*pa.add(1));
                c10 = _mm256_fmadd_ps(x, b0, c10);
                c11 = _mm256_fmadd_ps(x, b1, c11);
                let x = _mm256_broadcast_ss(&*pa.add(2));
                c20 = _mm256_fmadd_ps(x, b0, c20);
                c21 = _mm256_fmadd_ps(x, b1, c21);
                let x = _mm256_broadcast_ss(&*pa.add(3));
                c30 = _mm256_fmadd_ps(x, b0, c30);
                c31 = _mm256_fmadd_ps(x, b1, c31);
                let x = _mm256_broadcast_ss(&*pa.add(4));
                c40 = _mm256_fmadd_ps(x, b0, c40);
                c41 = _mm256_fmadd_ps(x, b1, c41);
                let x = _mm256_broadcast_ss(&*pa.add(5));
                c50 = _mm256_fmadd_ps(x, b0, c50);
                c51 = _mm256_fmadd_ps(x, b1, c51);
                pa = pa.add(MR);
                pb = pb.add(NR);
            }
            [
                (c00, c01),
                (c10, c11),
                (c20, c21),
                (c30, c31),
                (c40, c41),
                (c50, c51),
            ]
        }
    }
}

/// Set by [`keep_avx2_tile`].
static KEEP_AVX2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps the AVX2 tile even where the CPU has AVX-512 (`true`), or lets the wider tile run
/// again: for comparing the two in benchmarks (`mio` and `cargo bench --bench dense` set it
/// from `MIO_NO_AVX512`); results are bit-equal either way.
pub fn keep_avx2_tile(keep: bool) {
    KEEP_AVX2.store(keep, std::sync::atomic::Ordering::Relaxed);
}

/// The AVX-512 tile: up to four 6-row slivers against one 16-column panel, 24 accumulators
/// of 16 floats. On Zen 4 a 512-bit FMA does the work of two 256-bit ones, so the gain is
/// not in arithmetic but in everything around it: one panel load feeds 24 FMAs (the AVX2
/// tile: 2 loads per 12), the panel is read from cache a quarter as often, and a quarter
/// of the instructions are issued. Chosen at run time (this repository's baseline is
/// x86-64-v3); [`keep_avx2_tile`] turns it off (for comparing the two in benchmarks).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    use super::{MR, NR};
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    /// Slivers per tile.
    pub const SLIVERS: usize = 4;

    /// Whether this CPU runs the AVX-512 tile (and [`super::keep_avx2_tile`] did not turn it
    /// off).
    pub fn available() -> bool {
        static DETECTED: OnceLock<bool> = OnceLock::new();
        !super::KEEP_AVX2.load(std::sync::atomic::Ordering::Relaxed)
            && *DETECTED.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }

    /// `S` slivers (`a[t · stride ..]`, `6 · kc` values each) times the panel `b`
    /// (`16 · kc` values) into the first `rows` rows and `nr` columns of `out`: `out = acc`
    /// (`+ bias`) or, with `add`, `out = out + acc`; each `acc` summed in depth order by
    /// FMAs from zero, as the AVX2 tile does.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `a` holds `(S − 1) · stride + 6 · kc` values and `b` `16 · kc`;
    /// `out` points at `rows ≤ 6 · S` writable rows of `nr ≤ 16` floats, `ldc` apart;
    /// `bias`, when given, holds `nr` values.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile<const S: usize>(
        kc: usize,
        (a, stride): (&[f32], usize),
        b: &[f32],
        (out, ldc): (*mut f32, usize),
        (rows, nr): (usize, usize),
        add: bool,
        bias: Option<&[f32]>,
    ) {
        debug_assert!(a.len() >= (S - 1) * stride + MR * kc && b.len() >= NR * kc);
        // SAFETY: every load below is within `a` / `b` / `bias` and every store within the
        // `rows × nr` block at `out` (the contract); masked loads and stores touch only the
        // first `nr` lanes.
        unsafe {
            let pa: [*const f32; S] = std::array::from_fn(|t| a.as_ptr().add(t * stride));
            let pb = b.as_ptr();
            let mut acc = [[_mm512_setzero_ps(); MR]; S];
            for i in 0..kc {
                let bv = _mm512_loadu_ps(pb.add(i * NR));
                for (acc, pa) in acc.iter_mut().zip(&pa) {
                    let x = pa.add(i * MR);
                    for (r, c) in acc.iter_mut().enumerate() {
                        *c = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(r)), bv, *c);
                    }
                }
            }
            let mask: __mmask16 = if nr >= NR { !0 } else { (1u16 << nr) - 1 };
            let bias = bias.map(|b| _mm512_maskz_loadu_ps(mask, b.as_ptr()));
            // Constant indices only (no early exit): the loops unroll and `acc` stays in
            // registers; a data-dependent walk over it made LLVM keep it in memory and
            // store every accumulator on every step of the depth loop.
            #[allow(clippy::needless_range_loop)]
            for t in 0..S {
                for r in 0..MR {
                    let row = t * MR + r;
                    if row < rows {
                        let (c, dst) = (acc[t][r], out.add(row * ldc));
                        let v = if add {
                            _mm512_add_ps(_mm512_maskz_loadu_ps(mask, dst), c)
                        } else if let Some(bias) = bias {
                            _mm512_add_ps(c, bias)
                        } else {
                            c
                        };
                        _mm512_mask_storeu_ps(dst, mask, v);
                    }
                }
            }
        }
    }
}

/// A linear layer (`x · Wᵀ + b`) that runs on [`PackedRhs`] for f32 on the CPU when this
/// build has the kernel, and as candle's `Linear` otherwise (other devices, dtypes, CPUs).
#[derive(Clone)]
pub struct Dense {
    weight: DenseWeight,
    bias: Option<Tensor>,
}

impl std::fmt::Debug for Dense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.weight {
            DenseWeight::Packed { rhs, .. } => {
                write!(f, "Dense(packed {} → {})", rhs.k(), rhs.n())
            }
            DenseWeight::Tensor(w) => write!(f, "Dense({:?})", w.dims()),
        }
    }
}

#[derive(Clone)]
enum DenseWeight {
    Packed {
        rhs: Arc<PackedRhs>,
        bias: Option<Arc<Vec<f32>>>,
    },
    Tensor(Tensor),
}

impl Dense {
    /// A layer from its weight (`out × in`) and optional bias (`out`).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (n, k) = weight.dims2()?;
        if let Some(b) = &bias {
            if b.dims() != [n] {
                candle_core::bail!("bias of shape {:?} for a {k} → {n} layer", b.dims());
            }
        }
        let packable =
            KERNELS && matches!(weight.device(), Device::Cpu) && weight.dtype() == DType::F32;
        if !packable {
            return Ok(Self {
                weight: DenseWeight::Tensor(weight),
                bias,
            });
        }
        let rhs = {
            let weight = weight.contiguous()?;
            let (storage, layout) = weight.storage_and_layout();
            Arc::new(PackedRhs::from_rows(cpu_slice(&storage, layout)?, n, k)?)
        };
        let bias_values = match &bias {
            Some(b) => Some(Arc::new(b.to_vec1::<f32>()?)),
            None => None,
        };
        Ok(Self {
            weight: DenseWeight::Packed {
                rhs,
                bias: bias_values,
            },
            bias,
        })
    }

    /// Loads `weight` and `bias` under `vb` (candle's `linear`).
    pub fn load(inp: usize, out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get((out, inp), "weight")?;
        let b = vb.get(out, "bias")?;
        Self::new(w, Some(b))
    }

    /// Loads `weight` alone under `vb` (candle's `linear_no_bias`).
    pub fn load_no_bias(inp: usize, out: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = vb.get((out, inp), "weight")?;
        Self::new(w, None)
    }
}

impl Dense {
    /// `gelu_erf(self.forward(xs))`, the GELU taken by the kernel on each finished tile
    /// (same values) where the weights are packed.
    pub fn forward_gelu(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            DenseWeight::Packed { rhs, bias } if matches!(xs.device(), Device::Cpu) => {
                packed_forward(xs, rhs, bias.as_deref(), Then::Gelu)
            }
            _ => crate::activation::gelu_erf(&self.forward(xs)?),
        }
    }

    /// `residual + self.forward(xs)`, the addition done by the kernel on each finished tile
    /// (same values) where the weights are packed and `residual` is an f32 CPU tensor of
    /// the output's shape; candle's broadcasting addition otherwise.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        if let DenseWeight::Packed { rhs, bias } = &self.weight {
            let mut out_dims = xs.dims().to_vec();
            if let Some(last) = out_dims.last_mut() {
                *last = rhs.n();
            }
            if matches!((xs.device(), residual.device()), (Device::Cpu, Device::Cpu))
                && residual.dtype() == DType::F32
                && residual.dims() == out_dims.as_slice()
            {
                let residual = residual.contiguous()?;
                let (storage, layout) = residual.storage_and_layout();
                let then = Then::Add(cpu_slice(&storage, layout)?);
                return packed_forward(xs, rhs, bias.as_deref(), then);
            }
        }
        residual.broadcast_add(&self.forward(xs)?)
    }
}

impl Module for Dense {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            DenseWeight::Packed { rhs, bias } if matches!(xs.device(), Device::Cpu) => {
                packed_forward(xs, rhs, bias.as_deref(), Then::Nothing)
            }
            DenseWeight::Packed { .. } => {
                candle_core::bail!("this layer's weights were packed for the CPU")
            }
            DenseWeight::Tensor(w) => {
                let w = match xs.dims() {
                    [b1, b2, _, _] => w.broadcast_left((*b1, *b2))?.t()?,
                    [bsize, _, _] => w.broadcast_left(*bsize)?.t()?,
                    _ => w.t()?,
                };
                // CUDA's matmul takes only (batch-)contiguous or transposed operands.
                let x = xs.contiguous()?.matmul(&w)?;
                match &self.bias {
                    None => Ok(x),
                    Some(bias) => x.broadcast_add(bias),
                }
            }
        }
    }
}

/// `xs · Wᵀ (+ bias)` on the packed weights, then `then` on each finished tile.
fn packed_forward(
    xs: &Tensor,
    rhs: &PackedRhs,
    bias: Option<&Vec<f32>>,
    then: Then<'_>,
) -> candle_core::Result<Tensor> {
    xs.to_dtype(DType::F32)?
        .contiguous()?
        .apply_op1_no_bwd(&DenseOp {
            rhs,
            bias: bias.map(Vec::as_slice),
            then,
        })
}

struct DenseOp<'a> {
    rhs: &'a PackedRhs,
    bias: Option<&'a [f32]>,
    then: Then<'a>,
}

impl CustomOp1 for DenseOp<'_> {
    fn name(&self) -> &'static str {
        "mio-dense"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = self.rhs.k();
        let x = crate::lm::qgemv::input_rows(self.name(), storage, layout, k)?;
        let mut dims = layout.dims().to_vec();
        let m = x.len() / k.max(1);
        let out = self.rhs.matmul_new_then(x, m, self.bias, self.then)?;
        if let Some(last) = dims.last_mut() {
            *last = self.rhs.n();
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The largest absolute difference between two tensors of the same shape.
    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8;
                (h % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn reference(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let mut s = 0f64;
                for i in 0..k {
                    s += x[r * k + i] as f64 * w[c * k + i] as f64;
                }
                out[r * n + c] = s as f32 + bias.map_or(0.0, |b| b[c]);
            }
        }
        out
    }

    #[test]
    fn packed_products_match_a_double_precision_reference_at_every_edge() {
        // Row counts around the 6-row tile and 144-row block, columns around the 16-wide
        // panel, depths around the 256-deep block.
        for &(m, n, k) in &[
            (1, 1, 1),
            (5, 17, 3),
            (6, 16, 256),
            (7, 33, 257),
            (145, 40, 300),
            (13, 100, 513),
            (300, 48, 64),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let b = values(n, 3);
            let rhs = PackedRhs::from_rows(&w, n, k).unwrap();
            for bias in [None, Some(b.as_slice())] {
                let mut out = vec![f32::NAN; m * n];
                rhs.matmul(&x, m, bias, &mut out).unwrap();
                let want = reference(&x, &w, bias, m, n, k);
                let err = out
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(err < 1e-4 * (k as f32).sqrt(), "{m}×{n}×{k}: {err}");
            }
        }
    }

    #[test]
    fn chunked_panels_and_grouped_rows_equal_the_unchunked_product_bit_for_bit() {
        // Two depth blocks of 800: a thread's 22–23 panels are more than one chunk of 20,
        // and 1400 rows are two groups of 1296 and 104; every 16-column slice alone is one
        // panel, computed block by block of 48 rows without chunks.
        let (m, n, k) = (1400, 720, 1600);
        let x = values(m * k, 4);
        let w = values(n * k, 5);
        let b = values(n, 6);
        let mut chunked = vec![f32::NAN; m * n];
        PackedRhs::from_rows(&w, n, k)
            .unwrap()
            .matmul(&x, m, Some(&b), &mut chunked)
            .unwrap();
        for j0 in (0..n).step_by(NR) {
            let slice = PackedRhs::from_rows(&w[j0 * k..(j0 + NR) * k], NR, k).unwrap();
            let mut out = vec![f32::NAN; m * NR];
            slice
                .matmul(&x, m, Some(&b[j0..j0 + NR]), &mut out)
                .unwrap();
            for r in 0..m {
                let got = &chunked[r * n + j0..r * n + j0 + NR];
                let want = &out[r * NR..(r + 1) * NR];
                assert!(
                    got.iter()
                        .zip(want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "row {r}, columns {j0}.."
                );
            }
        }
    }

    #[test]
    fn the_portable_tile_equals_the_compiled_one() {
        let k = 37;
        let a = values(MR * k, 4);
        let b = values(NR * k, 5);
        let mut want = [[0f32; NR]; MR];
        portable_product(k, &a, &b, &mut want);
        let mut got = [[f32::NAN; NR]; MR];
        let mut out = vec![0f32; MR * NR];
        #[allow(unsafe_code)]
        // SAFETY: `out` is a 6 × 16 matrix with rows 16 apart.
        unsafe {
            tile(k, &a, &b, out.as_mut_ptr(), NR, (MR, NR), Init::Set, None)
        };
        for (r, row) in got.iter_mut().enumerate() {
            row.copy_from_slice(&out[r * NR..(r + 1) * NR]);
        }
        for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{g} vs {w}");
        }
    }

    #[test]
    fn the_wide_tiles_equal_the_six_row_tile_bit_for_bit() {
        // `tiles` takes the AVX-512 kernel on CPUs that have it (this repository's CI
        // machines do); the 6-row tile is the AVX2 one. Every row count up to two wide
        // tiles, partial column counts, both initialisations, with and without bias.
        #[cfg(target_arch = "x86_64")]
        if !avx512::available() {
            eprintln!("no AVX-512 here: only the 6-row tile runs");
        }
        let (kc, ldc) = (37, 19);
        let stride = MR * kc + 5;
        let b = values(NR * kc, 7);
        let bias = values(NR, 9);
        for mc in 1..=49usize {
            let a = values(mc.div_ceil(MR) * stride, 6);
            for nr in [1, 7, 16] {
                for (init, bias) in [
                    (Init::Set, None),
                    (Init::Set, Some(&bias[..nr])),
                    (Init::Add, None),
                ] {
                    let mut wide = values(mc * ldc, 8);
                    let mut narrow = wide.clone();
                    #[allow(unsafe_code)]
                    // SAFETY: both outputs are `mc` rows of `ldc ≥ nr` floats; `a` holds
                    // `⌈mc / 6⌉` slivers `stride` apart, `b` a 37-deep panel.
                    unsafe {
                        tiles(
                            kc,
                            (&a, stride),
                            &b,
                            (wide.as_mut_ptr(), ldc),
                            (mc, nr),
                            init,
                            bias,
                        );
                        for ir in (0..mc).step_by(MR) {
                            tile(
                                kc,
                                &a[ir / MR * stride..],
                                &b,
                                narrow.as_mut_ptr().add(ir * ldc),
                                ldc,
                                ((mc - ir).min(MR), nr),
                                init,
                                bias,
                            );
                        }
                    }
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&wide), bits(&narrow), "{mc} rows, {nr} columns");
                }
            }
        }
    }

    #[test]
    fn dense_equals_candles_linear_for_2d_3d_and_4d_inputs() {
        let dev = Device::Cpu;
        let (n, k) = (70, 45);
        let w = Tensor::from_vec(values(n * k, 6), (n, k), &dev).unwrap();
        let b = Tensor::from_vec(values(n, 7), n, &dev).unwrap();
        let ours = Dense::new(w.clone(), Some(b.clone())).unwrap();
        let ours_nb = Dense::new(w.clone(), None).unwrap();
        let theirs = candle_nn::Linear::new(w.clone(), Some(b));
        let theirs_nb = candle_nn::Linear::new(w, None);
        for shape in [vec![9, k], vec![2, 11, k], vec![2, 3, 5, k]] {
            let len = shape.iter().product();
            let x = Tensor::from_vec(values(len, 8), shape.as_slice(), &dev).unwrap();
            for (o, t) in [(&ours, &theirs), (&ours_nb, &theirs_nb)] {
                let got = o.forward(&x).unwrap();
                let want = t.forward(&x).unwrap();
                assert_eq!(got.dims(), want.dims());
                let err = max_abs_diff(&got, &want);
                assert!(err < 1e-5, "{shape:?}: {err}");
            }
        }
        // A strided (transposed) input is made contiguous first.
        let x = Tensor::from_vec(values(k * 9, 9), (k, 9), &dev)
            .unwrap()
            .t()
            .unwrap();
        let err = max_abs_diff(&ours.forward(&x).unwrap(), &theirs.forward(&x).unwrap());
        assert!(err < 1e-5);
    }

    #[test]
    fn a_gelu_or_residual_taken_per_tile_equals_it_on_the_finished_output() {
        let dev = Device::Cpu;
        // Rows off the 48-row block, columns off the panel; depth 1600 is two blocks (only
        // the last one's tiles are final); 720 columns are chunked panels.
        for (m, k, n) in [(3, 5, 7), (50, 1600, 40), (100, 1600, 720)] {
            let x = Tensor::from_vec(values(m * k, 20), (m, k), &dev).unwrap();
            let w = Tensor::from_vec(values(n * k, 21), (n, k), &dev).unwrap();
            let b = Tensor::from_vec(values(n, 22), n, &dev).unwrap();
            let residual = Tensor::from_vec(values(m * n, 23), (m, n), &dev).unwrap();
            let dense = Dense::new(w, Some(b)).unwrap();
            let plain = dense.forward(&x).unwrap();
            let bits = |t: &Tensor| -> Vec<u32> {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                v.iter().map(|x| x.to_bits()).collect()
            };
            let gelu = crate::activation::gelu_erf(&plain).unwrap();
            assert_eq!(bits(&dense.forward_gelu(&x).unwrap()), bits(&gelu));
            let added = (&residual + &plain).unwrap();
            assert_eq!(
                bits(&dense.forward_add(&x, &residual).unwrap()),
                bits(&added)
            );
            // A residual of another shape is broadcast as candle adds it.
            let row = residual.narrow(0, 0, 1).unwrap();
            let want = row.broadcast_add(&plain).unwrap();
            assert_eq!(bits(&dense.forward_add(&x, &row).unwrap()), bits(&want));
        }
    }

    #[test]
    fn fused_attention_equals_softmax_of_candle_products() {
        let dev = Device::Cpu;
        // Query and key counts off the 96-row task and 16-column panel sizes, 3 heads of 20.
        let (b, n, m, heads, d) = (2, 101, 37, 3, 20);
        let q = Tensor::from_vec(values(b * n * heads * d, 10), (b, n, heads * d), &dev).unwrap();
        let k = Tensor::from_vec(values(b * m * heads * d, 11), (b, m, heads * d), &dev).unwrap();
        let v = Tensor::from_vec(values(b * m * heads * d, 12), (b, m, heads * d), &dev).unwrap();
        let scale = 0.3f64;
        let got = attention_tensors(&q, &k, &v, heads, scale).unwrap();
        assert_eq!(got.is_some(), KERNELS);
        let Some(got) = got else { return };
        let mut outs = vec![];
        for h in 0..heads {
            let qh = (q.narrow(2, h * d, d).unwrap() * scale).unwrap();
            let kh = k.narrow(2, h * d, d).unwrap().contiguous().unwrap();
            let vh = v.narrow(2, h * d, d).unwrap().contiguous().unwrap();
            let p =
                candle_nn::ops::softmax_last_dim(&qh.matmul(&kh.t().unwrap()).unwrap()).unwrap();
            outs.push(p.matmul(&vh).unwrap());
        }
        let want = Tensor::cat(&outs, 2).unwrap();
        assert_eq!(got.dims(), want.dims());
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-5, "{err}");
        let bad = Tensor::zeros((b, m, heads * d + 1), DType::F32, &dev).unwrap();
        assert!(attention_tensors(&q, &bad, &bad, heads, scale).is_err());
    }

    #[test]
    fn attention_on_a_fused_qkv_equals_it_on_separate_tensors_bit_for_bit() {
        let dev = Device::Cpu;
        // 257 rows (three blocks of 86 / 86 / 85), tasks split unevenly over the threads.
        for (b, n, heads, d) in [(2, 257, 4, 24), (1, 5, 1, 16), (3, 97, 2, 8)] {
            let inner = heads * d;
            let qkv =
                Tensor::from_vec(values(b * n * 3 * inner, 13), (b, n, 3 * inner), &dev).unwrap();
            let part = |i: usize| {
                qkv.narrow(2, i * inner, inner)
                    .unwrap()
                    .contiguous()
                    .unwrap()
            };
            let got = attention_fused_qkv(&qkv, heads, 0.25).unwrap();
            let want = attention_tensors(&part(0), &part(1), &part(2), heads, 0.25).unwrap();
            assert_eq!(got.is_some(), KERNELS);
            let (Some(got), Some(want)) = (got, want) else {
                return;
            };
            assert_eq!(got.dims(), &[b, n, inner]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        let bad = Tensor::zeros((1, 4, 3 * 10), DType::F32, &dev).unwrap();
        assert!(attention_fused_qkv(&bad, 4, 0.25).is_err());
    }

    #[test]
    fn packed_left_products_add_to_the_output() {
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 300), (50, 17, 1600), (6, 16, 16)] {
            let w = values(m * k, 13);
            let x = values(k * n, 14);
            let lhs = PackedLhs::from_rows(&w, m, k).unwrap();
            let ldc = n + 3;
            let mut out = vec![1f32; m * ldc];
            #[allow(unsafe_code)]
            // SAFETY: `out` holds `m` rows of `ldc ≥ n` floats.
            unsafe {
                lhs.add_product(
                    n,
                    |i0, rows, j0, cols, panel| {
                        for i in 0..rows {
                            for j in 0..cols {
                                panel[i * NR + j] = x[(i0 + i) * n + j0 + j];
                            }
                        }
                    },
                    out.as_mut_ptr(),
                    ldc,
                )
            };
            // W · X = (Xᵀ · Wᵀ)ᵀ: the reference of the right-hand tests, transposed.
            let xt: Vec<f32> = (0..n * k).map(|idx| x[(idx % k) * n + idx / k]).collect();
            let want = reference(&xt, &w, None, n, m, k);
            for r in 0..m {
                for c in 0..ldc {
                    let got = out[r * ldc + c];
                    let expect = if c < n { 1.0 + want[c * m + r] } else { 1.0 };
                    assert!(
                        (got - expect).abs() < 1e-4 * (k as f32).sqrt(),
                        "{m}×{n}×{k}"
                    );
                }
            }
        }
        assert!(PackedLhs::from_rows(&[0.0; 5], 2, 3).is_err());
    }

    #[test]
    fn a_product_into_a_new_vector_equals_one_into_zeros() {
        // Partial panels and row blocks, two depth blocks (past `KC`), and no depth at all.
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 300), (50, 17, 1600), (3, 5, 0)] {
            let (x, w, bias) = (values(m * k, 31), values(n * k, 32), values(n, 33));
            let rhs = PackedRhs::from_rows(&w, n, k).unwrap();
            for b in [None, Some(&bias[..])] {
                let mut want = vec![0f32; m * n];
                rhs.matmul(&x, m, b, &mut want).unwrap();
                let got = rhs.matmul_new(&x, m, b).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{m}×{n}×{k}");
                if k == 0 {
                    let row = b.map_or(vec![0f32; n], <[f32]>::to_vec);
                    assert!(got.chunks_exact(n).all(|r| r == row.as_slice()));
                }
            }
            assert!(
                rhs.matmul_new(&x[..x.len().saturating_sub(1)], m, None)
                    .is_err()
                    || k == 0
            );
        }
    }

    #[test]
    fn setting_a_product_with_a_row_bias_equals_adding_it_onto_the_bias() {
        // Depths of one block, of two (past `KC`) and of none; row counts around the 24-row
        // wide tile and the 48-row block; a panel cut short (n not a multiple of 16).
        for &(m, n, k) in &[
            (1, 1, 1),
            (7, 33, 300),
            (50, 17, 1600),
            (30, 16, 3100),
            (5, 9, 0),
        ] {
            let w = values(m * k, 21);
            let x = values(k * n, 22);
            let bias = values(m, 23);
            let lhs = PackedLhs::from_rows(&w, m, k).unwrap();
            let ldc = n + 3;
            let fill = |i0: usize, rows: usize, j0: usize, cols: usize, panel: &mut [f32]| {
                for i in 0..rows {
                    for j in 0..cols {
                        panel[i * NR + j] = x[(i0 + i) * n + j0 + j];
                    }
                }
            };
            let mut want: Vec<f32> = (0..m * ldc).map(|i| bias[i / ldc]).collect();
            // NaN everywhere: any value `set_product` read instead of writing shows.
            let mut got = vec![f32::NAN; m * ldc];
            #[allow(unsafe_code)]
            // SAFETY: both outputs hold `m` rows of `ldc ≥ n` floats; `bias` has `m` values.
            unsafe {
                lhs.add_product(n, fill, want.as_mut_ptr(), ldc);
                lhs.set_product(n, fill, got.as_mut_ptr(), ldc, Some(&bias));
            }
            for r in 0..m {
                for c in 0..n {
                    let (g, e) = (got[r * ldc + c], want[r * ldc + c]);
                    assert_eq!(g.to_bits(), e.to_bits(), "{m}×{n}×{k} at ({r}, {c})");
                }
                // Columns past `n` are not the product's: left as they were.
                assert!(got[r * ldc + n..(r + 1) * ldc].iter().all(|v| v.is_nan()));
            }
            let mut plain = vec![f32::NAN; m * ldc];
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                lhs.set_product(n, fill, plain.as_mut_ptr(), ldc, None)
            };
            let mut zero_based = vec![0f32; m * ldc];
            #[allow(unsafe_code)]
            // SAFETY: as above.
            unsafe {
                lhs.add_product(n, fill, zero_based.as_mut_ptr(), ldc)
            };
            for r in 0..m {
                for c in 0..n {
                    assert_eq!(
                        plain[r * ldc + c].to_bits(),
                        zero_based[r * ldc + c].to_bits()
                    );
                }
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(PackedRhs::from_rows(&[0.0; 5], 2, 3).is_err());
        let rhs = PackedRhs::from_rows(&[0.0; 6], 2, 3).unwrap();
        let mut out = vec![0f32; 4];
        assert!(rhs.matmul(&[0.0; 5], 2, None, &mut out).is_err());
        assert!(rhs.matmul(&[0.0; 6], 2, Some(&[0.0; 3]), &mut out).is_err());
        let dev = Device::Cpu;
        let w = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(3, DType::F32, &dev).unwrap();
        assert!(Dense::new(w.clone(), Some(b)).is_err());
        let x = Tensor::zeros((4, 5), DType::F32, &dev).unwrap();
        assert!(Dense::new(w, None).unwrap().forward(&x).is_err());
    }
}
