//! Video files to RGB frames through FFmpeg (`ffmpeg-next`: libavformat demuxes, libavcodec
//! decodes, libswscale converts to packed RGB24).
//!
//! Every container and codec the system's FFmpeg reads works (mp4/mov, webm/mkv, avi; H.264,
//! HEVC, VP8, VP9, AV1, MPEG-4, MJPEG, …). Packets the decoder rejects are skipped, as players
//! do, so a damaged file still yields the frames it holds; a file with no decodable frame is
//! one error. FFmpeg's own log is silenced: errors come back as sentences.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling::{Context as Scaler, Flags};
use ffmpeg_next as ffmpeg;
use image::RgbImage;

use super::frame::{VideoFrame, VideoInfo, MAX_FRAMES, MAX_FRAME_PIXELS, MAX_FRAME_SIDE};

/// Consecutive demuxer read errors after which the file is given up.
const MAX_READ_ERRORS: usize = 64;

fn init() -> Result<()> {
    static INIT: Once = Once::new();
    let mut result = Ok(());
    INIT.call_once(|| {
        result = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Quiet);
    });
    result.map_err(|e| anyhow!("cannot start FFmpeg: {e}"))
}

/// An open video file.
pub struct VideoReader {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    stream: usize,
    time_base: f64,
    info: VideoInfo,
    name: String,
}

