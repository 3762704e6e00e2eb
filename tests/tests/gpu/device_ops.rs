//! The building blocks of the models on `MIO_TEST_DEVICE` against the same blocks on the
//! CPU, on the same random inputs and weights (part of `gpu_parity` only: on the CPU it
//! would compare the CPU with itself). When a model's golden test fails on a GPU, these say
//! which operation is wrong there.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use mio_models::speech_codec::{SConv1d, SConvTranspose1d, SLSTM};

/// Deterministic values in [-1, 1) (a linear congruential sequence).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn rand(shape: &[usize], seed: u64) -> Result<Tensor> {
    let n = shape.iter().product();
    Ok(Tensor::from_vec(values(n, seed), shape, &Device::Cpu)?)
}

thread_local! {
    /// Comparisons that failed in this test (each test runs on its own thread): every
    /// block is compared before the test fails, so one run names all the wrong ones.
    static FAILED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Fails the test if any comparison in it failed.
fn finish() -> Result<()> {
    let failed = FAILED.with(|f| std::mem::take(&mut *f.borrow_mut()));
    ensure!(failed.is_empty(), "{} differ: {failed:?}", failed.len());
    Ok(())
}

/// [`compare`], recording a failure instead of returning it.
fn check(what: &str, cpu: &Tensor, dev: &Tensor) -> Result<()> {
    if let Err(e) = compare(what, cpu, dev) {
        println!("FAILED {what}: {e}");
        FAILED.with(|f| f.borrow_mut().push(format!("{what}: {e}")));
    }
    Ok(())
}

/// Compares an output computed on the device with the CPU's: finite, and within
/// 1e-4 · (1 + max |cpu|).
fn compare(what: &str, cpu: &Tensor, dev: &Tensor) -> Result<()> {
    ensure!(
        cpu.dims() == dev.dims(),
        "{what}: shape {:?} vs {:?}",
        cpu.dims(),
        dev.dims()
    );
    let c = cpu.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let d = dev.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let scale = 1.0 + c.iter().fold(0f32, |m, v| m.max(v.abs()));
    let bad = d.iter().filter(|v| !v.is_finite()).count();
    let max = c
        .iter()
        .zip(&d)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("{what}: max |cpu - device| {max:.3e} (scale {scale:.2}), {bad} non-finite");
    ensure!(bad == 0, "{what}: {bad} non-finite values on the device");
    ensure!(max <= 1e-4 * scale, "{what}: differs by {max}");
    Ok(())
}

/// Runs `f` on CPU copies and on device copies of `inputs` and compares.
fn same(what: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    let dev = mio_tests::device()?;
    let on_dev = inputs
        .iter()
        .map(|t| Ok(t.to_device(&dev)?))
        .collect::<Result<Vec<_>>>()?;
    match f(&on_dev) {
        Ok(got) => check(what, &f(inputs)?, &got),
        Err(e) => {
            println!("FAILED {what}: {e}");
            FAILED.with(|fl| fl.borrow_mut().push(format!("{what}: {e}")));
            Ok(())
        }
    }
}

#[test]
fn raw_convolutions() -> Result<()> {
    let xs = rand(&[2, 8, 100], 1)?;
    for (k, stride, dil, pad) in [
        (7, 1, 1, 0),
        (3, 1, 3, 0),
        (8, 4, 1, 0),
        (1, 1, 1, 0),
        (3, 2, 1, 1),
    ] {
        let w = rand(&[6, 8, k], 2)?;
        same(
            &format!("conv1d k{k} s{stride} d{dil} p{pad}"),
            &[xs.clone(), w],
            |t| Ok(t[0].conv1d(&t[1], pad, stride, dil, 1)?),
        )?;
    }
    // (candle's own CUDA conv_transpose1d differs from its CPU one at batch 2, k 8, stride
    // 4; the codec's transposed convolutions do not use it: SConvTranspose1d below.)
    let img = rand(&[2, 4, 16, 16], 4)?;
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (1, 1, 0)] {
        let w = rand(&[8, 4, k, k], 5)?;
        same(
            &format!("conv2d k{k} s{stride} p{pad}"),
            &[img.clone(), w],
            |t| Ok(t[0].conv2d(&t[1], pad, stride, 1, 1)?),
        )?;
    }
    finish()
}

