//! Golden parity of the unCLIP image decoder (`models/src/image_decoder`) against the
//! reference `ImageTokenizer.decode` (diffusers 0.20.2) on the tiny fixture model:
//! `golden/image_encode.safetensors` (decoder-side embedding) and
//! `golden/image_decode.safetensors` (noising, every UNet call, scheduler steps, VAE, image).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use anyhow::{ensure, Result};
use candle_core::{DType, Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

use mio_models::image_decoder::{
    empty_prompt_ids, encode_empty_prompt, weights_sha256, AutoencoderKl, DdpmNoising,
    DecodeOptions, PndmScheduler, PromptSource, SchedulerConfig, SeedDecodeHead,
    StableUnclipImageNormalizer, UNet2DConditionConfig, UNet2DConditionModel, UnclipDecoder,
    PROMPT_CACHE_DIR,
};
use mio_tests::{golden, tiny_model};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

/// A golden file's tensors, on the device the models run on (they are fed in as inputs).
fn load(name: &str) -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        golden(name),
        &mio_tests::device()?,
    )?)
}

/// Asserts `|got - want| <= ATOL + RTOL |want|` elementwise; returns the max abs error.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<f32> {
    ensure!(
        got.dims() == want.dims(),
        "{what}: shape {:?} vs {:?}",
        got.dims(),
        want.dims()
    );
    let got = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let want = want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut max = 0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = (g - w).abs();
        ensure!(
            err <= ATOL + RTOL * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err})"
        );
        max = max.max(err);
    }
    println!("{what}: max abs err {max:e}");
    Ok(max)
}

fn decode_head() -> Result<SeedDecodeHead> {
    let path = tiny_model().join("seed-tokenizer-2/seed_quantizer.pt");
    Ok(SeedDecodeHead::load(&path, &mio_tests::device()?)?)
}

#[test]
fn decode_head_matches_golden_embedding() -> Result<()> {
    let head = decode_head()?;
    let g = load("image_encode.safetensors")?;
    for k in ["img0", "img1"] {
        let codes = g[&format!("{k}.codes")].to_dtype(DType::U32)?;
        let entries = head.codebook_entries(&codes)?;
        assert_close(
            "codebook_entries",
            &entries,
            &g[&format!("{k}.codebook_entries")],
        )?;
        let up = head.decode_task(&entries)?;
        assert_close(
            "decode_task_out",
            &up,
            &g[&format!("{k}.dec.decode_task_out")],
        )?;
        let blocks = head.blocks(&up)?;
        assert_close(
            "blocks_image_out",
            &blocks,
            &g[&format!("{k}.dec.blocks_image_out")],
        )?;
        let down = head.image_down(&blocks)?;
        assert_close(
            "image_down_out",
            &down,
            &g[&format!("{k}.dec.image_down_out")],
        )?;
        let emb = head.forward(&codes)?;
        assert_close("image_embeds", &emb, &g[&format!("{k}.image_embeds")])?;
    }
    let dec = load("image_decode.safetensors")?;
    let emb = head.forward(&dec["codes"].to_dtype(DType::U32)?)?;
    assert_close("decode image_embeds", &emb, &dec["image_embeds"])?;
    Ok(())
}

#[test]
fn decode_head_rejects_out_of_range_codes() -> Result<()> {
    let head = decode_head()?;
    let n = head.config().n_embed as u32;
    let codes = Tensor::new(&[[0u32, n]], &mio_tests::device()?)?;
    ensure!(head.forward(&codes).is_err());
    Ok(())
}

fn unclip_dir() -> std::path::PathBuf {
    tiny_model().join("stable-diffusion-2-1-unclip")
}

fn pndm() -> Result<PndmScheduler> {
    let cfg = SchedulerConfig::load(&unclip_dir().join("scheduler/scheduler_config.json"))?;
    Ok(PndmScheduler::new(cfg)?)
}

