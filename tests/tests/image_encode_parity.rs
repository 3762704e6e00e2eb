//! Golden parity of the SEED image encoder (`mio_models::image_tokenizer`) against the
//! reference `MIOTokenizer.tokenize_images` on the tiny fixture model
//! (`golden/image_encode.safetensors` + `image_encode.json`): decode, PIL resize, pixel
//! values, every network intermediate within 1e-4, and the 32 codes of both images exactly.
//! Also: bad inputs give one clear error, and every checkpoint tensor is read except the
//! listed decoder-side / dropped-upstream ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use mio_models::image_tokenizer::{
    decode_rgb, is_decoder_side, is_dropped_upstream, load_rgb, SeedImageEncoder, SEED_DIR,
};
use mio_models::text::{image_block, image_block_ids, TextTokenizer};
use mio_models::Error;
use mio_tests::{fixtures, golden, golden_json, release_layout, tiny_model};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;
/// K of `imgK.*` and its input file.
const IMAGES: [(usize, &str); 2] = [(0, "test_image_0.jpg"), (1, "synthetic_0.png")];

fn goldens() -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        golden("image_encode.safetensors"),
        &Device::Cpu,
    )?)
}

fn g<'a>(gold: &'a HashMap<String, Tensor>, k: usize, name: &str) -> Result<&'a Tensor> {
    gold.get(&format!("img{k}.{name}"))
        .with_context(|| format!("golden img{k}.{name} missing"))
}

fn input(name: &str) -> PathBuf {
    golden("inputs").join(name)
}

fn encoder() -> Result<SeedImageEncoder> {
    Ok(SeedImageEncoder::load(
        &tiny_model(),
        &mio_tests::device()?,
    )?)
}

fn bytes(t: &Tensor) -> Result<Vec<u8>> {
    Ok(t.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?)
}

/// Asserts `|got - want| <= ATOL + RTOL |want|` elementwise; returns the max abs error.
fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<f32> {
    ensure!(
        got.dims() == want.dims(),
        "{what}: shape {:?} vs {:?}",
        got.dims(),
        want.dims()
    );
    let gv = got.flatten_all()?.to_vec1::<f32>()?;
    let wv = want.flatten_all()?.to_vec1::<f32>()?;
    let mut max_err = 0f32;
    for (i, (a, b)) in gv.iter().zip(&wv).enumerate() {
        let err = (a - b).abs();
        ensure!(
            err <= ATOL + RTOL * b.abs(),
            "{what}[{i}]: got {a}, want {b}"
        );
        max_err = max_err.max(err);
    }
    Ok(max_err)
}

/// Max |a - b| of two byte buffers.
fn max_byte_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn golden_codes(k: usize) -> Result<Vec<u32>> {
    let json = golden_json("image_encode.json")?;
    let codes = json["images"][k]["codes"]
        .as_array()
        .context("codes")?
        .iter()
        .map(|c| c.as_u64().map(|c| c as u32).context("code"))
        .collect::<Result<Vec<_>>>()?;
    Ok(codes)
}

/// The PNG from its file: decode, resize and pixel values exactly as PIL / torchvision.
#[test]
fn png_preprocessing_is_exact() -> Result<()> {
    let gold = goldens()?;
    let enc = encoder()?;
    let img = load_rgb(&input("synthetic_0.png"))?;
    ensure!((img.width(), img.height()) == (96, 64), "size");
    let diff = max_byte_diff(img.as_raw(), &bytes(g(&gold, 1, "rgb_uint8")?)?);
    ensure!(diff == 0, "decode differs by {diff}");
    let resized = enc.transform().resize(&img)?;
    let diff = max_byte_diff(resized.as_raw(), &bytes(g(&gold, 1, "resized_uint8")?)?);
    ensure!(diff == 0, "resize differs by {diff}");
    let px = enc.pixel_values(&img)?;
    let err = assert_close("img1.pixel_values", &px, g(&gold, 1, "pixel_values")?)?;
    eprintln!("img1 pixel_values max err {err:e}");
    Ok(())
}

/// PIL's bilinear resize, bit-exact from the golden RGB of both images (480×640 down,
/// 96×64 up).
#[test]
fn resize_matches_pil_exactly() -> Result<()> {
    let gold = goldens()?;
    let enc = encoder()?;
    for (k, _) in IMAGES {
        let rgb = g(&gold, k, "rgb_uint8")?;
        let (h, w) = (rgb.dim(0)? as u32, rgb.dim(1)? as u32);
        let img = mio_models::image_tokenizer::RgbImage::from_raw(w, h, bytes(rgb)?)
            .context("rgb buffer")?;
        let resized = enc.transform().resize(&img)?;
        let diff = max_byte_diff(resized.as_raw(), &bytes(g(&gold, k, "resized_uint8")?)?);
        ensure!(diff == 0, "img{k} resize differs by {diff}");
    }
    Ok(())
}

