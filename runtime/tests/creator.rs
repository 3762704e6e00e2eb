//! The creator modes end to end through the `mio` binary on the bundled tiny model (random
//! weights: the checks are structural — files, formats, counts — never content), latent
//! previews, and one clear error for each kind of bad image-decoder input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn model() -> PathBuf {
    fixtures().join("model")
}

fn mio(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chat(mode: &str, out: &Path, extra: &[&str], text: &str) -> Value {
    chat_with_log(mode, out, extra, text).0
}

/// The transcript and the stderr of a turn (streamed step notices go there).
fn chat_with_log(mode: &str, out: &Path, extra: &[&str], text: &str) -> (Value, String) {
    let m = model().display().to_string();
    let o = out.display().to_string();
    let mut args = vec!["chat", "--model", &m, "--mode", mode, "--out", &o];
    args.extend(["--image-steps", "2"]);
    args.extend(extra);
    args.push(text);
    let (ok, err) = mio(&args);
    assert!(ok, "mio chat --mode {mode}: {err}");
    let t = std::fs::read_to_string(out.join("transcript.json")).unwrap();
    (serde_json::from_str(&t).unwrap(), err)
}

fn png_size(path: &Path) -> (u32, u32) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

fn images_in(t: &Value) -> usize {
    t["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "image")
        .count()
}

#[test]
fn image_mode_draws_a_picture_with_previews() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img");
    let prev = tmp.path().join("prev");
    let p = prev.display().to_string();
    let t = chat(
        "image",
        &out,
        &[
            "--max-new-tokens",
            "34",
            "--previews",
            &p,
            "--preview-every",
            "1",
        ],
        "a red fox",
    );
    // Primed with <image> under the budget: exactly one complete picture.
    assert_eq!(images_in(&t), 1, "{t}");
    assert_eq!(t["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(png_size(&out.join("image_0.png")), (64, 64));
    // 2 steps = 3 UNet calls, a preview after each, at latent resolution (64 / 8).
    for step in 1..=3 {
        assert_eq!(
            png_size(&prev.join(format!("image_0.step_{step:03}.png"))),
            (8, 8)
        );
    }
}

#[test]
fn video_mode_writes_frames_and_an_animation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("vid");
    let t = chat(
        "video",
        &out,
        &["--max-new-tokens", "80"],
        "waves on a beach",
    );
    let frames = t["exports"]["frames"].as_array().unwrap();
    assert!(!frames.is_empty());
    assert_eq!(frames.len(), images_in(&t));
    for f in frames {
        assert_eq!(png_size(&out.join(f.as_str().unwrap())), (64, 64));
    }
    let gif = std::fs::read(out.join("video.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a"));
}

#[test]
fn guide_mode_exports_html_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("guide");
    let t = chat(
        "guide",
        &out,
        &["--max-new-tokens", "150"],
        "How do I repot a plant?",
    );
    let steps = t["exports"]["steps"].as_array().unwrap();
    let html = std::fs::read_to_string(out.join("guide.html")).unwrap();
    let md = std::fs::read_to_string(out.join("guide.md")).unwrap();
    assert!(md.starts_with("# How do I repot a plant?\n"));
    assert_eq!(html.matches("<li class=\"step\">").count(), steps.len());
    // One picture per image block, inlined in the page and as files beside the Markdown.
    let pictures = steps
        .iter()
        .filter(|s| !s["codes"].as_array().unwrap().is_empty());
    let n = pictures.count();
    assert_eq!(n, images_in(&t));
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), n);
    assert!(!html.contains("src=\"step_") && !html.contains("http"));
    for f in t["exports"]["images"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        assert!(md.contains(&format!("]({f})")));
        assert_eq!(png_size(&out.join(f)), (64, 64));
    }
}

#[test]
fn edit_mode_keeps_the_original_beside_the_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("edit");
    let jpg = fixtures().join("golden/inputs/test_image_0.jpg");
    let j = jpg.display().to_string();
    let t = chat(
        "edit",
        &out,
        &["--image", &j, "--max-new-tokens", "40"],
        "make the sky stormy",
    );
    assert!(images_in(&t) >= 1);
    let original = image::open(&jpg).unwrap().to_rgb8();
    let before = image::open(out.join("before.png")).unwrap().to_rgb8();
    assert_eq!(before.dimensions(), original.dimensions());
    assert_eq!(before.into_raw(), original.into_raw());
    assert_eq!(png_size(&out.join("after.png")), (64, 64));
    // The prompt carries the picture as image tokens: 32 codes between <image> and </image>.
    let prompt = t["prompt_ids"].as_array().unwrap();
    assert!(prompt.iter().any(|i| i == 1005) && prompt.iter().any(|i| i == 1004));
    // Edit mode needs exactly one picture.
    let m = model().display().to_string();
    let o = out.display().to_string();
    let (ok, err) = mio(&["chat", "--model", &m, "--mode", "edit", "--out", &o, "x"]);
    assert!(!ok && err.contains("exactly one --image"), "{err}");
}