#[test]
fn noised_image_embedding_matches_golden() -> Result<()> {
    let dir = unclip_dir();
    let g = load("image_decode.safetensors")?;
    let cfg = SchedulerConfig::load(&dir.join("image_noising_scheduler/scheduler_config.json"))?;
    let noising = DdpmNoising::new(&cfg)?;
    let norm = StableUnclipImageNormalizer::load(
        &dir.join("image_normalizer"),
        512,
        &mio_tests::device()?,
    )?;
    let got = norm.noise_image_embeddings(&noising, &g["image_embeds"], &g["noise"], 0)?;
    assert_close(
        "noised_image_embeds_with_level",
        &got,
        &g["noised_image_embeds_with_level"],
    )?;
    Ok(())
}

#[test]
fn pndm_timesteps_and_steps_match_golden() -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let mut s = pndm()?;
    s.set_timesteps(3)?;
    let want: Vec<i64> = g["timesteps"].to_vec1()?;
    let got: Vec<i64> = s.timesteps().iter().map(|&t| t as i64).collect();
    assert_eq!(got, want);
    let mut latents = g["init_latents"].clone();
    for (i, &t) in s.timesteps().to_vec().iter().enumerate() {
        let out = &g[&format!("unet_call{i}.out")];
        let (uncond, cond) = (out.get(0)?.unsqueeze(0)?, out.get(1)?.unsqueeze(0)?);
        let guided = (&uncond + ((cond - &uncond)? * 10.0)?)?;
        assert_close(
            "guided",
            &guided,
            &g[&format!("step{i}.guided_model_output")],
        )?;
        // Each step from the golden input, so errors do not accumulate.
        let input = if i == 0 {
            latents.clone()
        } else {
            g[&format!("step{}.prev_sample", i - 1)].clone()
        };
        latents = s.step(&g[&format!("step{i}.guided_model_output")], t, &input)?;
        assert_close("prev_sample", &latents, &g[&format!("step{i}.prev_sample")])?;
    }
    assert_close("final_latents", &latents, &g["final_latents"])?;
    Ok(())
}

#[test]
fn unet_calls_match_golden() -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let unet = UNet2DConditionModel::load(
        &unclip_dir().join("unet"),
        DType::F32,
        &mio_tests::device()?,
    )?;
    let timesteps: Vec<i64> = g["timesteps"].to_vec1()?;
    for (i, &t) in timesteps.iter().enumerate() {
        let ctx = &g["unet_call0.encoder_hidden_states"];
        let out = unet.forward(
            &g[&format!("unet_call{i}.sample")],
            t as usize,
            ctx,
            &g[&format!("unet_call{i}.class_labels")],
        )?;
        assert_close(
            &format!("unet_call{i}.out"),
            &out,
            &g[&format!("unet_call{i}.out")],
        )?;
    }
    Ok(())
}

fn decoder() -> Result<UnclipDecoder> {
    Ok(UnclipDecoder::load(&tiny_model(), &mio_tests::device()?)?)
}

fn golden_opts() -> DecodeOptions {
    DecodeOptions {
        steps: 3,
        guidance: 10.0,
        seed: 0,
        preview_every: 0,
    }
}

#[test]
fn vae_decode_matches_golden() -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let vae = AutoencoderKl::load(&unclip_dir().join("vae"), DType::F32, &mio_tests::device()?)?;
    let out = vae.decode(&g["final_latents"])?;
    assert_close("vae_decode_out", &out, &g["vae_decode_out"])?;
    Ok(())
}

