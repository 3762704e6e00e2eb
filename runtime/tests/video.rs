//! Video keyframes (scene cuts, uniform fallback, cap) in every container the fixtures hold,
//! the webcam double and the real camera backend's error without a camera, and
//! `mio chat --video` / `mio video` / `mio camera` end to end on the tiny model.
//!
//! Fixtures (`tests/fixtures/video/`, made with the ffmpeg CLI): `cut3.*` are 60 frames of
//! 64×48 at 10 frames/s, red for 20 frames, then blue, then green (hard cuts at 20 and 40),
//! as H.264 mp4, VP9 webm, VP8 webm and MPEG-4 avi; `uniform.mp4` is 30 frames of FFmpeg's
//! `testsrc` (no cut); `scenes.mp4` is 512×64 at 15 frames/s (downscaled ×2 for detection):
//! `testsrc2`, `mandelbrot`, a 2-frame `smptebars` flash, `rgbtestsrc`, `testsrc`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mio_models::video::{KeyframeMode, Selection};
use mio_runtime::camera::{Camera, FileCamera, NokhwaCamera, OpenRequest};
use mio_runtime::video::{extract_keyframes, KeyframeOptions, VideoReader};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn video(name: &str) -> PathBuf {
    fixtures().join("video").join(name)
}

/// The dominant colour channel of a frame's centre (0 red, 1 green, 2 blue).
fn dominant(img: &image::RgbImage) -> usize {
    let p = img.get_pixel(img.width() / 2, img.height() / 2).0;
    (0..3).max_by_key(|&c| p[c]).unwrap()
}

#[test]
fn scene_cuts_are_found_in_mp4_webm_and_avi() {
    for name in ["cut3.mp4", "cut3.webm", "cut3_vp8.webm", "cut3.avi"] {
        let kf = extract_keyframes(&video(name), &KeyframeOptions::default()).unwrap();
        assert_eq!(kf.plan.total_frames, 60, "{name}");
        assert_eq!(kf.plan.cuts, vec![20, 40], "{name}");
        assert_eq!(kf.plan.selection, Selection::Scenes, "{name}");
        let idx: Vec<usize> = kf.frames.iter().map(|k| k.index).collect();
        assert_eq!(
            idx,
            vec![10, 30, 50],
            "{name}: the middle frame of each scene"
        );
        let colours: Vec<usize> = kf.frames.iter().map(|k| dominant(&k.image)).collect();
        assert_eq!(colours, vec![0, 2, 1], "{name}: red, blue, green");
        assert!((kf.frames[1].time_s - 3.0).abs() < 1e-6, "{name}");
        let info = kf.info.unwrap();
        assert_eq!((info.width, info.height), (64, 48), "{name}");
    }
}

#[test]
fn keyframes_match_pyscenedetect_on_busy_content() {
    // Expected values from PySceneDetect 0.6.4 driven as the reference's utils.extract_frames
    // (tests/tools/pyscenedetect_reference.py): cuts [23, 46, 69], frames [11, 34, 57, 80];
    // the 2-frame flash at 45-46 is merged by the flash filter. Same on the cut3 files.
    let kf = extract_keyframes(&video("scenes.mp4"), &KeyframeOptions::default()).unwrap();
    assert_eq!(kf.plan.total_frames, 92);
    assert_eq!(kf.plan.cuts, vec![23, 46, 69]);
    let idx: Vec<usize> = kf.frames.iter().map(|k| k.index).collect();
    assert_eq!(idx, vec![11, 34, 57, 80]);
    assert_eq!(kf.frames[0].image.dimensions(), (512, 64));
}

#[test]
fn every_frame_decodes_at_full_size() {
    let reader = VideoReader::open(&video("cut3.webm")).unwrap();
    assert_eq!(reader.info().codec, "vp9");
    let mut sizes = vec![];
    let n = reader
        .for_each_frame(|f| {
            sizes.push(f.image.dimensions());
            Ok(true)
        })
        .unwrap();
    assert_eq!(n, 60);
    assert!(sizes.iter().all(|&s| s == (64, 48)));
}

#[test]
fn no_cut_falls_back_to_uniform_frames() {
    let kf = extract_keyframes(&video("uniform.mp4"), &KeyframeOptions::default()).unwrap();
    assert!(kf.plan.cuts.is_empty());
    assert_eq!(kf.plan.selection, Selection::Uniform);
    let idx: Vec<usize> = kf.frames.iter().map(|k| k.index).collect();
    assert_eq!(idx, vec![0, 3, 6, 9, 12, 15, 18, 21, 24, 27]);
}

