//! Image preprocessing of the SEED tokenizer: file → RGB → 224×224 → CLIP-normalised pixels.
//!
//! Ports `tokenization_mio.MIOTokenizer.tokenize_images` + `image_tokenizer/models/transforms.py`
//! (`get_transform(type='clip', keep_ratio=False)`, config `clip_transform.yaml`):
//! `PIL.Image.open(path).convert('RGB')` → `transforms.Resize((224, 224))` (PIL bilinear,
//! antialiased: [`pil_resize_bilinear`] is PIL's own fixed-point algorithm, not the `image`
//! crate's resize) → `ToTensor` (/255) → `Normalize(CLIP mean, CLIP std)`, all in f32.
//! Output: `pixel_values` `(3, 224, 224)` f32.
//!
//! Decoding: baseline JPEGs go through [`super::jpeg`], a libjpeg-turbo-exact decoder
//! (PIL's own decoder, so pixels are bit-identical); PNG, WebP, GIF (first frame), BMP and
//! progressive/arithmetic JPEGs through the `image` crate (progressive JPEG pixels may then
//! differ from libjpeg's by a few levels). Truncated JPEGs are refused, as PIL refuses them.
//! Deviation: the EXIF orientation is applied (PIL's `Image.open` ignores it), so sideways
//! phone photos are encoded upright.

use std::io::Cursor;
use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use super::jpeg::decode_libjpeg_exact;
use crate::{Error, Result};

/// CLIP normalisation mean (`transforms.Normalize` of `transforms.py`).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP normalisation std (upstream's digits; rounded to f32 as `torch.as_tensor` does).
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Reads and decodes an image file to RGB (EXIF orientation applied).
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_rgb(&bytes).map_err(|message| Error::ImageDecode {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes an encoded image (format guessed from its bytes) to RGB, EXIF orientation
/// applied. The error is a sentence saying why it cannot be used.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not an image in a supported format (JPEG, PNG, WebP, GIF, BMP)".to_owned());
    };
    if format == image::ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    check_size(decoder.dimensions())?;
    let orientation = decoder.orientation().map_err(|e| e.to_string())?;
    let exact = match format {
        image::ImageFormat::Jpeg => decode_libjpeg_exact(bytes)?,
        _ => None,
    };
    let mut img = match exact {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?,
    };
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(format!(
            "the image is empty ({}x{})",
            img.width(),
            img.height()
        ));
    }
    // PIL's convert('RGB') drops alpha without compositing, as `to_rgb8` does.
    Ok(img.to_rgb8())
}

/// Largest side accepted, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
/// Largest image accepted, in pixels (64 megapixels: about 200 MB decoded as RGB).
pub const MAX_IMAGE_PIXELS: u64 = 64 << 20;

/// Refuses images too large to decode safely (decompression bombs: a 1 MB PNG can claim
/// 20000×20000 pixels), from the header alone, before anything is allocated.
fn check_size((w, h): (u32, u32)) -> std::result::Result<(), String> {
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE || u64::from(w) * u64::from(h) > MAX_IMAGE_PIXELS {
        return Err(format!(
            "the image is {w}x{h} pixels; the largest accepted is {} megapixels and {MAX_IMAGE_SIDE} pixels a side",
            MAX_IMAGE_PIXELS >> 20
        ));
    }
    Ok(())
}

/// Refuses a JPEG whose data stops before its end-of-image marker, as PIL does ("image
/// file is truncated"); the `image` crate's decoder would fill the rest in silently.
/// Walks the marker segments to the first scan, then looks for `FF D9` after it (entropy
/// data never holds it: every `FF` there is stuffed as `FF 00`).
fn check_jpeg_complete(bytes: &[u8]) -> std::result::Result<(), String> {
    let truncated = || Err("the JPEG data is truncated".to_owned());
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return Err(format!("corrupt JPEG: no marker at byte {i}"));
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD8).contains(&marker) {
            i += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        if marker == 0xDA {
            let scan = bytes.get(i + 2 + len..).unwrap_or(&[]);
            return match scan.windows(2).any(|w| w == [0xFF, 0xD9]) {
                true => Ok(()),
                false => truncated(),
            };
        }
        i += 2 + len;
    }
    truncated()
}

