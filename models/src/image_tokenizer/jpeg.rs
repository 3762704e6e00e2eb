//! A baseline JPEG decoder that reproduces libjpeg-turbo's output bit for bit, so images
//! decode as `PIL.Image.open(path).convert('RGB')` decodes them.
//!
//! Follows the libjpeg-turbo defaults PIL uses: `jidctint.c` (`JDCT_ISLOW`, 13-bit
//! constants, two passes), `jdsample.c` fancy upsampling (`h2v1`, `h1v2`, `h2v2`
//! triangle filters with their rounding biases, edge rows replicated) and `jdcolor.c`
//! YCbCr → RGB tables (16-bit fixed point). Scope: sequential Huffman (SOF0/SOF1), 8-bit,
//! 1 or 3 components, sampling factors giving 1× or 2× chroma. Anything else
//! (progressive, arithmetic, CMYK, other sampling) returns `Ok(None)` and the caller falls
//! back to the `image` crate.

use image::RgbImage;

use super::jpeg_color::{upsample, ycc_to_rgb};

type Res<T> = std::result::Result<T, String>;

/// Largest image accepted: PIL's decompression-bomb limit (`2 * Image.MAX_IMAGE_PIXELS`).
const MAX_PIXELS: usize = 2 * 89_478_485;

/// Natural-order index of the k-th zigzag coefficient.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

fn corrupt(what: &str) -> String {
    format!("corrupt JPEG: {what}")
}

/// A Huffman table as `(maxcode, valptr, mincode)` per length plus the symbols.
#[derive(Clone, Default)]
struct Huffman {
    mincode: [i32; 17],
    maxcode: [i32; 18],
    valptr: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8], values: Vec<u8>) -> Self {
        let mut h = Huffman {
            values,
            ..Default::default()
        };
        let (mut code, mut k) = (0i32, 0i32);
        for len in 1..=16 {
            let n = i32::from(counts[len - 1]);
            h.valptr[len] = k;
            h.mincode[len] = code;
            code += n;
            k += n;
            h.maxcode[len] = if n > 0 { code - 1 } else { -1 };
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX;
        h
    }
}

/// Entropy-coded data reader (`FF 00` unstuffing; zeros past a marker, as libjpeg).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl Bits<'_> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u8;
            if let Some(&b) = self.data.get(self.pos) {
                if b != 0xFF {
                    byte = b;
                    self.pos += 1;
                } else if self.data.get(self.pos + 1) == Some(&0) {
                    byte = 0xFF;
                    self.pos += 2;
                }
            }
            self.acc |= u64::from(byte) << (56 - self.n);
            self.n += 8;
        }
    }

    fn bits(&mut self, count: u32) -> i32 {
        if count == 0 {
            return 0;
        }
        self.fill();
        let v = (self.acc >> (64 - count)) as i32;
        self.acc <<= count;
        self.n -= count;
        v
    }

    fn decode(&mut self, h: &Huffman) -> Res<u8> {
        let mut code = 0i32;
        for len in 1..=16 {
            code = (code << 1) | self.bits(1);
            if code <= h.maxcode[len] {
                let idx = h.valptr[len] + code - h.mincode[len];
                return h
                    .values
                    .get(idx as usize)
                    .copied()
                    .ok_or_else(|| corrupt("bad Huffman code"));
            }
        }
        Err(corrupt("bad Huffman code"))
    }

    fn extend(&mut self, s: u8) -> Res<i32> {
        let s = u32::from(s);
        if s > 16 {
            return Err(corrupt("coefficient magnitude out of range"));
        }
        let v = self.bits(s);
        Ok(if s > 0 && v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        })
    }

    /// Skips to just after the next RSTn marker and resets the bit buffer.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        while self.pos + 1 < self.data.len() {
            if self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
    }
}

#[derive(Clone)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Sample plane (padded to whole blocks), row stride `stride`.
    plane: Vec<u8>,
    stride: usize,
    blocks_w: usize,
    blocks_h: usize,
    dc_pred: i32,
}