impl VideoReader {
    /// Opens `path` and its best video stream.
    pub fn open(path: &Path) -> Result<Self> {
        init()?;
        let name = path.display().to_string();
        if !path.is_file() {
            bail!("cannot read the video {name}: no such file");
        }
        let input = ffmpeg::format::input(&path)
            .map_err(|e| anyhow!("cannot read the video {name}: {}", describe(&e)))?;
        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| anyhow!("cannot read the video {name}: it has no video stream"))?;
        let params = stream.parameters();
        let codec = params.id();
        let time_base = f64::from(stream.time_base());
        let rate = stream.avg_frame_rate();
        let fps = if rate.denominator() != 0 {
            f64::from(rate)
        } else {
            0.0
        };
        let index = stream.index();
        let ctx = ffmpeg::codec::context::Context::from_parameters(params)
            .map_err(|e| anyhow!("cannot read the video {name}: {}", describe(&e)))?;
        let decoder = ctx.decoder().video().map_err(|_| {
            anyhow!(
                "cannot read the video {name}: its codec ({}) is not supported by this FFmpeg",
                codec_name(codec)
            )
        })?;
        let (width, height) = (decoder.width(), decoder.height());
        if !frame_size_ok(width, height) {
            bail!("cannot read the video {name}: its frames are {width}x{height} pixels; the largest accepted is {} megapixels and {MAX_FRAME_SIDE} pixels a side", MAX_FRAME_PIXELS >> 20);
        }
        let info = VideoInfo {
            codec: codec_name(codec),
            width,
            height,
            fps,
        };
        Ok(Self {
            input,
            decoder,
            stream: index,
            time_base,
            info,
            name,
        })
    }

    /// The stream's description.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decodes every frame in order, handing each to `f`; `f` returns `false` to stop early.
    /// Returns the number of frames decoded; zero frames is an error.
    pub fn for_each_frame(
        mut self,
        mut f: impl FnMut(VideoFrame) -> Result<bool>,
    ) -> Result<usize> {
        let mut state = Decoding::default();
        let mut read_errors = 0;
        let mut packet = ffmpeg::Packet::empty();
        loop {
            match packet.read(&mut self.input) {
                Ok(()) => read_errors = 0,
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => {
                    read_errors += 1;
                    if read_errors >= MAX_READ_ERRORS {
                        bail!("cannot read the video {}: {}", self.name, describe(&e));
                    }
                    continue;
                }
            }
            if packet.stream() != self.stream {
                continue;
            }
            // A packet the decoder rejects is skipped (damaged data), as players do.
            if self.decoder.send_packet(&packet).is_ok() && !self.drain(&mut state, &mut f)? {
                return Ok(state.count);
            }
        }
        if self.decoder.send_eof().is_ok() {
            self.drain(&mut state, &mut f)?;
        }
        if state.count == 0 {
            bail!(
                "cannot read the video {}: it has no decodable frames",
                self.name
            );
        }
        Ok(state.count)
    }

    /// Hands every frame the decoder has ready to `f`; `false` when `f` asked to stop.
    fn drain(
        &mut self,
        state: &mut Decoding,
        f: &mut impl FnMut(VideoFrame) -> Result<bool>,
    ) -> Result<bool> {
        let mut frame = ffmpeg::frame::Video::empty();
        while self.decoder.receive_frame(&mut frame).is_ok() {
            if state.count >= MAX_FRAMES {
                bail!(
                    "the video {} has more than {MAX_FRAMES} frames; trim it first",
                    self.name
                );
            }
            let image = state.convert(&frame, &self.name)?;
            let time_s = match frame.timestamp() {
                Some(ts) if self.time_base > 0.0 => ts as f64 * self.time_base,
                _ if self.info.fps > 0.0 => state.count as f64 / self.info.fps,
                _ => 0.0,
            };
            let keep_going = f(VideoFrame {
                index: state.count,
                time_s,
                image,
            })?;
            state.count += 1;
            if !keep_going {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The converter to RGB (rebuilt when the frame size or format changes) and a frame count.
#[derive(Default)]
struct Decoding {
    scaler: Option<(Pixel, u32, u32, Scaler)>,
    count: usize,
}

impl Decoding {
    fn convert(&mut self, frame: &ffmpeg::frame::Video, name: &str) -> Result<RgbImage> {
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        if w == 0 || h == 0 || !frame_size_ok(w, h) {
            bail!("cannot read the video {name}: a frame is {w}x{h} pixels");
        }
        let stale = !matches!(&self.scaler, Some((f, sw, sh, _)) if (*f, *sw, *sh) == (fmt, w, h));
        if stale {
            let scaler = Scaler::get(fmt, w, h, Pixel::RGB24, w, h, Flags::BILINEAR)
                .with_context(|| format!("cannot convert the frames of {name} to RGB"))?;
            self.scaler = Some((fmt, w, h, scaler));
        }
        let Some((_, _, _, scaler)) = self.scaler.as_mut() else {
            bail!("cannot convert the frames of {name} to RGB");
        };
        let mut rgb = ffmpeg::frame::Video::empty();
        scaler
            .run(frame, &mut rgb)
            .map_err(|e| anyhow!("cannot convert the frames of {name} to RGB: {e}"))?;
        let (stride, row) = (rgb.stride(0), w as usize * 3);
        let data = rgb.data(0);
        let mut pixels = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            let line = data
                .get(y * stride..y * stride + row)
                .ok_or_else(|| anyhow!("cannot convert the frames of {name} to RGB"))?;
            pixels.extend_from_slice(line);
        }
        RgbImage::from_raw(w, h, pixels)
            .ok_or_else(|| anyhow!("cannot convert the frames of {name} to RGB"))
    }
}

fn frame_size_ok(w: u32, h: u32) -> bool {
    w <= MAX_FRAME_SIDE && h <= MAX_FRAME_SIDE && u64::from(w) * u64::from(h) <= MAX_FRAME_PIXELS
}

fn codec_name(id: ffmpeg::codec::Id) -> String {
    match id {
        ffmpeg::codec::Id::None => "unknown".to_owned(),
        id => id.name().to_owned(),
    }
}

/// FFmpeg's error as a lower-case phrase.
fn describe(e: &ffmpeg::Error) -> String {
    match e {
        ffmpeg::Error::InvalidData => "the file is damaged or not a video".to_owned(),
        ffmpeg::Error::DecoderNotFound => "its codec is not supported".to_owned(),
        ffmpeg::Error::DemuxerNotFound => "its container format is not supported".to_owned(),
        other => other.to_string().to_lowercase(),
    }
}