#[test]
fn uniform_mode_ignores_cuts() {
    let opts = KeyframeOptions {
        mode: KeyframeMode::Uniform,
        ..KeyframeOptions::default()
    };
    let kf = extract_keyframes(&video("cut3.mp4"), &opts).unwrap();
    let idx: Vec<usize> = kf.frames.iter().map(|k| k.index).collect();
    assert_eq!(idx, (0..60).step_by(6).collect::<Vec<_>>());
}

#[test]
fn frame_cap_thins_evenly() {
    let cap = |max_frames, name| {
        let opts = KeyframeOptions {
            max_frames,
            ..KeyframeOptions::default()
        };
        let kf = extract_keyframes(&video(name), &opts).unwrap();
        let idx: Vec<usize> = kf.frames.iter().map(|k| k.index).collect();
        (idx, kf.plan.selected_before_cap)
    };
    assert_eq!(cap(2, "cut3.mp4"), (vec![10, 30], 3));
    assert_eq!(cap(4, "uniform.mp4"), (vec![0, 6, 15, 21], 10));
    assert_eq!(cap(0, "uniform.mp4").0.len(), 10);
}

#[test]
fn file_camera_snapshots_and_records_keyframes() {
    let cam = FileCamera::new(vec![video("cut3.mp4")], 400.0);
    let devices = cam.devices().unwrap();
    assert_eq!(devices.len(), 1);
    let stream = cam
        .open(&OpenRequest {
            device: Some(devices[0].id.clone()),
            resolution: Some((32, 24)),
        })
        .unwrap();
    assert_eq!(stream.format(), (32, 24, 400.0));
    let snap = stream.snapshot().unwrap();
    assert_eq!(snap.dimensions(), (32, 24));
    drop(stream);

    // A 0.3 s clip at 400 frames/s covers the 60-frame file twice: red, blue, green, red, …
    let stream = cam.open(&OpenRequest::default()).unwrap();
    let kf = stream.record(0.3, &KeyframeOptions::default()).unwrap();
    assert_eq!(kf.plan.selection, Selection::Scenes, "{:?}", kf.plan);
    assert!(kf.plan.cuts.len() >= 2, "{:?}", kf.plan);
    assert!(!kf.frames.is_empty() && kf.frames.len() <= 16);
}

#[test]
fn file_camera_with_an_image_and_missing_device() {
    let png = fixtures().join("golden/inputs/synthetic_0.png");
    let cam = FileCamera::new(vec![png], 100.0);
    let stream = cam.open(&OpenRequest::default()).unwrap();
    let f = stream.next_frame(Duration::from_secs(5)).unwrap();
    assert!(f.image.width() > 0);
    let err = cam
        .open(&OpenRequest {
            device: Some("nope".into()),
            resolution: None,
        })
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no camera found");
    let bad = FileCamera::new(vec![video("garbage.mp4")], 10.0);
    let err = bad.open(&OpenRequest::default()).err().unwrap();
    assert!(err.to_string().contains("damaged or not a video"), "{err}");
}