fn decode(model: &Path, codes: &str, out: &Path) -> (bool, String) {
    let m = model.display().to_string();
    let o = out.display().to_string();
    mio(&[
        "image", "decode", "--model", &m, "--codes", codes, "--steps", "1", "--out", &o, "--json",
    ])
}

fn one_clear_error(r: (bool, String), needle: &str) {
    let (ok, err) = r;
    assert!(!ok, "expected failure");
    let err = err.trim();
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

/// A copy of the tiny model made of symlinks, with the unCLIP folder's `skip` component left
/// out and `replace` (component, file, bytes) written as a real file.
fn model_copy(root: &Path, skip: &str, replace: Option<(&str, &str, Vec<u8>)>) -> PathBuf {
    let m = root.join("m");
    let sd_name = "stable-diffusion-2-1-unclip";
    std::fs::create_dir_all(m.join(sd_name)).unwrap();
    for e in std::fs::read_dir(model()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != sd_name {
            std::os::unix::fs::symlink(e.path(), m.join(e.file_name())).unwrap();
        }
    }
    for e in std::fs::read_dir(model().join(sd_name)).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if name == skip || replace.as_ref().is_some_and(|r| name == r.0) {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), m.join(sd_name).join(&name)).unwrap();
    }
    if let Some((component, file, bytes)) = replace {
        let dir = m.join(sd_name).join(component);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(model().join(sd_name).join(component)).unwrap() {
            let e = e.unwrap();
            if e.file_name() != file {
                std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    m
}

/// The UNet weights with `conv_out.bias` set to NaN (a broken checkpoint).
fn nan_unet() -> Vec<u8> {
    let path = model().join("stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.safetensors");
    let mut bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let info = &header["conv_out.bias"];
    assert_eq!(info["dtype"], "F32");
    let offsets = info["data_offsets"].as_array().unwrap();
    let (a, b) = (
        offsets[0].as_u64().unwrap() as usize,
        offsets[1].as_u64().unwrap() as usize,
    );
    for chunk in bytes[8 + n + a..8 + n + b].chunks_exact_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    bytes
}

#[test]
fn bad_decoder_input_is_one_clear_error_each() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("x.png");
    let codes: Vec<String> = (0..32).map(|i| i.to_string()).collect();
    let good = codes.join(",");
    // Code ids out of range and wrong code count.
    let mut high = codes.clone();
    high[5] = "9000".into();
    one_clear_error(
        decode(&model(), &high.join(","), &png),
        "image code 9000 is out of range",
    );
    one_clear_error(
        decode(&model(), "1,2,3", &png),
        "an image takes 32 codes, got 3",
    );
    // A missing unCLIP component, a missing weights file.
    let gone = model_copy(&tmp.path().join("a"), "unet", None);
    one_clear_error(
        decode(&gone, &good, &png),
        "the image decoder lacks its unet",
    );
    let no_weights = model_copy(
        &tmp.path().join("b"),
        "",
        Some(("vae", "diffusion_pytorch_model.safetensors", vec![])),
    );
    std::fs::remove_file(
        no_weights.join("stable-diffusion-2-1-unclip/vae/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    one_clear_error(decode(&no_weights, &good, &png), "lacks its vae weights");
    // NaNs from a broken checkpoint.
    let broken = model_copy(
        &tmp.path().join("c"),
        "",
        Some(("unet", "diffusion_pytorch_model.safetensors", nan_unet())),
    );
    one_clear_error(decode(&broken, &good, &png), "NaN or infinite");
    assert!(!png.exists(), "no picture is written on error");
    // Image mode with too few tokens for a picture.
    let m = model().display().to_string();
    let o = tmp.path().join("o").display().to_string();
    one_clear_error(
        mio(&[
            "chat",
            "--model",
            &m,
            "--mode",
            "image",
            "--max-new-tokens",
            "10",
            "--out",
            &o,
            "x",
        ]),
        "max_new_tokens 10 is too small",
    );
}

#[test]
fn bench_image_decode_reports_seconds_per_step_and_memory() {
    let m = model().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args([
            "bench",
            "image-decode",
            "--model",
            &m,
            "--steps",
            "2",
            "--repeat",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unet_calls"], 3);
    assert_eq!(v["size"], serde_json::json!([64, 64]));
    for key in ["seconds_per_step", "vae_and_output_s", "total_s"] {
        assert!(v[key].as_f64().unwrap() >= 0.0, "{key}: {v}");
    }
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
}
