//! `mio video keyframes`, `mio camera list|snapshot|record`, and the keyframes of `mio chat --video` written beside the
//! transcript.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mio_models::engine::{Conversation, MediaInputs};
use mio_models::video::KeyframeMode;
use serde_json::{json, Value};

use crate::camera::{Camera, FileCamera, NokhwaCamera, OpenRequest};
use crate::cli::{CameraArgs, CameraCommand, ChatCameraArgs, FrameArgs, VideoCommand};
use crate::commands::write_atomic;
use crate::video::{extract_keyframes, keyframe_inputs, KeyframeOptions, VideoKeyframes};

/// The keyframe options of the command line.
pub(crate) fn options(frames: &FrameArgs) -> KeyframeOptions {
    KeyframeOptions {
        mode: match frames.uniform_frames {
            true => KeyframeMode::Uniform,
            false => KeyframeMode::Auto,
        },
        max_frames: frames.max_frames,
        ..KeyframeOptions::default()
    }
}

/// Writes each keyframe as `{prefix}frame_{index}.png` into `out` (when given); returns the
/// files and the JSON description.
pub(crate) fn save(
    video: &Path,
    kf: &VideoKeyframes,
    out: Option<&Path>,
    prefix: &str,
) -> Result<(Vec<PathBuf>, Value)> {
    let mut files = vec![];
    let mut list = vec![];
    for k in &kf.frames {
        let mut entry = json!({ "index": k.index, "time_s": k.time_s });
        if let Some(dir) = out {
            let path = dir.join(format!("{prefix}frame_{}.png", k.index));
            let mut bytes = std::io::Cursor::new(Vec::new());
            k.image
                .write_to(&mut bytes, image::ImageFormat::Png)
                .with_context(|| {
                    format!("cannot encode frame {} of {}", k.index, video.display())
                })?;
            write_atomic(&path, bytes.get_ref())?;
            entry["file"] = json!(path);
            files.push(path);
        }
        list.push(entry);
    }
    let value = json!({
        "video": video, "info": kf.info, "selection": kf.plan.selection,
        "cuts": kf.plan.cuts, "total_frames": kf.plan.total_frames,
        "selected_before_cap": kf.plan.selected_before_cap, "frames": list,
    });
    Ok((files, value))
}

/// Extracts the keyframes of `videos` into `out` (`{prefix}video_V_frame_N.png`); returns
/// the frame files in order, the frame count of each video and their JSON descriptions.
pub(crate) fn frames_into(
    videos: &[PathBuf],
    opts: &KeyframeOptions,
    out: &Path,
    prefix: &str,
) -> Result<(Vec<PathBuf>, Vec<usize>, Vec<Value>)> {
    let (mut files, mut counts, mut list) = (vec![], vec![], vec![]);
    for (v, path) in videos.iter().enumerate() {
        let kf = extract_keyframes(path, opts)?;
        let (f, value) = save(path, &kf, Some(out), &format!("{prefix}video_{v}_"))?;
        counts.push(f.len());
        files.extend(f);
        list.push(value);
    }
    Ok((files, counts, list))
}

/// The keyframes of a conversation file's `"videos"` as image inputs (after its `"images"`):
/// `<video_placeholder_V>` in a message becomes video V's run of image placeholders.
pub(crate) fn conversation_videos(
    text: &str,
    base: &Path,
    conversation: &mut Conversation,
    media: &mut MediaInputs,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Videos {
        #[serde(default)]
        videos: Vec<PathBuf>,
    }
    let Ok(Videos { videos }) = serde_json::from_str::<Videos>(text) else {
        return Ok(());
    };
    let opts = KeyframeOptions::default();
    let mut counts = vec![];
    for path in &videos {
        let kf = extract_keyframes(&base.join(path), &opts)?;
        media
            .images
            .extend(keyframe_inputs(&path.display().to_string(), &kf)?);
        counts.push(kf.frames.len());
    }
    let first = conversation.images.len();
    for v in 0..videos.len() {
        let tag = format!("<video_placeholder_{v}>");
        let Some(m) = conversation
            .messages
            .iter_mut()
            .find(|m| m.content.contains(&tag))
        else {
            bail!("the conversation attaches video {v} but no message says {tag}");
        };
        // Video v's frames are numbered after the images and the earlier videos' frames.
        let offset: usize = counts[..v].iter().sum();
        m.content = m
            .content
            .replace(&tag, &crate::video::frame_run(first + offset, counts[v]));
    }
    Ok(())
}