#[test]
fn full_decode_with_pinned_latents_matches_golden() -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let dec = decoder()?;
    let codes: Vec<u32> = g["codes"].to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    let embeds = dec.image_embedding(&codes)?;
    assert_close("image_embeds", &embeds, &g["image_embeds"])?;
    let mut seen = Vec::new();
    let cancel = AtomicBool::new(false);
    let out = dec.decode_pinned(
        &embeds,
        &g["init_latents"],
        &g["noise"],
        &golden_opts(),
        &mut |s| seen.push((s.step, s.total, s.timestep)),
        &cancel,
    )?;
    assert_eq!(seen, vec![(1, 4, 667), (2, 4, 334), (3, 4, 334), (4, 4, 1)]);
    assert_close(
        "noised",
        &out.noised_image_embeds,
        &g["noised_image_embeds_with_level"],
    )?;
    assert_close("final_latents", &out.final_latents, &g["final_latents"])?;
    assert_close("vae_decode_out", &out.vae_out, &g["vae_decode_out"])?;
    assert_close("image_float", &out.image_float, &g["image_float"])?;
    let want: Vec<u8> = g["image_uint8"].flatten_all()?.to_vec1()?;
    assert_eq!((out.image.width, out.image.height), (64, 64));
    let max = out
        .image
        .data
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let exact = out
        .image
        .data
        .iter()
        .zip(&want)
        .filter(|(a, b)| a == b)
        .count();
    println!("uint8: max diff {max}, {exact}/{} exact", want.len());
    assert!(max <= 1, "uint8 image differs by {max}");
    Ok(())
}

#[test]
fn decode_reports_progress_and_cancels() -> Result<()> {
    let dec = decoder()?;
    let codes: Vec<u32> = (0..32).collect();
    let cancel = AtomicBool::new(false);
    let mut steps = 0;
    let img = dec.decode(&codes, &golden_opts(), &mut |_| steps += 1, &cancel)?;
    assert_eq!(steps, 4);
    assert_eq!(img.data.len(), 64 * 64 * 3);
    // Same seed, same image; another seed, another image.
    let again = dec.decode(&codes, &golden_opts(), &mut |_| {}, &cancel)?;
    assert_eq!(img, again);
    let other = DecodeOptions {
        seed: 1,
        ..golden_opts()
    };
    assert_ne!(img, dec.decode(&codes, &other, &mut |_| {}, &cancel)?);
    // Without guidance (scale <= 1) one unguided UNet call per step.
    let plain = DecodeOptions {
        guidance: 1.0,
        ..golden_opts()
    };
    assert_ne!(img, dec.decode(&codes, &plain, &mut |_| {}, &cancel)?);
    // An image is exactly 32 codes.
    assert!(dec
        .decode(&codes[..31], &golden_opts(), &mut |_| {}, &cancel)
        .is_err());
    // Cancel after the first step: the decoder stops before the second.
    let mut calls = 0;
    let err = dec
        .decode(
            &codes,
            &golden_opts(),
            &mut |_| {
                calls += 1;
                cancel.store(true, Ordering::Relaxed);
            },
            &cancel,
        )
        .unwrap_err();
    assert!(matches!(err, mio_models::Error::Cancelled), "{err}");
    assert_eq!(calls, 1);
    Ok(())
}

#[test]
fn previews_come_every_few_steps_and_change_nothing() -> Result<()> {
    let dec = decoder()?;
    let codes: Vec<u32> = (0..32).collect();
    let cancel = AtomicBool::new(false);
    let plain = dec.decode(&codes, &golden_opts(), &mut |_| {}, &cancel)?;
    let opts = DecodeOptions {
        preview_every: 3,
        ..golden_opts()
    };
    let mut previews = vec![];
    let img = dec.decode(
        &codes,
        &opts,
        &mut |s| previews.extend(s.preview.map(|p| (s.step, p.width, p.height, p.data.len()))),
        &cancel,
    )?;
    assert_eq!(img, plain, "previews do not touch the decode");
    // 4 UNet calls: step 3 and the last one, at latent resolution (64 / 8).
    assert_eq!(previews, vec![(3, 8, 8, 192), (4, 8, 8, 192)]);
    Ok(())
}

#[test]
fn empty_prompt_embedding_matches_golden() -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let ids = empty_prompt_ids(&unclip_dir().join("tokenizer"), 77)?;
    let want: Vec<i64> = g["empty_prompt_input_ids"].flatten_all()?.to_vec1()?;
    assert_eq!(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), want);
    let embeds = encode_empty_prompt(&unclip_dir(), &mio_tests::device()?)?;
    assert_close("empty_prompt_embeds", &embeds, &g["empty_prompt_embeds"])?;
    let stored = candle_core::safetensors::load(
        unclip_dir().join("empty_prompt_embeds.safetensors"),
        &Device::Cpu,
    )?;
    assert_close(
        "stored empty_prompt_embeds",
        &embeds,
        &stored["empty_prompt_embeds"],
    )?;
    Ok(())
}

