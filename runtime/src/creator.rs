//! Files of the creator modes of `mio chat`: video frames and an animated GIF, the guide as
//! a self-contained HTML page and as Markdown with image files, the before/after pair of an
//! edit, and latent previews.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use mio_models::engine::{guide_steps, ChatMode, DecodedImage, Event, GuideStep, OutputSegment};
use serde_json::{json, Value};

use crate::commands::write_atomic;
use crate::media::write_png;

/// Frame delay of the animated preview (MIO's frames are keyframes, not a frame rate).
pub const GIF_FRAME_MS: u32 = 500;

/// The drawn pictures of `segments`, in order.
pub fn pictures(segments: &[OutputSegment]) -> Vec<&DecodedImage> {
    segments
        .iter()
        .filter_map(|s| match s {
            OutputSegment::Image {
                image: Some(img), ..
            } => Some(img),
            _ => None,
        })
        .collect()
}

/// PNG bytes of a picture.
fn png_bytes(img: &DecodedImage) -> Result<Vec<u8>> {
    let buf = rgb_image(img)?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

fn rgb_image(img: &DecodedImage) -> Result<image::RgbImage> {
    image::RgbImage::from_raw(img.width, img.height, img.rgb.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "a picture has {} bytes for {}×{}",
            img.rgb.len(),
            img.width,
            img.height
        )
    })
}

/// Writes `frames` as a looping animated GIF, `delay_ms` per frame.
pub fn write_gif(path: &Path, frames: &[&DecodedImage], delay_ms: u32) -> Result<()> {
    if frames.is_empty() {
        bail!("an animation needs at least one frame");
    }
    let mut bytes = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new_with_speed(&mut bytes, 10);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)?;
        for img in frames {
            let rgba = image::DynamicImage::ImageRgb8(rgb_image(img)?).to_rgba8();
            let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
            enc.encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))?;
        }
    }
    write_atomic(path, &bytes)
}

/// Video mode: every picture as `frames/frame_NNN.png` and all of them as `video.gif`.
pub fn export_video(segments: &[OutputSegment], out: &Path) -> Result<Value> {
    let frames = pictures(segments);
    let dir = out.join("frames");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let mut names = vec![];
    for (i, img) in frames.iter().enumerate() {
        let name = format!("frames/frame_{i:03}.png");
        write_png(&out.join(&name), img)?;
        names.push(name);
    }
    let gif = if frames.is_empty() {
        None
    } else {
        write_gif(&out.join("video.gif"), &frames, GIF_FRAME_MS)?;
        Some("video.gif")
    };
    Ok(json!({ "frames": names, "animation": gif, "frame_ms": GIF_FRAME_MS }))
}

/// Guide mode: `step_N.png` per step picture, `guide.md` (linking them) and `guide.html`
/// (pictures inlined as data URLs: one file to share).
pub fn export_guide(steps: &[GuideStep], title: &str, out: &Path) -> Result<Value> {
    let mut md = format!("# {}\n", title.trim());
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}\
         img{{max-width:100%;image-rendering:auto}}li{{margin-bottom:1.5em}}</style>\n\
         </head><body>\n<h1>{t}</h1>\n<ol class=\"guide\">\n",
        t = escape_html(title.trim())
    );
    let mut files = vec![];
    for step in steps {
        let n = step.index + 1;
        md.push_str(&format!("\n## Step {n}\n\n{}\n", step.text));
        html.push_str(&format!(
            "<li class=\"step\"><p>{}</p>",
            escape_html(&step.text)
        ));
        if let Some(img) = &step.image {
            let name = format!("step_{}.png", step.index);
            let png = png_bytes(img)?;
            write_atomic(&out.join(&name), &png)?;
            md.push_str(&format!("\n![Step {n}]({name})\n"));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
            html.push_str(&format!(
                "<img alt=\"Step {n}\" src=\"data:image/png;base64,{b64}\">"
            ));
            files.push(name);
        }
        html.push_str("</li>\n");
    }
    html.push_str("</ol>\n</body></html>\n");
    write_atomic(&out.join("guide.md"), md.as_bytes())?;
    write_atomic(&out.join("guide.html"), html.as_bytes())?;
    Ok(json!({
        "steps": steps, "html": "guide.html", "markdown": "guide.md", "images": files,
    }))
}

/// Edit mode: the original as `before.png` (re-encoded, untouched pixels) and the answer's
/// first picture as `after.png`.
pub fn export_edit(original: &Path, segments: &[OutputSegment], out: &Path) -> Result<Value> {
    let before = image::open(original)
        .with_context(|| format!("cannot read the image {}", original.display()))?
        .to_rgb8();
    let mut bytes = std::io::Cursor::new(Vec::new());
    before.write_to(&mut bytes, image::ImageFormat::Png)?;
    write_atomic(&out.join("before.png"), bytes.get_ref())?;
    let after = match pictures(segments).first() {
        Some(img) => {
            write_png(&out.join("after.png"), img)?;
            Some("after.png")
        }
        None => None,
    };
    Ok(json!({ "before": "before.png", "after": after }))
}