/// Runs `mio video …`.
pub fn run(what: VideoCommand) -> Result<()> {
    match what {
        VideoCommand::Keyframes {
            video,
            out,
            frames,
            json,
        } => {
            let kf = extract_keyframes(&video, &options(&frames))?;
            if let Some(dir) = &out {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the output folder {}", dir.display())
                })?;
            }
            let (_, value) = save(&video, &kf, out.as_deref(), "")?;
            if json {
                println!("{}", serde_json::to_string(&value)?);
            } else {
                let idx: Vec<String> = kf.frames.iter().map(|k| k.index.to_string()).collect();
                println!(
                    "{} of {} frames ({:?}): {}",
                    kf.frames.len(),
                    kf.plan.total_frames,
                    kf.plan.selection,
                    idx.join(",")
                );
            }
            Ok(())
        }
    }
}

/// The camera of the command line: the file double with `--file`, else the system's.
fn camera_backend(args: &CameraArgs) -> Box<dyn Camera> {
    match &args.file {
        Some(f) => Box::new(FileCamera::new(vec![f.clone()], args.file_fps)),
        None => Box::new(NokhwaCamera),
    }
}

/// Runs `mio camera …`.
pub fn camera(what: CameraCommand) -> Result<()> {
    match what {
        CameraCommand::List { camera } => {
            let list = camera_backend(&camera).devices()?;
            if camera.json {
                println!("{}", serde_json::to_string(&json!({ "cameras": list }))?);
            } else if list.is_empty() {
                println!("no camera found");
            } else {
                list.iter()
                    .for_each(|c| println!("{}: {} ({})", c.id, c.name, c.description));
            }
            Ok(())
        }
        CameraCommand::Snapshot { camera, out } => {
            let stream = camera_backend(&camera).open(&request(&camera))?;
            let img = stream.snapshot()?;
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, image::ImageFormat::Png)?;
            write_atomic(&out, bytes.get_ref())?;
            let (w, h) = img.dimensions();
            match camera.json {
                true => println!("{}", json!({ "out": out, "width": w, "height": h })),
                false => println!("wrote {} ({w}×{h})", out.display()),
            }
            Ok(())
        }
        CameraCommand::Record {
            camera,
            seconds,
            frames,
            out,
        } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create the output folder {}", out.display()))?;
            let stream = camera_backend(&camera).open(&request(&camera))?;
            let kf = stream.record(seconds, &options(&frames))?;
            let source = camera
                .file
                .clone()
                .unwrap_or_else(|| PathBuf::from("camera"));
            let (files, mut value) = save(&source, &kf, Some(&out), "")?;
            value["dropped_frames"] = json!(stream.dropped());
            match camera.json {
                true => println!("{}", serde_json::to_string(&value)?),
                false => println!(
                    "{} keyframes of {} frames written to {}",
                    files.len(),
                    kf.plan.total_frames,
                    out.display()
                ),
            }
            Ok(())
        }
    }
}

/// What `mio chat --camera / --camera-clip` captured, saved into the turn's folder.
pub(crate) struct CameraInputs {
    /// `camera_snapshot.png`, with --camera.
    pub snapshot: Option<PathBuf>,
    /// The clip's keyframe files (`camera_frame_N.png`) and description, with --camera-clip.
    pub clip: Option<(Vec<PathBuf>, Value)>,
}

/// Captures what `args` asks for; `None` when it asks for nothing.
pub(crate) fn camera_inputs(
    args: &ChatCameraArgs,
    opts: &KeyframeOptions,
    out: &Path,
) -> Result<Option<CameraInputs>> {
    if !args.camera && args.camera_clip.is_none() {
        return Ok(None);
    }
    let backend: Box<dyn Camera> = match &args.camera_file {
        Some(f) => Box::new(FileCamera::new(vec![f.clone()], 30.0)),
        None => Box::new(NokhwaCamera),
    };
    let stream = backend.open(&OpenRequest {
        device: args.camera_device.clone(),
        resolution: None,
    })?;
    let mut got = CameraInputs {
        snapshot: None,
        clip: None,
    };
    if args.camera {
        let path = out.join("camera_snapshot.png");
        let mut bytes = std::io::Cursor::new(Vec::new());
        stream
            .snapshot()?
            .write_to(&mut bytes, image::ImageFormat::Png)?;
        write_atomic(&path, bytes.get_ref())?;
        got.snapshot = Some(path);
    }
    if let Some(seconds) = args.camera_clip {
        let kf = stream.record(seconds, opts)?;
        got.clip = Some(save(Path::new("camera"), &kf, Some(out), "camera_")?);
    }
    Ok(Some(got))
}

fn request(args: &CameraArgs) -> OpenRequest {
    OpenRequest {
        device: args.device.clone(),
        resolution: args.resolution,
    }
}