#[test]
fn unet_loads_from_bin_like_safetensors() -> Result<()> {
    // `fixtures/unclip-bin/unet` = the same tensors as a torch.save `.bin` (make_bin.py).
    let g = load("image_decode.safetensors")?;
    let bin_dir = mio_tests::fixtures().join("unclip-bin/unet");
    let path = mio_models::image_decoder::component_weights(&bin_dir)?;
    assert!(path.ends_with("diffusion_pytorch_model.bin"));
    let from_bin = UNet2DConditionModel::load(&bin_dir, DType::F32, &mio_tests::device()?)?;
    let from_st = UNet2DConditionModel::load(
        &unclip_dir().join("unet"),
        DType::F32,
        &mio_tests::device()?,
    )?;
    let args = (
        &g["unet_call1.sample"],
        334,
        &g["unet_call0.encoder_hidden_states"],
        &g["unet_call1.class_labels"],
    );
    let a = from_bin.forward(args.0, args.1, args.2, args.3)?;
    let b = from_st.forward(args.0, args.1, args.2, args.3)?;
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert_eq!(diff, 0.0, ".bin and safetensors UNets differ");
    Ok(())
}

#[test]
fn missing_unet_weights_are_reported() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = UNet2DConditionModel::load(dir.path(), DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
    std::fs::copy(
        unclip_dir().join("unet/config.json"),
        dir.path().join("config.json"),
    )?;
    let err = UNet2DConditionModel::load(dir.path(), DType::F32, &Device::Cpu).unwrap_err();
    assert!(matches!(err, mio_models::Error::MissingFile(_)), "{err}");
    Ok(())
}

/// A release root as the real one ships (no `empty_prompt_embeds.safetensors`), built from
/// links into the fixture model.
#[cfg(unix)]
fn release_without_prompt_cache() -> Result<tempfile::TempDir> {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir()?;
    let model = tiny_model();
    symlink(
        model.join("seed-tokenizer-2"),
        root.path().join("seed-tokenizer-2"),
    )?;
    let sd = root.path().join("stable-diffusion-2-1-unclip");
    std::fs::create_dir(&sd)?;
    for entry in std::fs::read_dir(unclip_dir())? {
        let entry = entry?;
        if entry.file_name() != "empty_prompt_embeds.safetensors" {
            symlink(entry.path(), sd.join(entry.file_name()))?;
        }
    }
    Ok(root)
}

#[cfg(unix)]
#[test]
fn decoder_without_prompt_cache_runs_the_text_encoder() -> Result<()> {
    let root = release_without_prompt_cache()?;
    let dec = UnclipDecoder::load(root.path(), &mio_tests::device()?)?;
    assert_eq!(dec.prompt_source(), PromptSource::Computed);
    decodes_golden(&dec)
}

/// Decodes the golden codes with the golden's pinned draws and checks the final latents
/// and image.
fn decodes_golden(dec: &UnclipDecoder) -> Result<()> {
    let g = load("image_decode.safetensors")?;
    let codes: Vec<u32> = g["codes"].to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    let out = dec.decode_pinned(
        &dec.image_embedding(&codes)?,
        &g["init_latents"],
        &g["noise"],
        &golden_opts(),
        &mut |_| {},
        &AtomicBool::new(false),
    )?;
    assert_close("final_latents", &out.final_latents, &g["final_latents"])?;
    assert_close("image_float", &out.image_float, &g["image_float"])?;
    Ok(())
}

fn cache_entries(cache: &std::path::Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(cache.join(PROMPT_CACHE_DIR))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    v.retain(|n| n.ends_with(".safetensors"));
    v.sort();
    Ok(v)
}