/// libjpeg `jpeg_idct_islow` of one block (coefficients in natural order, dequantized
/// on the fly), written into `out` with row stride `stride`.
fn idct_islow(coef: &[i32; 64], q: &[u16; 64], out: &mut [u8], stride: usize) {
    const CB: u32 = 13;
    const P1: u32 = 2;
    let fix = |x: i64| x;
    let descale = |x: i64, n: u32| (x + (1 << (n - 1))) >> n;
    let mut ws = [0i64; 64];
    let deq = |i: usize| i64::from(coef[i]) * i64::from(q[i]);
    let butterfly = |d: [i64; 8]| -> [i64; 8] {
        let z1 = (d[2] + d[6]) * fix(4433);
        let tmp2 = z1 + d[6] * -fix(15137);
        let tmp3 = z1 + d[2] * fix(6270);
        let tmp0 = (d[0] + d[4]) << CB;
        let tmp1 = (d[0] - d[4]) << CB;
        let (t10, t13, t11, t12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
        let (o0, o1, o2, o3) = (d[7], d[5], d[3], d[1]);
        let z5 = (o0 + o2 + o1 + o3) * fix(9633);
        let (z1, z2) = ((o0 + o3) * -fix(7373), (o1 + o2) * -fix(20995));
        let z3 = (o0 + o2) * -fix(16069) + z5;
        let z4 = (o1 + o3) * -fix(3196) + z5;
        let a0 = o0 * fix(2446) + z1 + z3;
        let a1 = o1 * fix(16819) + z2 + z4;
        let a2 = o2 * fix(25172) + z2 + z3;
        let a3 = o3 * fix(12299) + z1 + z4;
        [
            t10 + a3,
            t11 + a2,
            t12 + a1,
            t13 + a0,
            t13 - a0,
            t12 - a1,
            t11 - a2,
            t10 - a3,
        ]
    };
    for c in 0..8 {
        if (1..8).all(|r| coef[r * 8 + c] == 0) {
            let dc = deq(c) << P1;
            (0..8).for_each(|r| ws[r * 8 + c] = dc);
            continue;
        }
        let d: [i64; 8] = std::array::from_fn(|r| deq(r * 8 + c));
        for (r, v) in butterfly(d).into_iter().enumerate() {
            ws[r * 8 + c] = descale(v, CB - P1);
        }
    }
    for r in 0..8 {
        let d: [i64; 8] = std::array::from_fn(|c| ws[r * 8 + c]);
        let row = &mut out[r * stride..r * stride + 8];
        for (x, v) in row.iter_mut().zip(butterfly(d)) {
            *x = (descale(v, CB + P1 + 3) + 128).clamp(0, 255) as u8;
        }
    }
}

/// Parsed frame and tables.
struct Decoder {
    width: usize,
    height: usize,
    comps: Vec<Component>,
    qt: [[u16; 64]; 4],
    dc: [Huffman; 4],
    ac: [Huffman; 4],
    restart_interval: usize,
    hmax: usize,
    vmax: usize,
    seen_frame: bool,
    seen_scan: bool,
    /// An APP0 `JFIF` segment was seen.
    saw_jfif: bool,
    /// The transform byte of an APP14 `Adobe` segment.
    adobe_transform: Option<u8>,
}

fn u16_at(data: &[u8], i: usize) -> Res<usize> {
    match data.get(i..i + 2) {
        Some(b) => Ok(usize::from(u16::from_be_bytes([b[0], b[1]]))),
        None => Err("the JPEG data is truncated".to_owned()),
    }
}

/// Decodes `data` like libjpeg-turbo; `Ok(None)` when outside the supported scope.
pub(crate) fn decode_libjpeg_exact(data: &[u8]) -> Res<Option<RgbImage>> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(corrupt("no start-of-image marker"));
    }
    let mut d = Decoder {
        width: 0,
        height: 0,
        comps: Vec::new(),
        qt: [[0; 64]; 4],
        dc: Default::default(),
        ac: Default::default(),
        restart_interval: 0,
        hmax: 1,
        vmax: 1,
        seen_frame: false,
        seen_scan: false,
        saw_jfif: false,
        adobe_transform: None,
    };
    let mut i = 2;
    loop {
        while data.get(i) == Some(&0xFF) && data.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if data.get(i) != Some(&0xFF) {
            return Err("the JPEG data is truncated".to_owned());
        }
        let marker = *data.get(i + 1).ok_or("the JPEG data is truncated")?;
        if marker == 0xD9 {
            break;
        }
        let len = u16_at(data, i + 2)?;
        let seg = data
            .get(i + 4..i + 2 + len)
            .ok_or("the JPEG data is truncated")?;
        match marker {
            0xC0 | 0xC1 => d.frame(seg)?,
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => d.tables_huffman(seg)?,
            0xDB => d.tables_quant(seg)?,
            0xDD => d.restart_interval = u16_at(seg, 0)?,
            0xE0 if seg.starts_with(b"JFIF\0") => d.saw_jfif = true,
            0xEE if seg.starts_with(b"Adobe") && seg.len() >= 12 => {
                d.adobe_transform = Some(seg[11]);
            }
            0xDA => {
                if !d.seen_frame {
                    return Err(corrupt("scan before frame"));
                }
                i = d.scan(seg, data, i + 2 + len)?;
                d.seen_scan = true;
                continue;
            }
            _ => {}
        }
        i += 2 + len;
    }
    if !d.seen_scan {
        return Err(corrupt("no image data"));
    }
    d.to_rgb()
}

