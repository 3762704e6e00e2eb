//! Odd and damaged media: images the tokenizer must read correctly (CMYK JPEG, animated GIF,
//! 16-bit PNG) and videos that must fail with one clear error (or give what they hold),
//! never a panic. Fixtures: `tests/fixtures/bad_media/` (made by
//! `tests/tools/make_bad_media.py`) and `tests/fixtures/video/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mio_runtime::video::{extract_keyframes, KeyframeOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// Decodes `name` and compares with PIL's `convert('RGB')`: the largest difference per byte.
fn max_diff_to_pil(name: &str) -> u8 {
    let dir = fixtures().join("bad_media");
    let img = mio_models::image_tokenizer::load_rgb(&dir.join(name)).unwrap();
    let want = std::fs::read(dir.join(format!("{name}.rgb"))).unwrap();
    assert_eq!((img.width(), img.height()), (16, 12), "{name}");
    assert_eq!(img.as_raw().len(), want.len(), "{name}");
    img.as_raw()
        .iter()
        .zip(&want)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap()
}

#[test]
fn animated_gif_gives_its_first_frame() {
    assert_eq!(max_diff_to_pil("animated.gif"), 0);
    let img =
        mio_models::image_tokenizer::load_rgb(&fixtures().join("bad_media/animated.gif")).unwrap();
    let p = img.get_pixel(3, 3).0;
    assert!(p[0] > 200 && p[2] < 50, "first frame is red, got {p:?}");
}

#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    let d = max_diff_to_pil("cmyk.jpg");
    assert!(d <= 2, "CMYK JPEG differs from PIL by {d}");
}

#[test]
fn sixteen_bit_rgb_png_is_scaled_to_eight_bits() {
    let d = max_diff_to_pil("rgb16.png");
    assert!(d <= 1, "16-bit RGB PNG differs from PIL by {d}");
}

#[test]
fn sixteen_bit_grey_png_is_read_without_panic() {
    // PIL opens it as "I;16" and clips to 255 on convert('RGB') (white); scaling the 16 bits
    // to 8 keeps the picture instead: a deliberate deviation, checked against the source.
    let img =
        mio_models::image_tokenizer::load_rgb(&fixtures().join("bad_media/gray16.png")).unwrap();
    let p = img.get_pixel(15, 0).0;
    assert_eq!(p, [240, 240, 240]);
}

fn video_error(name: &str) -> String {
    let path = fixtures().join("video").join(name);
    let err = extract_keyframes(&path, &KeyframeOptions::default()).unwrap_err();
    let text = format!("{err:#}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(name), "{text} lacks the file name");
    text
}

#[test]
fn garbage_video_is_one_clear_error() {
    assert!(video_error("garbage.mp4").contains("damaged or not a video"));
}

#[test]
fn truncated_video_without_index_is_one_clear_error() {
    assert!(video_error("truncated.mp4").contains("damaged or not a video"));
}

#[test]
fn zero_frame_video_is_one_clear_error() {
    assert!(video_error("zero_frames.avi").contains("no decodable frames"));
}

#[test]
fn unsupported_codec_is_one_clear_error() {
    assert!(video_error("unknown_codec.avi").contains("codec (unknown) is not supported"));
}

#[test]
fn missing_video_and_audio_only_file_are_clear_errors() {
    assert!(video_error("missing.mp4").contains("no such file"));
    let wav = fixtures().join("audio/stereo_48k_24bit.wav");
    let err = extract_keyframes(&wav, &KeyframeOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("no video stream"), "{err:#}");
}

#[test]
fn video_cut_short_gives_the_frames_it_holds() {
    // The last 10% of a fast-start mp4 is gone: the frames before the cut still decode.
    let path = fixtures().join("video/truncated_tail.mp4");
    let kf = extract_keyframes(&path, &KeyframeOptions::default()).unwrap();
    assert!(kf.plan.total_frames > 0 && kf.plan.total_frames < 60);
    assert!(!kf.frames.is_empty());
}