#[test]
fn real_camera_backend_without_a_camera_is_a_clear_error() {
    let has_camera = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("video"));
    let cam = NokhwaCamera;
    let devices = cam.devices().unwrap();
    if has_camera {
        return; // a machine with a webcam: the error path below does not apply
    }
    assert!(devices.is_empty());
    let started = std::time::Instant::now();
    let err = cam.open(&OpenRequest::default()).err().unwrap();
    assert!(err.to_string().starts_with("no camera found"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn mio(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn chat_with_a_video_puts_one_image_block_per_keyframe() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turn");
    let model = s(&fixtures().join("model"));
    let r = mio(&[
        "chat",
        "--model",
        &model,
        "--out",
        &s(&out),
        "--video",
        &s(&video("cut3.webm")),
        "--max-new-tokens",
        "2",
        "--num-beams",
        "1",
        "What happens?",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    assert_eq!(
        t["user"],
        "What happens?\n<image_placeholder_0><image_placeholder_1><image_placeholder_2>"
    );
    let frames = t["videos"][0]["frames"].as_array().unwrap();
    let idx: Vec<u64> = frames
        .iter()
        .map(|f| f["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![10, 30, 50]);
    for f in frames {
        assert!(Path::new(f["file"].as_str().unwrap()).is_file());
    }
    // <image> (1005) … 32 codes … </image> (1004), three blocks back to back.
    let prompt: Vec<u64> = t["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let starts: Vec<usize> = (0..prompt.len()).filter(|&i| prompt[i] == 1005).collect();
    assert_eq!(starts.len(), 3);
    assert_eq!(starts[1], starts[0] + 34);
    assert_eq!(starts[2], starts[1] + 34);
    assert_eq!(prompt[starts[2] + 33], 1004);
}

#[test]
fn chat_with_a_damaged_video_is_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let model = s(&fixtures().join("model"));
    let r = mio(&[
        "chat",
        "--model",
        &model,
        "--out",
        &s(dir.path()),
        "--video",
        &s(&video("zero_frames.avi")),
        "hi",
    ]);
    assert!(!r.ok);
    let err = r.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("no decodable frames"),
        "{err}"
    );
}

#[test]
fn video_keyframes_and_camera_commands() {
    let dir = tempfile::tempdir().unwrap();
    let r = mio(&[
        "video",
        "keyframes",
        &s(&video("cut3.avi")),
        "--json",
        "--out",
        &s(dir.path()),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["selection"], "scenes");
    assert_eq!(v["cuts"], serde_json::json!([20, 40]));
    assert!(dir.path().join("frame_30.png").is_file());

    let png = dir.path().join("snap.png");
    let cut = s(&video("cut3.mp4"));
    let r = mio(&[
        "camera",
        "snapshot",
        "--file",
        &cut,
        "--out",
        &s(&png),
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(image::open(&png).unwrap().width(), 64);

    let rec = dir.path().join("rec");
    let r = mio(&[
        "camera",
        "record",
        "--file",
        &cut,
        "--file-fps",
        "400",
        "--seconds",
        "0.2",
        "--out",
        &s(&rec),
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(!v["frames"].as_array().unwrap().is_empty());

    let r = mio(&["camera", "list", "--json"]);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn template_resolves_video_placeholders_with_the_frames_codes() {
    let dir = tempfile::tempdir().unwrap();
    let model = s(&fixtures().join("model"));
    let conv = dir.path().join("conv.json");
    let png = fixtures().join("golden/inputs/synthetic_0.png");
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "<image_placeholder_0> then <video_placeholder_0>\nWhat changes?"}],
        "images": [png], "videos": [video("cut3.mp4")],
    });
    std::fs::write(&conv, body.to_string()).unwrap();
    let r = mio(&[
        "template",
        "--model",
        &model,
        "--conversation",
        &s(&conv),
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let text = serde_json::from_str::<Value>(r.stdout.trim()).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(text.matches("<image>").count(), 4);
    assert!(text.contains("</image> then <image>"));
    assert!(text.contains("</image><image>"), "frames back to back");

    // The frame blocks are the codes of the frames as PNG files (lossless hand-over).
    let frames = dir.path().join("frames");
    let r = mio(&[
        "video",
        "keyframes",
        &s(&video("cut3.mp4")),
        "--out",
        &s(&frames),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let r = mio(&[
        "image",
        "encode",
        "--model",
        &model,
        "--json",
        &s(&frames.join("frame_10.png")),
        &s(&frames.join("frame_50.png")),
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let first = v["images"][0]["tokens"].as_str().unwrap();
    let last = v["images"][1]["tokens"].as_str().unwrap();
    assert!(text.contains(&format!("then {first}")), "{text}");
    assert!(text.contains(&format!("{last}\nWhat changes?")), "{text}");
}

#[test]
fn chat_with_the_camera_double_and_without_a_camera() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("turn");
    let model = s(&fixtures().join("model"));
    let r = mio(&[
        "chat",
        "--model",
        &model,
        "--out",
        &s(&out),
        "--camera",
        "--camera-clip",
        "0.3",
        "--camera-file",
        &s(&video("cut3.mp4")),
        "--max-frames",
        "3",
        "--max-new-tokens",
        "2",
        "--num-beams",
        "1",
        "What do you see?",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
            .unwrap();
    assert!(out.join("camera_snapshot.png").is_file());
    let n = t["videos"][0]["frames"].as_array().unwrap().len();
    assert!((1..=3).contains(&n), "{n} clip frames");
    let user = t["user"].as_str().unwrap();
    assert_eq!(user.matches("<image_placeholder_").count(), 1 + n, "{user}");

    let has_camera = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("video"));
    if !has_camera {
        let r = mio(&[
            "chat",
            "--model",
            &model,
            "--out",
            &s(&out),
            "--camera",
            "hi",
        ]);
        assert!(!r.ok);
        let err = r.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: no camera found"), "{err}");
    }
}

#[test]
fn bench_image_encode_reports_speed_and_memory() {
    let model = s(&fixtures().join("model"));
    let r = mio(&[
        "bench",
        "image-encode",
        "--model",
        &model,
        "--batch",
        "2",
        "--repeat",
        "1",
        "--json",
    ]);
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["images"], 2);
    assert!(v["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().is_some());
}