#[test]
fn element_wise_and_reductions() -> Result<()> {
    let x = (rand(&[3, 7, 33], 6)? * 4.0)?;
    same("elu (candle)", &[x.clone()], |t| Ok(t[0].elu(1.0)?))?;
    same("elu (mio)", &[x.clone()], |t| {
        Ok(mio_models::activation::elu(&t[0])?)
    })?;
    same("gelu_erf (mio)", &[x.clone()], |t| {
        Ok(mio_models::activation::gelu_erf(&t[0])?)
    })?;
    same("geglu (mio)", &[x.narrow(2, 0, 32)?], |t| {
        Ok(mio_models::activation::geglu(&t[0])?)
    })?;
    same("silu", &[x.clone()], |t| Ok(candle_nn::ops::silu(&t[0])?))?;
    same("sigmoid", &[x.clone()], |t| {
        Ok(candle_nn::ops::sigmoid(&t[0])?)
    })?;
    same("tanh", &[x.clone()], |t| Ok(t[0].tanh()?))?;
    same("exp sqrt", &[x.clone()], |t| Ok(t[0].exp()?.sqrt()?))?;
    same("softmax_last_dim", &[x.clone()], |t| {
        Ok(candle_nn::ops::softmax_last_dim(&t[0])?)
    })?;
    let (w, b) = (rand(&[33], 7)?, rand(&[33], 8)?);
    same("layer_norm", &[x.clone(), w, b], |t| {
        Ok(candle_nn::ops::layer_norm(&t[0], &t[1], &t[2], 1e-5)?)
    })?;
    same("sum_keepdim sqrt", &[x.clone()], |t| {
        Ok(t[0].sqr()?.sum_keepdim((1, 2))?.sqrt()?)
    })?;
    for n in [1, 4, 7, 16, 17] {
        same(
            &format!("norm::sum_keepdim of {n}"),
            &[x.narrow(2, 0, n)?],
            |t| Ok(mio_models::norm::sum_keepdim(&t[0], 2)?),
        )?;
    }
    let g = (rand(&[8], 9)?, rand(&[8], 10)?);
    let img = rand(&[2, 8, 6, 6], 11)?;
    same("group_norm (mio)", &[img.clone(), g.0, g.1], |t| {
        let gn = mio_models::norm::GroupNorm::new(t[1].clone(), t[2].clone(), 8, 4, 1e-5)?;
        Ok(gn.forward(&t[0])?)
    })?;
    same("upsample_nearest2d", &[img.clone()], |t| {
        Ok(t[0].upsample_nearest2d(12, 12)?)
    })?;
    same("cat pad index_select", &[x.clone()], |t| {
        let idx = Tensor::from_vec(vec![2u32, 1, 0, 1, 2, 3], 6, t[0].device())?;
        let a = t[0].contiguous()?.index_select(&idx, D::Minus1)?;
        let b = t[0].pad_with_zeros(D::Minus1, 2, 3)?;
        Ok(Tensor::cat(&[&a, &b], 2)?)
    })?;
    finish()
}

#[test]
fn matrix_products() -> Result<()> {
    let x = rand(&[2, 5, 8], 12)?;
    let w = rand(&[6, 8], 13)?;
    same(
        "broadcast_matmul",
        &[x.clone(), w.t()?.contiguous()?],
        |t| Ok(t[0].broadcast_matmul(&t[1])?),
    )?;
    same("matmul transposed rhs", &[x.clone(), w.clone()], |t| {
        Ok(t[0].matmul(&t[1].broadcast_left(2)?.t()?)?)
    })?;
    same("matmul narrowed lhs", &[x.clone(), w.clone()], |t| {
        let last = t[0].narrow(1, 4, 1)?.squeeze(1)?.contiguous()?;
        Ok(last.matmul(&t[1].t()?)?)
    })?;
    let (q, k, v) = (
        rand(&[2, 64, 16], 14)?,
        rand(&[2, 77, 16], 15)?,
        rand(&[2, 77, 16], 16)?,
    );
    same("attention_rows", &[q, k, v], |t| {
        Ok(mio_models::image_decoder::attention_rows(
            &t[0], &t[1], &t[2], 32,
        )?)
    })?;
    finish()
}