/// Pixel values from the golden resized bytes of both images, within 1e-4.
#[test]
fn normalisation_matches() -> Result<()> {
    let gold = goldens()?;
    for (k, _) in IMAGES {
        let img = mio_models::image_tokenizer::RgbImage::from_raw(
            224,
            224,
            bytes(g(&gold, k, "resized_uint8")?)?,
        )
        .context("resized buffer")?;
        let px = mio_models::image_tokenizer::normalize_clip(&img, &mio_tests::device()?)?;
        assert_close(
            &format!("img{k}.pixel_values"),
            &px,
            g(&gold, k, "pixel_values")?,
        )?;
    }
    Ok(())
}

/// The JPEG from its file: decoded bit-exactly as libjpeg-turbo (PIL) decodes it, so the
/// resize and pixel values are exact too (the brief asks ±1; we get 0).
#[test]
fn jpeg_preprocessing_is_exact() -> Result<()> {
    let gold = goldens()?;
    let enc = encoder()?;
    let img = load_rgb(&input("test_image_0.jpg"))?;
    ensure!((img.width(), img.height()) == (480, 640), "size");
    let diff = max_byte_diff(img.as_raw(), &bytes(g(&gold, 0, "rgb_uint8")?)?);
    ensure!(diff == 0, "decode differs by {diff}");
    let resized = enc.transform().resize(&img)?;
    let diff = max_byte_diff(resized.as_raw(), &bytes(g(&gold, 0, "resized_uint8")?)?);
    ensure!(diff == 0, "resize differs by {diff}");
    let px = enc.pixel_values(&img)?;
    let err = assert_close("img0.pixel_values", &px, g(&gold, 0, "pixel_values")?)?;
    eprintln!("img0 pixel_values max err {err:e}");
    Ok(())
}

/// Baseline JPEG layouts (4:4:4, 4:2:2, 4:2:0, grayscale, restart markers, Adobe RGB) decode exactly
/// as PIL / libjpeg-turbo; progressive falls back to the `image` crate (near, not exact).
#[test]
fn jpeg_layouts_match_libjpeg() -> Result<()> {
    let dir = fixtures().join("image_tokenizer");
    for name in [
        "s444",
        "s422",
        "s420",
        "gray",
        "s420_rst",
        "adobe_rgb",
        "progressive",
    ] {
        let path = dir.join(format!("{name}.jpg"));
        let want = std::fs::read(dir.join(format!("{name}.jpg.rgb")))?;
        let img = load_rgb(&path)?;
        ensure!((img.width(), img.height()) == (45, 31), "{name}: size");
        let diff = max_byte_diff(img.as_raw(), &want);
        eprintln!("{name}: max |diff| {diff}");
        if name != "progressive" {
            ensure!(diff == 0, "{name}: differs from libjpeg by {diff}");
        }
    }
    Ok(())
}

/// BMP, lossless WebP, GIF (palette) and RGBA PNG decode as PIL's `convert('RGB')`, and
/// the EXIF orientation is applied (as `ImageOps.exif_transpose` does).
#[test]
fn other_formats_and_orientation_match_pil() -> Result<()> {
    let dir = fixtures().join("image_tokenizer");
    for (name, (w, h)) in [
        ("rgb.bmp", (45, 31)),
        ("lossless.webp", (45, 31)),
        ("palette.gif", (45, 31)),
        ("rgba.png", (45, 31)),
        ("orient6.jpg", (31, 45)),
    ] {
        let img = load_rgb(&dir.join(name))?;
        ensure!((img.width(), img.height()) == (w, h), "{name}: size");
        let want = std::fs::read(dir.join(format!("{name}.rgb")))?;
        let diff = max_byte_diff(img.as_raw(), &want);
        ensure!(diff == 0, "{name}: differs from PIL by {diff}");
    }
    Ok(())
}

/// Truncating or corrupting the JPEG anywhere gives an error or an image, never a panic
/// (dev profile: arithmetic overflow would panic).
#[test]
fn corrupt_jpegs_never_panic() -> Result<()> {
    let data = std::fs::read(input("test_image_0.jpg"))?;
    let (mut errors, mut images) = (0, 0);
    let mut outcome = |bytes: &[u8]| match decode_rgb(bytes) {
        Ok(_) => images += 1,
        Err(message) => {
            assert!(!message.is_empty());
            errors += 1;
        }
    };
    for cut in (0..data.len()).step_by(499) {
        outcome(&data[..cut]);
    }
    for (n, pos) in (0..data.len()).step_by(131).enumerate() {
        let mut bad = data.clone();
        bad[pos] ^= [0xFF, 0x80, 0x01, 0x5A][n % 4];
        outcome(&bad);
    }
    eprintln!("corrupt JPEGs: {errors} errors, {images} decoded");
    ensure!(errors > 0);
    Ok(())
}

