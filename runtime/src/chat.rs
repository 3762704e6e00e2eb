//! `mio chat` (one turn) and `mio speech encode|decode`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mio_models::engine::{
    ChatMode, Conversation, Event, Message, OutputSegment, Request, Response, Role,
};
use serde_json::json;

use crate::audio::{decode_file, write_wav};
use crate::cli::{
    ChatCameraArgs, ChatModeArg, Common, DecodeArgs, FrameArgs, ImageCommand, SpeechCommand,
};
use crate::commands::{params, print, start, write_atomic};
use crate::creator::{export, PreviewWriter};
use crate::media::{load_image, load_inputs, place_media, save_outputs, write_png};

/// Seconds from the request to the first audio: the content-only preview (progressive
/// speech) and the full-quality segment.
#[derive(Debug, Default, serde::Serialize)]
struct FirstAudio {
    preview_s: Option<f64>,
    full_s: Option<f64>,
}

/// The media files of one `mio chat` turn.
pub struct ChatMedia<'a> {
    /// `--image` files.
    pub images: &'a [PathBuf],
    /// `--audio` files.
    pub audio: &'a [PathBuf],
    /// `--video` files.
    pub videos: &'a [PathBuf],
    /// How video keyframes are chosen.
    pub frames: &'a FrameArgs,
    /// Webcam input.
    pub camera: &'a ChatCameraArgs,
}

