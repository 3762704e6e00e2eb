//! The two stateless building blocks of the LM: bias-free linear layers and RMSNorm.
//!
//! * [`Linear`] ports `nn.Linear(bias=False)`: `(…, in) -> (…, out)`, weight `(out, in)`.
//!   It is the one closed enum through which every projection goes, dense (any float dtype,
//!   from safetensors or an F32/F16 GGUF) or ggml-quantized (`QMatMul`, from GGUF), so one
//!   model file serves both (CONVENTIONS rule 7). On the CPU of an x86-64 build with AVX2,
//!   `q4_K` weights are repacked at load time and `q6_K` weights run through our own kernels
//!   ([`super::qgemv`]); everything else goes through `QMatMul`.
//! * [`LlamaRmsNorm`] ports transformers 4.34 `LlamaRMSNorm`: `(…, d) -> (…, d)`, weight
//!   `(d)`. Deviation: the weight is kept in f32 and applied before casting back to the
//!   activation dtype (upstream multiplies after the cast); identical in f32.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Module, Tensor};

use super::qgemv::{PackedQ4K, QGemv};
use crate::Result;

/// A bias-free linear layer, dense or quantized.
#[derive(Debug, Clone)]
pub enum Linear {
    /// A dense `(out, in)` weight. Inputs of another dtype are cast to it and back.
    Dense(Tensor),
    /// A ggml-quantized `(out, in)` weight; inputs are cast to f32 and back.
    Quantized(QMatMul),
    /// A `q4_K` weight repacked for our AVX2 kernel (CPU); inputs are cast to f32 and back.
    PackedQ4K(std::sync::Arc<PackedQ4K>),
}

impl Linear {
    /// A dense layer from its `(out, in)` weight.
    pub fn dense(weight: Tensor) -> Self {
        Linear::Dense(weight)
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let in_dtype = xs.dtype();
        match self {
            Linear::Dense(w) => {
                // CUDA's matmul takes only (batch-)contiguous or transposed operands; the
                // last-position rows of a batch are a strided view.
                let xs = xs.to_dtype(w.dtype())?.contiguous()?;
                let w = match *xs.dims() {
                    [b1, b2, _, _] => w.broadcast_left((b1, b2))?.t()?,
                    [b, _, _] => w.broadcast_left(b)?.t()?,
                    _ => w.t()?,
                };
                xs.matmul(&w)?.to_dtype(in_dtype)
            }
            Linear::Quantized(q) => {
                let xs = xs.to_dtype(DType::F32)?.contiguous()?;
                let ys = match QGemv::for_matmul(q, xs.device()) {
                    Some(op) => xs.apply_op1_no_bwd(&op)?,
                    None => q.forward(&xs)?,
                };
                ys.to_dtype(in_dtype)
            }
            Linear::PackedQ4K(p) => {
                let xs = xs.to_dtype(DType::F32)?.contiguous()?;
                p.forward(&xs)?.to_dtype(in_dtype)
            }
        }
    }
}

/// Llama's RMSNorm: `w * x / sqrt(mean(x²) + eps)`, computed in f32.
#[derive(Debug, Clone)]
pub struct LlamaRmsNorm {
    weight: Tensor,
    eps: f32,
}

impl LlamaRmsNorm {
    /// From its weight (any float dtype; kept in f32) and epsilon.
    pub fn new(weight: Tensor, eps: f64) -> Result<Self> {
        Ok(LlamaRmsNorm {
            weight: weight.to_dtype(DType::F32)?,
            eps: eps as f32,
        })
    }
}

impl Module for LlamaRmsNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        candle_nn::ops::rms_norm(&xs, &self.weight, self.eps)?.to_dtype(dtype)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    #[test]
    fn dense_and_quantized_agree() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (8, 64), &dev).unwrap();
        let xs = Tensor::randn(0f32, 1., (2, 3, 64), &dev).unwrap();
        let dense = Linear::dense(w.clone()).forward(&xs).unwrap();
        let q = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let quant = Linear::Quantized(q).forward(&xs).unwrap();
        assert_eq!(quant.dims(), &[2, 3, 8]);
        let scale = dense
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = (dense - quant).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f32>().unwrap();
        // Q8_0 rounds weights and (inside QMatMul) activations to 8 bits per 32-block.
        assert!(diff < 0.02 * scale, "{diff} vs {scale}");
    }

    #[test]
    fn packed_q4k_and_q6k_agree_with_candle_qmatmul_in_f16_and_f32() {
        // On an AVX2 build the q6_K Linear runs our row kernel; the packed q4_K Linear is
        // built here the way the GGUF loader builds it (its portable kernel elsewhere).
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (24, 512), &dev).unwrap();
        for dtype in [DType::F32, DType::F16] {
            let xs = Tensor::randn(0f32, 1., (2, 3, 512), &dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            for g in [GgmlDType::Q4K, GgmlDType::Q6K] {
                let mm = QMatMul::from_qtensor(QTensor::quantize(&w, g).unwrap()).unwrap();
                let QMatMul::QTensor(qt) = &mm else {
                    unreachable!("k-quants stay quantized")
                };
                let packed = match g {
                    GgmlDType::Q4K => Linear::PackedQ4K(std::sync::Arc::new(
                        PackedQ4K::pack(&qt.data().unwrap(), 24, 512).unwrap(),
                    )),
                    _ => Linear::Quantized(mm.clone()),
                };
                let ours = packed.forward(&xs).unwrap();
                assert_eq!((ours.dims(), ours.dtype()), (&[2, 3, 24][..], dtype));
                let theirs = mm
                    .forward(&xs.to_dtype(DType::F32).unwrap())
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                let diff = (ours.to_dtype(DType::F32).unwrap()
                    - theirs.to_dtype(DType::F32).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
                // Same integer sums; f16 outputs round at 1/1024 of magnitudes up to ~60.
                let tol = if dtype == DType::F16 { 0.1 } else { 1e-3 };
                assert!(diff <= tol, "{g:?} {dtype:?}: {diff}");
            }
        }
    }

    #[test]
    fn rms_norm_matches_definition() {
        let dev = Device::Cpu;
        let xs = Tensor::new(&[[3f32, 4.]], &dev).unwrap();
        let norm = LlamaRmsNorm::new(Tensor::new(&[1f32, 2.], &dev).unwrap(), 0.).unwrap();
        let ys = norm.forward(&xs).unwrap().to_vec2::<f32>().unwrap();
        let rms = (12.5f32).sqrt();
        assert!((ys[0][0] - 3. / rms).abs() < 1e-6 && (ys[0][1] - 8. / rms).abs() < 1e-6);
    }
}