/// A VarBuilder over `tensors` (made on the CPU) on `dev`.
fn var_builder(tensors: &HashMap<String, Tensor>, dev: &Device) -> VarBuilder<'static> {
    VarBuilder::from_tensors(tensors.clone(), DType::F32, dev)
}

fn weights(names: &[(&str, &[usize])], seed: u64) -> Result<HashMap<String, Tensor>> {
    names
        .iter()
        .enumerate()
        .map(|(i, (n, s))| Ok((n.to_string(), (rand(s, seed + i as u64)? * 0.3)?)))
        .collect()
}

#[test]
fn speech_blocks() -> Result<()> {
    let dev = mio_tests::device()?;
    let xs = rand(&[1, 4, 120], 20)?;
    for (k, stride, dil) in [(7, 1, 1), (3, 1, 3), (8, 4, 1), (1, 1, 1)] {
        let w = weights(
            &[
                ("conv.conv.weight_v", &[6, 4, k]),
                ("conv.conv.weight_g", &[6, 1, 1]),
                ("conv.conv.bias", &[6]),
            ],
            21,
        )?;
        let run = |d: &Device| -> Result<Tensor> {
            let conv = SConv1d::new(4, 6, k, stride, dil, var_builder(&w, d))?;
            Ok(conv.forward(&xs.to_device(d)?)?)
        };
        check(
            &format!("SConv1d k{k} s{stride} d{dil}"),
            &run(&Device::Cpu)?,
            &run(&dev)?,
        )?;
    }
    let w = weights(
        &[
            ("convtr.convtr.weight_v", &[4, 3, 8]),
            ("convtr.convtr.weight_g", &[4, 1, 1]),
            ("convtr.convtr.bias", &[3]),
        ],
        30,
    )?;
    let run = |d: &Device| -> Result<Tensor> {
        let conv = SConvTranspose1d::new(4, 3, 8, 4, var_builder(&w, d))?;
        Ok(conv.forward(&xs.to_device(d)?)?)
    };
    check("SConvTranspose1d k8 s4", &run(&Device::Cpu)?, &run(&dev)?)?;
    for bidirectional in [false, true] {
        let dim = 4;
        let mut names: Vec<(String, Vec<usize>)> = vec![];
        for l in 0..2 {
            let in_dim = if l == 0 || !bidirectional {
                dim
            } else {
                2 * dim
            };
            for sfx in ["", "_reverse"] {
                if sfx == "_reverse" && !bidirectional {
                    continue;
                }
                names.push((format!("lstm.weight_ih_l{l}{sfx}"), vec![4 * dim, in_dim]));
                names.push((format!("lstm.weight_hh_l{l}{sfx}"), vec![4 * dim, dim]));
                names.push((format!("lstm.bias_ih_l{l}{sfx}"), vec![4 * dim]));
                names.push((format!("lstm.bias_hh_l{l}{sfx}"), vec![4 * dim]));
            }
        }
        let refs: Vec<(&str, &[usize])> = names
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_slice()))
            .collect();
        let w = weights(&refs, 40)?;
        let run = |d: &Device| -> Result<Tensor> {
            let lstm = SLSTM::new(dim, 2, bidirectional, var_builder(&w, d))?;
            Ok(lstm.forward(&xs.to_device(d)?)?)
        };
        check(
            &format!("SLSTM bidirectional={bidirectional}"),
            &run(&Device::Cpu)?,
            &run(&dev)?,
        )?;
    }
    finish()
}

