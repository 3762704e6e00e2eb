//! Latent previews: a cheap picture of the diffusion latents while denoising runs.
//!
//! No upstream counterpart (diffusers' pipelines have a `callback` but draw no preview). The
//! preview is a fixed *linear* map of the 4 latent channels to RGB at latent resolution
//! (1/8 of the picture a side: 96×96 for the real 768×768 decoder, 8×8 on the tiny
//! fixture), not a VAE decode: one 4×3 matrix product per pixel, microseconds against a UNet
//! step. The coefficients are the widely used least-squares fit of Stable Diffusion's VAE
//! (SD 1.x/2.x share the KL-f8 latent space), applied to the loop's scaled latents; the result
//! is about [-1, 1] and mapped to bytes like the final picture. On random weights (the tiny
//! fixture) the preview is only structurally meaningful.
//!
//! Shapes: latents 1 × 4 × h × w → [`RgbImage`] of w × h.

use candle_core::{DType, Tensor};

use super::pipeline::RgbImage;
use crate::{Error, Result};

/// Latent channel → (R, G, B) contribution.
const LATENT_RGB: [[f32; 3]; 4] = [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
];

/// The linear RGB approximation of `latents` (1 × 4 × h × w), one pixel per latent cell.
pub fn latent_preview(latents: &Tensor) -> Result<RgbImage> {
    let (b, c, h, w) = latents.dims4()?;
    if b != 1 || c != LATENT_RGB.len() {
        return Err(Error::InvalidArgument(format!(
            "a latent preview needs 1 × 4 × h × w latents, got {:?}",
            latents.dims()
        )));
    }
    let values: Vec<f32> = latents
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let plane = h * w;
    let mut data = Vec::with_capacity(plane * 3);
    for p in 0..plane {
        let mut px = [0f32; 3];
        for (ch, weights) in LATENT_RGB.iter().enumerate() {
            let v = values[ch * plane + p];
            px.iter_mut().zip(weights).for_each(|(o, w)| *o += v * w);
        }
        data.extend(px.map(to_byte));
    }
    Ok(RgbImage {
        width: w,
        height: h,
        data,
    })
}

/// [-1, 1] → 0..=255, as the final picture (`(x/2 + 0.5)` clamped, × 255, rounded); NaN → 0.
fn to_byte(v: f32) -> u8 {
    let x = (v * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0;
    if x.is_nan() {
        0
    } else {
        x.round() as u8
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    #[test]
    fn preview_is_the_linear_map_at_latent_resolution() {
        // Channel 0 = 1 everywhere, others 0 → (0.298, 0.207, 0.208) per pixel.
        let mut v = vec![0f32; 4 * 2 * 3];
        v[..6].fill(1.0);
        let t = Tensor::from_vec(v, (1, 4, 2, 3), &Device::Cpu).unwrap();
        let img = latent_preview(&t).unwrap();
        assert_eq!((img.width, img.height, img.data.len()), (3, 2, 18));
        let want = [to_byte(0.298), to_byte(0.207), to_byte(0.208)];
        assert_eq!(&img.data[..3], &want);
        assert!(img.data.chunks(3).all(|px| px == want));
        // Zero latents are mid-grey.
        let zero = Tensor::zeros((1, 4, 1, 1), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(latent_preview(&zero).unwrap().data, vec![128, 128, 128]);
        // Wrong channel count is an error, not a panic.
        let bad = Tensor::zeros((1, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(latent_preview(&bad).is_err());
        assert_eq!(to_byte(f32::NAN), 0);
    }
}