/// Runs `mio chat`.
pub fn run(
    common: &Common,
    mode: ChatModeArg,
    out: &Path,
    inputs: &ChatMedia<'_>,
    d: &DecodeArgs,
    text: String,
) -> Result<()> {
    let audio = inputs.audio;
    let camera_used = inputs.camera.camera || inputs.camera.camera_clip.is_some();
    if text.trim().is_empty()
        && audio.is_empty()
        && inputs.images.is_empty()
        && inputs.videos.is_empty()
        && !camera_used
    {
        bail!("the message is empty");
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let opts = crate::video_cmd::options(inputs.frames);
    let (mut frame_files, mut frame_counts, mut videos) =
        crate::video_cmd::frames_into(inputs.videos, &opts, out, "")?;
    // The webcam: a snapshot joins the images, a clip's keyframes follow the videos.
    let mut images = inputs.images.to_vec();
    if let Some(cam) = crate::video_cmd::camera_inputs(inputs.camera, &opts, out)? {
        images.extend(cam.snapshot);
        if let Some((files, value)) = cam.clip {
            frame_counts.push(files.len());
            frame_files.extend(files);
            videos.push(value);
        }
    }
    let images = images.as_slice();
    if matches!(mode, ChatModeArg::Edit) && images.len() != 1 {
        bail!("edit mode takes exactly one --image (got {})", images.len());
    }
    let user = place_media(&text, "image", 0, images.len());
    let user = crate::video::place_video_frames(&user, images.len(), &frame_counts);
    let user = place_media(&user, "speech", 0, audio.len());
    let mut all_images = images.to_vec();
    all_images.extend(frame_files);
    let conversation = Conversation {
        messages: vec![Message::new(Role::User, user.clone())],
        images: all_images,
        speech: audio.to_vec(),
    };
    let media = load_inputs(&conversation, Path::new("."))?;
    let (worker, _) = start(common, false)?;
    let mode = mode_of(mode);
    let request = Request::Chat {
        conversation,
        mode,
        params: params(d),
        media,
    };
    let streaming = !common.json;
    let started = std::time::Instant::now();
    let mut first_audio = FirstAudio::default();
    let mut preview_error = None;
    let mut previews = PreviewWriter::new(d.previews.as_deref())?;
    let response = worker.run(request)?.wait(|event| match &event {
        Event::ImagePreview { .. } | Event::Segment(OutputSegment::Image { .. }) => {
            previews.observe(&event)
        }
        Event::GuideStep(step) if streaming => eprintln!("{}", step_notice(step)),
        Event::Token { text, .. } if streaming => {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
        Event::SpeechPreview {
            index,
            sample_rate,
            samples,
        } => {
            first_audio
                .preview_s
                .get_or_insert(started.elapsed().as_secs_f64());
            let path = out.join(format!("speech_{index}.preview.wav"));
            if let Err(e) = write_wav(&path, samples, *sample_rate) {
                preview_error = Some(e);
            }
        }
        Event::Segment(OutputSegment::Speech { .. }) => {
            first_audio
                .full_s
                .get_or_insert(started.elapsed().as_secs_f64());
        }
        _ => {}
    })?;
    if let Some(e) = preview_error {
        return Err(e);
    }
    previews.finish()?;
    let Response::Chat {
        prompt_ids,
        new_ids,
        segments,
        warnings,
        finish_reason,
        timings,
        ..
    } = response
    else {
        bail!("unexpected engine answer");
    };
    let exports = export(
        mode,
        &segments,
        &text,
        images.first().map(PathBuf::as_path),
        out,
    )?;
    let segments = save_outputs(&segments, out, "")?;
    let transcript = json!({
        "exports": exports,
        "mode": mode, "model": common.model, "user": user, "images": images, "audio": audio,
        "videos": videos,
        "prompt_ids": prompt_ids, "new_ids": new_ids, "segments": segments,
        "warnings": warnings, "finish_reason": finish_reason, "timings": timings,
        "time_to_first_audio_s": first_audio,
    });
    let path = out.join("transcript.json");
    write_atomic(&path, serde_json::to_string_pretty(&transcript)?.as_bytes())?;
    if streaming {
        println!();
        warnings.iter().for_each(|w| eprintln!("warning: {w}"));
        eprintln!("transcript written to {}", path.display());
        Ok(())
    } else {
        print(common, transcript, String::new)
    }
}

/// What `mio chat --mode guide` prints when a step is complete.
fn step_notice(step: &mio_models::engine::GuideStep) -> String {
    let pic = if step.image.is_some() {
        " + picture"
    } else {
        ""
    };
    format!("\n[step {} done{pic}]", step.index + 1)
}

/// The engine's mode of a `--mode` value.
fn mode_of(mode: ChatModeArg) -> ChatMode {
    match mode {
        ChatModeArg::Chat => ChatMode::Chat,
        ChatModeArg::Voice => ChatMode::Voice,
        ChatModeArg::Image => ChatMode::Image,
        ChatModeArg::Video => ChatMode::Video,
        ChatModeArg::Guide => ChatMode::Guide,
        ChatModeArg::Edit => ChatMode::Edit,
    }
}

/// Runs `mio image encode|decode`.
pub fn image(what: ImageCommand) -> Result<()> {
    match what {
        ImageCommand::Encode { common, images } => {
            if images.is_empty() {
                bail!("give at least one image");
            }
            let inputs = images
                .iter()
                .map(|p| load_image(p))
                .collect::<Result<Vec<_>>>()?;
            let (worker, _) = start(&common, true)?;
            match worker
                .run(Request::ImageEncode { images: inputs })?
                .wait(|_| {})?
            {
                Response::ImageCodes { codes, tokens } => {
                    let list: Vec<_> = codes
                        .iter()
                        .zip(&tokens)
                        .map(|(c, t)| json!({ "codes": c, "tokens": t }))
                        .collect();
                    print(&common, json!({ "images": list }), || tokens.join("\n"))
                }
                other => bail!("unexpected engine answer {other:?}"),
            }
        }
        ImageCommand::Decode {
            common,
            codes,
            steps,
            guidance,
            seed,
            latents,
            noise,
            out,
            previews,
            preview_every,
        } => {
            let mut writer = PreviewWriter::new(previews.as_deref())?;
            let (worker, _) = start(&common, true)?;
            let request = Request::ImageDecode {
                codes,
                steps,
                guidance,
                seed,
                latents,
                noise,
                preview_every: crate::commands::preview_every(previews.as_deref(), preview_every)
                    .unwrap_or(0),
            };
            let quiet = common.json;
            let response = worker.run(request)?.wait(|e| {
                // Denoising steps only (not a codec's loading: stderr keeps to one line
                // when the request then fails).
                match (&e, quiet) {
                    (Event::Progress { stage, step, total }, false) if stage == "image" => {
                        eprint!("\rdenoising step {step}/{total}")
                    }
                    _ => {}
                }
                writer.observe(&e);
            });
            if !quiet {
                eprintln!();
            }
            let response = response?;
            writer.finish()?;
            match response {
                Response::Image(img) => {
                    write_png(&out, &img)?;
                    print(
                        &common,
                        json!({ "out": out, "width": img.width, "height": img.height }),
                        || format!("wrote {} ({}×{})", out.display(), img.width, img.height),
                    )
                }
                other => bail!("unexpected engine answer {other:?}"),
            }
        }
    }
}

/// Runs `mio speech encode|decode`.
pub fn speech(what: SpeechCommand) -> Result<()> {
    match what {
        SpeechCommand::Encode {
            common,
            audio,
            timbre,
        } => {
            let clip = decode_file(&audio)?;
            let input = mio_models::engine::AudioInput {
                samples: clip.samples,
                sample_rate: clip.sample_rate,
            };
            let (worker, _) = start(&common, true)?;
            match worker
                .run(Request::SpeechEncode {
                    audio: input,
                    timbre,
                })?
                .wait(|_| {})?
            {
                Response::SpeechCodes { codes, tokens } => {
                    print(&common, json!({ "codes": codes, "tokens": tokens }), || {
                        tokens.clone()
                    })
                }
                other => bail!("unexpected engine answer {other:?}"),
            }
        }
        SpeechCommand::Decode {
            common,
            tokens,
            out,
        } => {
            let (worker, _) = start(&common, true)?;
            match worker.run(Request::SpeechDecode { tokens })?.wait(|_| {})? {
                Response::Audio {
                    samples,
                    sample_rate,
                } => {
                    write_wav(&out, &samples, sample_rate)?;
                    let secs = samples.len() as f64 / f64::from(sample_rate.max(1));
                    print(
                        &common,
                        json!({ "out": out, "duration_s": secs, "sample_rate": sample_rate }),
                        || format!("wrote {} ({secs:.2} s)", out.display()),
                    )
                }
                other => bail!("unexpected engine answer {other:?}"),
            }
        }
    }
}