/// One axis of PIL's `precompute_coeffs` (`libImaging/Resample.c`) for the bilinear
/// filter (support 1), with the coefficients already normalised to PIL's 22-bit fixed
/// point (`normalize_coeffs_8bpc`): per output index, the first input index and weights.
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    const PRECISION_BITS: u32 = 32 - 8 - 2;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 × filterscale
    let ss = 1.0 / filterscale;
    let bilinear = |x: f64| {
        let x = x.abs();
        if x < 1.0 {
            1.0 - x
        } else {
            0.0
        }
    };
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin);
            let w: Vec<f64> = (0..n)
                .map(|x| bilinear(((x + xmin) as f64 - center + 0.5) * ss))
                .collect();
            let ww: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if ww != 0.0 { k / ww } else { k };
                    let k = k * f64::from(1u32 << PRECISION_BITS);
                    if k < 0.0 {
                        (k - 0.5) as i32
                    } else {
                        (k + 0.5) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// PIL's `clip8`: round the 22-bit fixed-point sum and clamp to a byte.
fn clip8(ss: i32) -> u8 {
    (ss >> (32 - 8 - 2)).clamp(0, 255) as u8
}

/// One separable pass over interleaved 3-channel rows: `out[o] = Σ_k in[first + k] · w_k`
/// along the axis whose elements are `stride` bytes apart.
fn pil_pass(
    src: &[u8],
    lines: usize,
    line_step: usize,
    stride: usize,
    coeffs: &[(usize, Vec<i32>)],
    out_line_step: usize,
    out_stride: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; lines * coeffs.len() * 3];
    for line in 0..lines {
        for (o, (first, weights)) in coeffs.iter().enumerate() {
            for c in 0..3 {
                let mut ss: i32 = 1 << (32 - 8 - 2 - 1);
                for (k, w) in weights.iter().enumerate() {
                    let v = src[line * line_step + (first + k) * stride + c];
                    ss = ss.wrapping_add(i32::from(v).wrapping_mul(*w));
                }
                out[line * out_line_step + o * out_stride + c] = clip8(ss);
            }
        }
    }
    out
}

/// `PIL.Image.resize((width, height), Image.BILINEAR)` of an RGB image, bit for bit:
/// PIL's separable convolution (support scaled by the downscale factor, i.e. antialiased),
/// horizontal pass first, 22-bit fixed-point weights, each pass rounded to bytes.
pub fn pil_resize_bilinear(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if in_w == 0 || in_h == 0 || out_w == 0 || out_h == 0 {
        return Err(Error::EmptyImage {
            width: img.width(),
            height: img.height(),
        });
    }
    let mut data = img.as_raw().clone();
    let mut w = in_w;
    if out_w != in_w {
        let coeffs = pil_coeffs(in_w, out_w);
        data = pil_pass(&data, in_h, in_w * 3, 3, &coeffs, out_w * 3, 3);
        w = out_w;
    }
    if out_h != in_h {
        let coeffs = pil_coeffs(in_h, out_h);
        // Columns are the lines; rows `w * 3` bytes apart.
        data = pil_pass(&data, w, 3, w * 3, &coeffs, 3, w * 3);
    }
    RgbImage::from_raw(width, height, data)
        .ok_or_else(|| Error::InvalidArgument("resized buffer has the wrong size".to_owned()))
}

/// `ToTensor` + `Normalize(CLIP_MEAN, CLIP_STD)` of an RGB image: `(3, H, W)` f32,
/// `(v / 255 - mean) / std` per channel in f32 as torchvision computes it.
pub fn normalize_clip(img: &RgbImage, dev: &Device) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let mut out = vec![0f32; 3 * h * w];
    for c in 0..3 {
        let plane = &mut out[c * h * w..(c + 1) * h * w];
        for (i, v) in plane.iter_mut().enumerate() {
            let x = f32::from(raw[i * 3 + c]) / 255.0;
            *v = (x - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
    Ok(Tensor::from_vec(out, (3, h, w), dev)?)
}

/// The SEED image transform: resize to `size × size` the PIL way, then CLIP-normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageTransform {
    /// Output side (224).
    pub size: u32,
}

impl Default for ImageTransform {
    fn default() -> Self {
        Self { size: 224 }
    }
}

impl ImageTransform {
    /// The resized image alone (`imgK.resized_uint8` of the goldens).
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage> {
        pil_resize_bilinear(img, self.size, self.size)
    }

    /// `pixel_values` `(3, size, size)` of an RGB image.
    pub fn pixel_values(&self, img: &RgbImage, dev: &Device) -> Result<Tensor> {
        normalize_clip(&self.resize(img)?, dev)
    }
}