/// Every network intermediate from the golden pixel values, within 1e-4; codes exact.
#[test]
fn intermediates_match() -> Result<()> {
    let gold = goldens()?;
    let enc = encoder()?;
    let dev = mio_tests::device()?;
    for (k, _) in IMAGES {
        let trace = enc.encode_pixels(&g(&gold, k, "pixel_values")?.to_device(&dev)?)?;
        let pairs = [
            ("vit_out", &trace.vit_out),
            ("ln_vision_out", &trace.ln_vision_out),
            (
                "qformer_last_hidden_state",
                &trace.qformer_last_hidden_state,
            ),
            ("encode_task_out", &trace.encode_task_out),
            ("quant", &trace.quant),
        ];
        for (name, got) in pairs {
            let err = assert_close(&format!("img{k}.{name}"), got, g(&gold, k, name)?)?;
            eprintln!("img{k}.{name}: max |err| {err:e}");
        }
        let want = g(&gold, k, "codes")?
            .to_dtype(DType::U32)?
            .to_vec2::<u32>()?;
        ensure!(trace.codes.to_vec2::<u32>()? == want, "img{k} codes");
        let entries = enc.model().quantize().get_codebook_entry(&trace.codes)?;
        assert_close(
            &format!("img{k}.codebook_entries"),
            &entries,
            g(&gold, k, "codebook_entries")?,
        )?;
    }
    Ok(())
}

/// End to end from the files: the 32 codes of both images exactly, and the image block
/// strings of the golden JSON via `text::image_block`.
#[test]
fn codes_from_files_match_exactly() -> Result<()> {
    let json = golden_json("image_encode.json")?;
    let tok = TextTokenizer::load(&tiny_model())?;
    for root in [tiny_model(), release_layout()] {
        let enc = SeedImageEncoder::load(&root, &mio_tests::device()?)?;
        for (k, file) in IMAGES {
            let codes = enc.encode_file(&input(file))?;
            ensure!(
                codes == golden_codes(k)?,
                "img{k} codes from {root:?}: {codes:?}"
            );
            let block = image_block(tok.vocab(), &codes)?;
            ensure!(
                json["images"][k]["image_string"] == block.as_str(),
                "img{k} string"
            );
            let ids = image_block_ids(tok.vocab(), &codes)?;
            ensure!(ids.len() == 34, "img{k} ids");
        }
    }
    Ok(())
}

/// Loading from `seed-tokenizer-2/` itself works as from the release root.
#[test]
fn loads_from_seed_folder() -> Result<()> {
    let enc = SeedImageEncoder::load(&tiny_model().join(SEED_DIR), &mio_tests::device()?)?;
    ensure!(enc.config().vit.embed_dim == 64 && enc.config().qformer.hidden_size == 48);
    ensure!(enc.config().vit.mlp_hidden == 279);
    Ok(())
}

/// Every checkpoint tensor is read except the explicitly listed decoder-side and
/// dropped-upstream ones of `seed_quantizer.pt` (CONVENTIONS rule 6).
#[test]
fn every_encoder_tensor_is_read() -> Result<()> {
    let enc = encoder()?;
    let report = enc.load_report();
    ensure!(
        report.vit_unread.is_empty(),
        "ViT unread: {:?}",
        report.vit_unread
    );
    let unexpected = report.unexpected_unread();
    ensure!(unexpected.is_empty(), "tensors never read: {unexpected:?}");
    let decoder = report
        .quantizer_unread
        .iter()
        .filter(|n| is_decoder_side(n))
        .count();
    let dropped = report
        .quantizer_unread
        .iter()
        .filter(|n| is_dropped_upstream(n))
        .count();
    eprintln!("unread: {decoder} decoder side, {dropped} dropped upstream");
    // 3 decode_task/pos + 4·12·2 blocks + 3 image_down + 2 distill + 4 decode_task_layer.
    ensure!(
        decoder == 4 + 1 + 48 + 1 + 48 + 3 + 2,
        "decoder-side count {decoder}"
    );
    ensure!(dropped == 29, "dropped count {dropped}");
    Ok(())
}

/// Corrupt, unsupported and empty images give one clear error, never a panic.
#[test]
fn bad_images_are_clear_errors() -> Result<()> {
    let enc = encoder()?;
    let dir = tempfile::tempdir()?;
    let cases: [(&str, Vec<u8>); 4] = [
        ("garbage.png", b"definitely not an image".to_vec()),
        (
            "truncated.jpg",
            std::fs::read(input("test_image_0.jpg"))?[..600].to_vec(),
        ),
        ("text.txt", b"hello".to_vec()),
        ("empty.bmp", Vec::new()),
    ];
    for (name, data) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, data)?;
        match enc.encode_file(&path) {
            Err(Error::ImageDecode { path: p, message }) => {
                ensure!(p == path, "{name}: path");
                eprintln!("{name}: {message}");
            }
            other => anyhow::bail!("{name}: expected ImageDecode, got {other:?}"),
        }
    }
    let missing = enc.encode_file(&dir.path().join("missing.png"));
    ensure!(
        matches!(missing, Err(Error::Io { .. })),
        "missing file: {missing:?}"
    );
    let empty = mio_models::image_tokenizer::RgbImage::new(0, 5);
    let err = enc.encode_rgb(&empty);
    ensure!(
        matches!(
            err,
            Err(Error::EmptyImage {
                width: 0,
                height: 5
            })
        ),
        "{err:?}"
    );
    let wrong = Tensor::zeros((3, 10, 10), DType::F32, &Device::Cpu)?;
    ensure!(enc.encode_pixels(&wrong).is_err(), "wrong pixel shape");
    Ok(())
}