/// The files of a creator mode (`video`, `guide`, `edit`) in `dir`; `title` heads the guide,
/// `original` is the edited picture. Other modes write nothing here (JSON null).
pub fn export(
    mode: ChatMode,
    segments: &[OutputSegment],
    title: &str,
    original: Option<&Path>,
    dir: &Path,
) -> Result<Value> {
    match (mode, original) {
        (ChatMode::Video, _) => export_video(segments, dir),
        (ChatMode::Guide, _) => export_guide(&guide_steps(segments), title, dir),
        (ChatMode::Edit, Some(original)) => export_edit(original, segments, dir),
        (ChatMode::Edit, None) => bail!("an edit needs its original picture"),
        _ => Ok(Value::Null),
    }
}

/// Writes the latent previews of a request's pictures as they stream in
/// (`image_N.step_SSS.png`; pictures are counted by their segments).
#[derive(Debug, Default)]
pub struct PreviewWriter {
    dir: Option<std::path::PathBuf>,
    drawn: usize,
    error: Option<anyhow::Error>,
}

impl PreviewWriter {
    /// Previews go into `dir` (created now); none when `dir` is `None`.
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the previews folder {}", dir.display()))?;
        }
        Ok(Self {
            dir: dir.map(Path::to_path_buf),
            ..Self::default()
        })
    }

    /// Feeds one engine event.
    pub fn observe(&mut self, event: &Event) {
        match (event, &self.dir) {
            (
                Event::ImagePreview {
                    step,
                    width,
                    height,
                    rgb,
                    ..
                },
                Some(dir),
            ) => {
                let img = DecodedImage {
                    width: *width,
                    height: *height,
                    rgb: rgb.clone(),
                };
                let path = dir.join(preview_name(self.drawn, *step));
                if let Err(e) = write_png(&path, &img) {
                    self.error.get_or_insert(e);
                }
            }
            (Event::Segment(OutputSegment::Image { .. }), _) => self.drawn += 1,
            _ => {}
        }
    }

    /// The first write error, if any.
    pub fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

/// File name of the preview of picture `image` at denoising step `step`.
pub fn preview_name(image: usize, step: usize) -> String {
    format!("image_{image}.step_{step:03}.png")
}

/// `&`, `<`, `>`, `"` as entities.
pub fn escape_html(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pic(v: u8) -> DecodedImage {
        DecodedImage {
            width: 4,
            height: 2,
            rgb: vec![v; 24],
        }
    }

    fn seg(v: u8) -> OutputSegment {
        OutputSegment::Image {
            codes: vec![u32::from(v); 32],
            image: Some(pic(v)),
        }
    }

    #[test]
    fn video_writes_frames_and_a_looping_gif() {
        let dir = tempfile::tempdir().unwrap();
        let segs = vec![seg(10), OutputSegment::Text { text: "x".into() }, seg(200)];
        let v = export_video(&segs, dir.path()).unwrap();
        assert_eq!(v["frames"].as_array().unwrap().len(), 2);
        for f in ["frames/frame_000.png", "frames/frame_001.png"] {
            let img = image::open(dir.path().join(f)).unwrap();
            assert_eq!((img.width(), img.height()), (4, 2));
        }
        let file = std::fs::File::open(dir.path().join("video.gif")).unwrap();
        let dec = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(file)).unwrap();
        use image::AnimationDecoder;
        let frames = dec.into_frames().collect_frames().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].delay().numer_denom_ms(), (GIF_FRAME_MS, 1));
        // No pictures: no animation, no error.
        let empty = tempfile::tempdir().unwrap();
        assert!(export_video(&[], empty.path()).unwrap()["animation"].is_null());
    }

    #[test]
    fn guide_is_self_contained_html_and_markdown_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let steps = vec![
            GuideStep {
                index: 0,
                text: "Water <well> & wait".into(),
                codes: vec![1; 32],
                image: Some(pic(9)),
            },
            GuideStep {
                index: 1,
                text: "Done.".into(),
                codes: vec![],
                image: None,
            },
        ];
        export_guide(&steps, "How do I repot a plant?", dir.path()).unwrap();
        let html = std::fs::read_to_string(dir.path().join("guide.html")).unwrap();
        assert!(html.contains("Water &lt;well&gt; &amp; wait"));
        assert_eq!(html.matches("data:image/png;base64,").count(), 1);
        assert_eq!(html.matches("<li class=\"step\">").count(), 2);
        assert!(!html.contains("step_0.png"), "the page links no files");
        let md = std::fs::read_to_string(dir.path().join("guide.md")).unwrap();
        assert!(md.starts_with("# How do I repot a plant?\n"));
        assert!(md.contains("## Step 2\n\nDone.\n"));
        assert!(md.contains("![Step 1](step_0.png)"));
        assert!(image::open(dir.path().join("step_0.png")).is_ok());
    }

    #[test]
    fn edit_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.png");
        write_png(&src, &pic(77)).unwrap();
        let v = export_edit(&src, &[seg(3)], dir.path()).unwrap();
        assert_eq!(v["after"], "after.png");
        let before = image::open(dir.path().join("before.png"))
            .unwrap()
            .to_rgb8();
        assert_eq!(before.into_raw(), pic(77).rgb);
        let after = image::open(dir.path().join("after.png")).unwrap().to_rgb8();
        assert_eq!(after.into_raw(), pic(3).rgb);
    }
}