impl Decoder {
    fn frame(&mut self, seg: &[u8]) -> Res<()> {
        if seg.first() != Some(&8) {
            return Err("only 8-bit JPEG is supported".to_owned());
        }
        self.height = u16_at(seg, 1)?;
        self.width = u16_at(seg, 3)?;
        let n = usize::from(*seg.get(5).ok_or_else(|| corrupt("frame"))?);
        if self.width == 0 || self.height == 0 {
            return Err(format!(
                "the image is empty ({}x{})",
                self.width, self.height
            ));
        }
        if self.width * self.height > MAX_PIXELS {
            return Err(format!(
                "the image is too large ({}x{} pixels, at most {MAX_PIXELS})",
                self.width, self.height
            ));
        }
        if n == 0 || n > 4 || self.seen_frame {
            return Err(corrupt("bad frame header"));
        }
        for c in 0..n {
            let b = seg
                .get(6 + 3 * c..9 + 3 * c)
                .ok_or_else(|| corrupt("frame"))?;
            let (h, v) = (usize::from(b[1] >> 4), usize::from(b[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || b[2] > 3 {
                return Err(corrupt("bad sampling factors"));
            }
            self.comps.push(Component {
                id: b[0],
                h,
                v,
                tq: usize::from(b[2]),
                plane: Vec::new(),
                stride: 0,
                blocks_w: 0,
                blocks_h: 0,
                dc_pred: 0,
            });
        }
        self.hmax = self.comps.iter().map(|c| c.h).max().unwrap_or(1);
        self.vmax = self.comps.iter().map(|c| c.v).max().unwrap_or(1);
        let (mcux, mcuy) = (
            self.width.div_ceil(8 * self.hmax),
            self.height.div_ceil(8 * self.vmax),
        );
        for c in &mut self.comps {
            c.blocks_w = mcux * c.h;
            c.blocks_h = mcuy * c.v;
            c.stride = c.blocks_w * 8;
            c.plane = vec![0; c.stride * c.blocks_h * 8];
        }
        self.seen_frame = true;
        Ok(())
    }

    fn tables_huffman(&mut self, mut seg: &[u8]) -> Res<()> {
        while !seg.is_empty() {
            let tc_th = seg[0];
            let counts = seg.get(1..17).ok_or_else(|| corrupt("DHT"))?;
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let values = seg
                .get(17..17 + total)
                .ok_or_else(|| corrupt("DHT"))?
                .to_vec();
            let table = Huffman::new(counts, values);
            let slot = usize::from(tc_th & 3);
            if tc_th >> 4 == 0 {
                self.dc[slot] = table;
            } else {
                self.ac[slot] = table;
            }
            seg = &seg[17 + total..];
        }
        Ok(())
    }

    fn tables_quant(&mut self, mut seg: &[u8]) -> Res<()> {
        while !seg.is_empty() {
            let (pq, tq) = (seg[0] >> 4, usize::from(seg[0] & 3));
            let size = if pq == 0 { 64 } else { 128 };
            let body = seg.get(1..1 + size).ok_or_else(|| corrupt("DQT"))?;
            for k in 0..64 {
                self.qt[tq][ZIGZAG[k]] = if pq == 0 {
                    u16::from(body[k])
                } else {
                    u16::from_be_bytes([body[2 * k], body[2 * k + 1]])
                };
            }
            seg = &seg[1 + size..];
        }
        Ok(())
    }
}

impl Decoder {
    /// Decodes one scan whose header is `seg` and whose data starts at `start`; returns
    /// the position of the marker that follows the data.
    fn scan(&mut self, seg: &[u8], data: &[u8], start: usize) -> Res<usize> {
        let ns = usize::from(*seg.first().ok_or_else(|| corrupt("SOS"))?);
        if !(1..=4).contains(&ns) {
            return Err(corrupt("bad component count in scan"));
        }
        let mut members = Vec::with_capacity(ns);
        for s in 0..ns {
            let b = seg
                .get(1 + 2 * s..3 + 2 * s)
                .ok_or_else(|| corrupt("SOS"))?;
            let ci = self
                .comps
                .iter()
                .position(|c| c.id == b[0])
                .ok_or_else(|| corrupt("scan names an unknown component"))?;
            members.push((ci, usize::from(b[1] >> 4 & 3), usize::from(b[1] & 3)));
        }
        let mut bits = Bits {
            data,
            pos: start,
            acc: 0,
            n: 0,
        };
        self.comps.iter_mut().for_each(|c| c.dc_pred = 0);
        // (component, block x, block y) of every block in MCU order, grouped by MCU.
        let mcus: Vec<Vec<(usize, usize, usize)>> = if ns == 1 {
            let (ci, ..) = members[0];
            let c = &self.comps[ci];
            let bw = (self.width * c.h).div_ceil(self.hmax).div_ceil(8);
            let bh = (self.height * c.v).div_ceil(self.vmax).div_ceil(8);
            (0..bh)
                .flat_map(|y| (0..bw).map(move |x| vec![(ci, x, y)]))
                .collect()
        } else {
            let mcux = self.width.div_ceil(8 * self.hmax);
            let mcuy = self.height.div_ceil(8 * self.vmax);
            let comps = &self.comps;
            let members = &members;
            (0..mcuy * mcux)
                .map(|m| {
                    let (mx, my) = (m % mcux, m / mcux);
                    members
                        .iter()
                        .flat_map(|&(ci, ..)| {
                            let (h, v) = (comps[ci].h, comps[ci].v);
                            (0..v * h).map(move |b| (ci, mx * h + b % h, my * v + b / h))
                        })
                        .collect()
                })
                .collect()
        };
        for (m, blocks) in mcus.iter().enumerate() {
            if self.restart_interval > 0 && m > 0 && m % self.restart_interval == 0 {
                bits.restart();
                self.comps.iter_mut().for_each(|c| c.dc_pred = 0);
            }
            for &(ci, bx, by) in blocks {
                let &(_, td, ta) = members
                    .iter()
                    .find(|(c, ..)| *c == ci)
                    .ok_or_else(|| corrupt("scan"))?;
                self.block(&mut bits, ci, td, ta, bx, by)?;
            }
        }
        let mut end = bits.pos.min(data.len());
        while end + 1 < data.len() {
            let next = data[end + 1];
            if data[end] == 0xFF && next != 0 && next != 0xFF && !(0xD0..=0xD7).contains(&next) {
                return Ok(end);
            }
            end += 1;
        }
        Err("the JPEG data is truncated".to_owned())
    }

    fn block(
        &mut self,
        bits: &mut Bits,
        ci: usize,
        td: usize,
        ta: usize,
        bx: usize,
        by: usize,
    ) -> Res<()> {
        let mut coef = [0i32; 64];
        let t = bits.decode(&self.dc[td])?;
        let comp = &mut self.comps[ci];
        comp.dc_pred = comp.dc_pred.wrapping_add(bits.extend(t)?);
        coef[0] = comp.dc_pred;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(&self.ac[ta])?;
            let (r, s) = (usize::from(rs >> 4), rs & 15);
            if s == 0 {
                if r != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            k += r;
            let z = *ZIGZAG.get(k).ok_or_else(|| corrupt("coefficient index"))?;
            coef[z] = bits.extend(s)?;
            k += 1;
        }
        let comp = &mut self.comps[ci];
        if bx >= comp.blocks_w || by >= comp.blocks_h {
            return Err(corrupt("block outside the frame"));
        }
        let stride = comp.stride;
        let off = by * 8 * stride + bx * 8;
        idct_islow(&coef, &self.qt[comp.tq], &mut comp.plane[off..], stride);
        Ok(())
    }

    /// libjpeg's `default_decompress_parms` for three components: JFIF means YCbCr, else an
    /// Adobe transform 0 means RGB, else component ids `R`, `G`, `B` mean RGB.
    fn is_rgb(&self) -> bool {
        if self.saw_jfif {
            return false;
        }
        match self.adobe_transform {
            Some(t) => t == 0,
            None => self.comps.iter().map(|c| c.id).eq([b'R', b'G', b'B']),
        }
    }

    /// Upsamples every component to full size (libjpeg fancy upsampling) and converts.
    fn to_rgb(&self) -> Res<Option<RgbImage>> {
        let (w, h) = (self.width, self.height);
        let mut planes = Vec::with_capacity(self.comps.len());
        for c in &self.comps {
            let (fx, fy) = (self.hmax / c.h, self.vmax / c.v);
            if !self.hmax.is_multiple_of(c.h) || !self.vmax.is_multiple_of(c.v) || fx > 2 || fy > 2
            {
                return Ok(None);
            }
            let cw = (w * c.h).div_ceil(self.hmax);
            let ch = (h * c.v).div_ceil(self.vmax);
            planes.push(upsample(&c.plane, c.stride, cw, ch, fx, fy, w, h));
        }
        let mut out = vec![0u8; w * h * 3];
        match planes.as_slice() {
            [y] => out
                .chunks_exact_mut(3)
                .zip(y)
                .for_each(|(px, &v)| px.fill(v)),
            [r, g, b] if self.is_rgb() => {
                for (i, px) in out.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&[r[i], g[i], b[i]]);
                }
            }
            [y, cb, cr] => ycc_to_rgb(y, cb, cr, &mut out),
            _ => return Ok(None),
        }
        Ok(RgbImage::from_raw(w as u32, h as u32, out))
    }
}
