//! Media files at the runtime's edge: conversation inputs decoded for the engine, and the
//! engine's decoded outputs written as files beside a transcript.

use std::path::Path;

use anyhow::{Context, Result};
use mio_models::engine::{
    AudioInput, Conversation, DecodedImage, ImageInput, MediaInputs, OutputSegment,
    SPEECH_SAMPLE_RATE,
};
use serde_json::{json, Value};

use crate::audio::{decode_file, write_wav};
use crate::commands::write_atomic;

/// Reads an image file for the engine.
pub fn load_image(path: &Path) -> Result<ImageInput> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the image {}", path.display()))?;
    Ok(ImageInput {
        name: path.display().to_string(),
        bytes,
    })
}

/// Reads the conversation's images and decodes its audio files (paths relative to `base`).
pub fn load_inputs(conversation: &Conversation, base: &Path) -> Result<MediaInputs> {
    let mut media = MediaInputs::default();
    for p in &conversation.images {
        media.images.push(load_image(&base.join(p))?);
    }
    for p in &conversation.speech {
        let clip = decode_file(&base.join(p))?;
        media.speech.push(AudioInput {
            samples: clip.samples,
            sample_rate: clip.sample_rate,
        });
    }
    Ok(media)
}

/// Writes an RGB picture as PNG (through a temporary name and a rename).
pub fn write_png(path: &Path, img: &DecodedImage) -> Result<()> {
    let buf =
        image::RgbImage::from_raw(img.width, img.height, img.rgb.clone()).ok_or_else(|| {
            anyhow::anyhow!(
                "the decoded picture has {} bytes for {}×{}",
                img.rgb.len(),
                img.width,
                img.height
            )
        })?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut bytes, image::ImageFormat::Png)?;
    write_atomic(path, bytes.get_ref())
}

/// Writes decoded speech of `segments` as `{prefix}speech_{i}.wav` and pictures as
/// `{prefix}image_{i}.png` into `out`; returns the segments as JSON with a `file` field
/// where a file was written.
pub fn save_outputs(segments: &[OutputSegment], out: &Path, prefix: &str) -> Result<Vec<Value>> {
    let mut n_speech = 0;
    let mut n_image = 0;
    let mut list = vec![];
    for seg in segments {
        let mut value = serde_json::to_value(seg)?;
        if let OutputSegment::Image {
            image: Some(img), ..
        } = seg
        {
            let name = format!("{prefix}image_{n_image}.png");
            write_png(&out.join(&name), img)?;
            value["file"] = json!(name);
            value["size"] = json!([img.width, img.height]);
            n_image += 1;
        }
        if let OutputSegment::Speech {
            audio: Some(samples),
            ..
        } = seg
        {
            let name = format!("{prefix}speech_{n_speech}.wav");
            write_wav(&out.join(&name), samples, SPEECH_SAMPLE_RATE)?;
            value["file"] = json!(name);
            value["duration_s"] = json!(samples.len() as f64 / f64::from(SPEECH_SAMPLE_RATE));
            n_speech += 1;
        }
        list.push(value);
    }
    Ok(list)
}

/// Appends `<{kind}_placeholder_N>` (N in `first..first + n`, the conversation-wide media
/// numbers) for attached media the message does not place itself; `kind` is `image` or
/// `speech`.
pub fn place_media(text: &str, kind: &str, first: usize, n: usize) -> String {
    let mut out = text.to_string();
    for i in first..first + n {
        let tag = format!("<{kind}_placeholder_{i}>");
        if !out.contains(&tag) {
            out.push('\n');
            out.push_str(&tag);
        }
    }
    out
}
