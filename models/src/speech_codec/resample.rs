//! Band-limited resampling exactly as `torchaudio.functional.resample` (torchaudio 2.1,
//! `_get_sinc_resample_kernel` + `_apply_sinc_resample_kernel`) with its defaults:
//! `sinc_interp_hann`, `lowpass_filter_width = 6`, `rolloff = 0.99`.
//!
//! Both rates are divided by their gcd (22050 → 16000 becomes 441 → 320); the polyphase
//! kernel is `(new, 1, 2·width + orig)` with `width = ⌈6·orig / (0.99·min(orig, new))⌉`,
//! evaluated in float32 in torchaudio's operation order (the waveform's dtype is float32);
//! the signal is zero-padded by `(width, width + orig)`, convolved with stride `orig`, the
//! phases interleaved and the result cut to `⌈new · len / orig⌉` samples.
//!
//! Shapes: `(…, T)` → `(…, T')`. Used by the speech encoder for input that is not 16 kHz.

use candle_core::{Tensor, D};

use crate::{Error, Result};

/// Default `lowpass_filter_width` of torchaudio.
pub const LOWPASS_FILTER_WIDTH: usize = 6;
/// Default `rolloff` of torchaudio.
pub const ROLLOFF: f64 = 0.99;
/// Largest polyphase kernel built (taps); co-prime rates such as 44101 → 16000 would need
/// hundreds of millions (torchaudio would try to allocate them).
pub const MAX_KERNEL_TAPS: usize = 1 << 25;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The polyphase kernel of torchaudio for one pair of rates.
#[derive(Debug, Clone, PartialEq)]
pub struct ResampleKernel {
    /// Row-major `(new, 2·width + orig)`.
    pub taps: Vec<f32>,
    /// Zero-crossings span on each side, in input samples.
    pub width: usize,
    /// Input rate divided by the gcd.
    pub orig: usize,
    /// Output rate divided by the gcd.
    pub new: usize,
}

/// The gcd-reduced polyphase kernel of `orig_freq → new_freq`.
pub fn sinc_resample_kernel(orig_freq: u32, new_freq: u32) -> Result<ResampleKernel> {
    if orig_freq == 0 || new_freq == 0 {
        return Err(Error::InvalidArgument(
            "sample rates must be positive".into(),
        ));
    }
    let g = gcd(orig_freq, new_freq);
    let (orig, new) = ((orig_freq / g) as usize, (new_freq / g) as usize);
    let lpw = LOWPASS_FILTER_WIDTH as f64;
    let base_freq = orig.min(new) as f64 * ROLLOFF;
    let width = (lpw * orig as f64 / base_freq).ceil() as usize;
    let taps = 2 * width + orig;
    if new.saturating_mul(taps) > MAX_KERNEL_TAPS {
        return Err(Error::Unsupported(format!(
            "resampling {orig_freq} Hz to {new_freq} Hz needs a {new}x{taps} filter; \
             convert the audio to a common sample rate first"
        )));
    }
    // float32 arithmetic in torchaudio's order (python scalars are cast to float32).
    let (base32, lpw32) = (base_freq as f32, LOWPASS_FILTER_WIDTH as f32);
    let (pi32, scale32) = (
        std::f64::consts::PI as f32,
        (base_freq / orig as f64) as f32,
    );
    let mut kernel = Vec::with_capacity(new * taps);
    for i in 0..new {
        let phase = -(i as f32) / new as f32;
        for j in 0..taps {
            let idx = (j as f32 - width as f32) / orig as f32;
            let t = ((phase + idx) * base32).clamp(-lpw32, lpw32);
            let window = ((t * pi32 / lpw32 / 2.0).cos()).powi(2);
            let t = t * pi32;
            let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
            kernel.push(sinc * (window * scale32));
        }
    }
    Ok(ResampleKernel {
        taps: kernel,
        width,
        orig,
        new,
    })
}

/// `torchaudio.functional.resample(waveform, orig_freq, new_freq)` on a float32 `(…, T)`
/// tensor (returned unchanged when the rates are equal).
pub fn resample(waveform: &Tensor, orig_freq: u32, new_freq: u32) -> Result<Tensor> {
    if orig_freq == new_freq {
        return Ok(waveform.clone());
    }
    let ResampleKernel {
        taps: kernel,
        width,
        orig,
        new,
    } = sinc_resample_kernel(orig_freq, new_freq)?;
    let dims = waveform.dims().to_vec();
    let len = *dims
        .last()
        .ok_or_else(|| Error::InvalidArgument("cannot resample a scalar".into()))?;
    if len == 0 {
        return Err(Error::InvalidArgument("cannot resample empty audio".into()));
    }
    let n_wavs = dims[..dims.len() - 1].iter().product::<usize>();
    let taps = 2 * width + orig;
    let kernel = Tensor::from_vec(kernel, (new, 1, taps), waveform.device())?;
    let xs = waveform
        .reshape((n_wavs, 1, len))?
        .pad_with_zeros(D::Minus1, width, width + orig)?;
    let ys = xs.conv1d(&kernel, 0, orig, 1, 1)?; // (n, new, frames)
    let ys = ys.transpose(1, 2)?.contiguous()?.reshape((n_wavs, ()))?;
    let target = (new * len).div_ceil(orig);
    let ys = ys.narrow(1, 0, target.min(ys.dim(1)?))?;
    let mut out_dims = dims;
    if let Some(last) = out_dims.last_mut() {
        *last = ys.dim(1)?;
    }
    Ok(ys.reshape(out_dims)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::Device;

    /// The kernel reproduces torchaudio's filter: reference values from torchaudio's
    /// formula evaluated with float32 rounding after every operation (as torch does for a
    /// float32 waveform), 22050 → 16000 (441 → 320, width 9, 459 taps).
    #[test]
    fn reproduces_torchaudio_kernel_22050_to_16000() {
        let kernel = sinc_resample_kernel(22050, 16000).unwrap();
        let k = &kernel.taps;
        let shape = (kernel.width, kernel.orig, kernel.new, k.len());
        assert_eq!(shape, (9, 441, 320, 320 * 459));
        let at = |i: usize, j: usize| k[i * 459 + j];
        let expected = [
            ((0, 9), 0.718_367_34_f32),
            ((0, 10), 0.237_690_15),
            ((0, 0), 3.473_351e-24),
            ((1, 9), 0.006_778_536_4),
            ((160, 230), 0.570_258_3),
            ((319, 458), 3.473_351e-24),
            ((319, 449), 0.631_099_3),
        ];
        for ((i, j), want) in expected {
            assert!(
                (at(i, j) - want).abs() < 2e-7,
                "kernel[{i}][{j}] = {} want {want}",
                at(i, j)
            );
        }
    }

    #[test]
    fn length_and_identity() {
        let xs = Tensor::zeros((1, 44100), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(resample(&xs, 22050, 16000).unwrap().dims(), [1, 32000]);
        let ys = resample(&xs, 16000, 16000).unwrap();
        assert_eq!(ys.dims(), [1, 44100]);
        let odd = Tensor::zeros((2, 3, 1001), candle_core::DType::F32, &Device::Cpu).unwrap();
        // ceil(320 * 1001 / 441) = 727
        assert_eq!(resample(&odd, 22050, 16000).unwrap().dims(), [2, 3, 727]);
        assert!(matches!(
            sinc_resample_kernel(44101, 16000),
            Err(Error::Unsupported(_))
        ));
        assert!(sinc_resample_kernel(0, 16000).is_err());
        assert_eq!(sinc_resample_kernel(48000, 16000).unwrap().taps.len(), 41);
    }
}