/// Every tensor of the tiny model's codec and UNet files reads the same on the device.
#[test]
fn weight_files_load_the_same() -> Result<()> {
    use mio_models::weights_file::WeightFile;
    let dev = mio_tests::device()?;
    let model = mio_tests::tiny_model();
    let unclip = model.join("stable-diffusion-2-1-unclip");
    for path in [
        model.join("SpeechTokenizer/SpeechTokenizer.pt"),
        unclip.join("unet/diffusion_pytorch_model.safetensors"),
        unclip.join("vae/diffusion_pytorch_model.safetensors"),
        mio_tests::fixtures().join("unclip-bin/unet/diffusion_pytorch_model.bin"),
    ] {
        let file = WeightFile::open(&path)?;
        let names: Vec<String> = file.names().map(str::to_string).collect();
        let mut worst = (0f32, String::new());
        for name in &names {
            let cpu = file.tensor(name, &Device::Cpu)?.to_dtype(DType::F32)?;
            let got = file.tensor(name, &dev)?.to_dtype(DType::F32)?;
            let diff = (cpu - got.to_device(&Device::Cpu)?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            if !(diff <= worst.0) {
                worst = (diff, name.clone());
            }
        }
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        println!("{file_name}: {} tensors, worst {:?}", names.len(), worst);
        if !(worst.0 == 0.0) {
            FAILED.with(|f| f.borrow_mut().push(format!("{file_name}: {worst:?}")));
        }
    }
    finish()
}

/// The tiny SpeechTokenizer's encoder layer by layer with its real weights: each layer gets
/// the CPU's output of the previous one on both sides, so the first wrong layer shows.
#[test]
fn speech_encoder_layers_with_real_weights() -> Result<()> {
    use mio_models::speech_codec::{Config, SEANetResnetBlock, SpeechTokenizerConfig};
    use mio_models::weights_file::WeightFile;
    let dev = mio_tests::device()?;
    let dir = mio_tests::tiny_model().join("SpeechTokenizer");
    let cfg = Config::from_file_config(&SpeechTokenizerConfig::load(&dir.join("config.json"))?)?;
    let pt = dir.join("SpeechTokenizer.pt");
    let vbs = [Device::Cpu, dev.clone()].map(|d| {
        Ok::<_, anyhow::Error>(
            WeightFile::open(&pt)?
                .into_var_builder(DType::F32, &d)
                .pp("encoder")
                .pp("model"),
        )
    });
    let [Ok(vb_cpu), Ok(vb_dev)] = vbs else {
        anyhow::bail!("cannot open {pt:?}")
    };
    let gold =
        candle_core::safetensors::load(mio_tests::golden("speech.safetensors"), &Device::Cpu)?;
    let mut x = gold["s16k.model_input"].clone();
    // Stage `i` of the encoder on both devices from the CPU's input.
    let mut stage =
        |what: String, f: &dyn Fn(&VarBuilder, &Tensor) -> Result<Tensor>| -> Result<()> {
            let cpu = f(&vb_cpu, &x)?;
            match f(&vb_dev, &x.to_device(&dev)?) {
                Ok(got) => check(&what, &cpu, &got)?,
                Err(e) => {
                    check(&what, &cpu, &Tensor::zeros(1, DType::F32, &Device::Cpu)?).and(Err(e))?
                }
            }
            x = cpu;
            Ok(())
        };
    let nf = cfg.n_filters;
    let mut i = 0;
    stage(format!("encoder.{i} conv"), &|vb, x| {
        Ok(SConv1d::new(cfg.channels, nf, cfg.kernel_size, 1, 1, vb.pp(0))?.forward(x)?)
    })?;
    i += 1;
    let mut mult = 1;
    for &ratio in cfg.ratios.iter().rev() {
        for j in 0..cfg.n_residual_layers {
            let dil = cfg.dilation_base.pow(j as u32);
            let k = i;
            stage(format!("encoder.{k} resblock"), &|vb, x| {
                let b = SEANetResnetBlock::new(
                    mult * nf,
                    cfg.residual_kernel_size,
                    dil,
                    cfg.compress,
                    vb.pp(k),
                )?;
                Ok(b.forward(x)?)
            })?;
            i += 1;
        }
        stage(format!("encoder.{i} elu"), &|_, x| {
            Ok(mio_models::activation::elu(x)?)
        })?;
        i += 1;
        let k = i;
        stage(format!("encoder.{k} strided conv"), &|vb, x| {
            Ok(
                SConv1d::new(mult * nf, mult * nf * 2, ratio * 2, ratio, 1, vb.pp(k))?
                    .forward(x)?,
            )
        })?;
        i += 1;
        mult *= 2;
    }
    if cfg.lstm_layers > 0 {
        let k = i;
        stage(format!("encoder.{k} lstm"), &|vb, x| {
            Ok(SLSTM::new(
                mult * nf,
                cfg.lstm_layers,
                cfg.encoder_bidirectional,
                vb.pp(k),
            )?
            .forward(x)?)
        })?;
    }
    finish()
}