#[cfg(unix)]
#[test]
fn empty_prompt_embedding_is_cached_by_text_encoder_checksum() -> Result<()> {
    let root = release_without_prompt_cache()?;
    let cache = tempfile::tempdir()?;
    let dev = mio_tests::device()?;
    let open = || UnclipDecoder::load_with_cache(root.path(), &dev, Some(cache.path()));

    // Cold: the text encoder runs and the result lands in the cache under its sha256.
    let cold = open()?;
    assert_eq!(cold.prompt_source(), PromptSource::Computed);
    let encoder = unclip_dir().join("text_encoder/model.safetensors");
    let sha = weights_sha256(&encoder, tempfile::tempdir()?.path())?;
    let entry = format!("{sha}.safetensors");
    assert_eq!(cache_entries(cache.path())?, vec![entry.clone()]);
    let g = load("image_decode.safetensors")?;
    let stored = candle_core::safetensors::load(
        cache.path().join(PROMPT_CACHE_DIR).join(&entry),
        &Device::Cpu,
    )?;
    assert_close(
        "cached",
        &stored["empty_prompt_embeds"],
        &g["empty_prompt_embeds"],
    )?;

    // Warm: read from the cache, and the picture is still the golden one.
    let warm = open()?;
    assert_eq!(warm.prompt_source(), PromptSource::Cache);
    decodes_golden(&warm)?;

    // A damaged entry is recomputed and rewritten, not trusted.
    std::fs::write(cache.path().join(PROMPT_CACHE_DIR).join(&entry), b"garbage")?;
    assert_eq!(open()?.prompt_source(), PromptSource::Computed);
    assert_eq!(open()?.prompt_source(), PromptSource::Cache);

    // Another text encoder (other bytes): another key, computed again.
    let sd = root.path().join("stable-diffusion-2-1-unclip");
    std::fs::remove_file(sd.join("text_encoder"))?;
    std::fs::create_dir(sd.join("text_encoder"))?;
    std::fs::copy(
        unclip_dir().join("text_encoder/config.json"),
        sd.join("text_encoder/config.json"),
    )?;
    let tensors = candle_core::safetensors::load(&encoder, &Device::Cpu)?;
    let copy = sd.join("text_encoder/model.safetensors");
    candle_core::safetensors::save(&tensors, &copy)?;
    assert_ne!(std::fs::read(&copy)?, std::fs::read(&encoder)?);
    assert_eq!(open()?.prompt_source(), PromptSource::Computed);
    assert_eq!(cache_entries(cache.path())?.len(), 2);

    // An imported folder's own file wins over the cache.
    assert_eq!(
        UnclipDecoder::load_with_cache(&tiny_model(), &mio_tests::device()?, Some(cache.path()))?
            .prompt_source(),
        PromptSource::Folder
    );
    Ok(())
}

#[test]
fn decoder_loads_from_release_layout() -> Result<()> {
    let dec = UnclipDecoder::load(&mio_tests::release_layout(), &mio_tests::device()?)?;
    assert_eq!(dec.image_size(), (64, 64));
    assert_eq!(dec.latent_shape(), (1, 4, 8, 8));
    Ok(())
}

/// A `VarBuilder` backend over a tensor map that records which names were read.
struct Recording {
    tensors: HashMap<String, Tensor>,
    read: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
}

impl candle_nn::var_builder::SimpleBackend for Recording {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            candle_core::bail!("{name}: shape {:?} vs {:?}", t.shape(), s);
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.read.lock().unwrap().insert(name.to_string());
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            })?;
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

#[test]
fn unet_reads_every_checkpoint_tensor() -> Result<()> {
    let dir = unclip_dir().join("unet");
    let tensors = candle_core::safetensors::load(
        dir.join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )?;
    let all: std::collections::BTreeSet<String> = tensors.keys().cloned().collect();
    let read = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
    let rec = Recording {
        tensors,
        read: read.clone(),
    };
    let vb = candle_nn::VarBuilder::from_backend(Box::new(rec), DType::F32, Device::Cpu);
    let cfg = UNet2DConditionConfig::load(&dir.join("config.json"))?;
    UNet2DConditionModel::new(cfg, vb)?;
    let read = read.lock().unwrap().clone();
    let unread: Vec<_> = all.difference(&read).collect();
    assert!(unread.is_empty(), "UNet tensors never read: {unread:?}");
    Ok(())
}
