//! The app data folder: media files written atomically (temporary file, fsync, rename),
//! imported attachments validated, and the `media:` protocol's path resolution (only files
//! inside the media folder are ever served).

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mio_models::speech_codec::{wav_bytes, WavAudio, WavEncoding};

use crate::error::{AppError, AppResult, ErrorCode};
use crate::ipc::{Attachment, MediaKind, Segment};

/// Largest attachment accepted (bytes).
pub const MAX_IMPORT_BYTES: usize = 64 << 20;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The media folder under the app data folder.
/// Video file extensions an attachment may have.
const VIDEO_EXTS: [&str; 6] = ["mp4", "m4v", "webm", "mkv", "mov", "avi"];

#[derive(Debug, Clone)]
pub struct MediaDir {
    root: PathBuf,
}

impl MediaDir {
    /// Opens (creating) `root`.
    pub fn open(root: PathBuf) -> AppResult<Self> {
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        Ok(Self { root })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh file name with `stem` and `ext` (unique in this process and across runs).
    pub fn fresh_name(&self, stem: &str, ext: &str) -> String {
        let ms = crate::store::now_ms();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        format!("{stem}-{ms}-{n}.{ext}")
    }

    /// Writes `bytes` as `name` atomically: a temporary file, fsync, rename, fsync of the
    /// folder. A crash leaves either no file or the whole file.
    pub fn write(&self, name: &str, bytes: &[u8]) -> AppResult<()> {
        let path = self.resolve(name)?;
        let tmp = self.root.join(format!(".{name}.partial"));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.root)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(result?)
    }

    /// Writes an RGB picture as PNG; returns its segment.
    pub fn write_png(&self, stem: &str, width: u32, height: u32, rgb: &[u8]) -> AppResult<Segment> {
        let img = image::RgbImage::from_raw(width, height, rgb.to_vec()).ok_or_else(|| {
            AppError::new(ErrorCode::Engine, "the decoded picture has the wrong size")
        })?;
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot encode PNG: {e}")))?;
        let file = self.fresh_name(stem, "png");
        self.write(&file, bytes.get_ref())?;
        Ok(Segment::Image {
            file,
            width,
            height,
        })
    }

    /// Writes mono samples as a 16-bit WAV (plays everywhere); returns its segment.
    pub fn write_wav(&self, stem: &str, samples: &[f32], rate: u32) -> AppResult<Segment> {
        let audio = WavAudio {
            sample_rate: rate,
            samples: vec![samples.to_vec()],
        };
        let bytes = wav_bytes(&audio, WavEncoding::Pcm16)
            .map_err(|e| AppError::new(ErrorCode::Internal, format!("cannot encode WAV: {e}")))?;
        let file = self.fresh_name(stem, "wav");
        self.write(&file, &bytes)?;
        Ok(Segment::Audio {
            file,
            duration_s: samples.len() as f64 / f64::from(rate.max(1)),
        })
    }

    /// The path of media file `name`: a plain file name inside the folder, nothing else
    /// (no separators, no `..`, no hidden files).
    pub fn resolve(&self, name: &str) -> AppResult<PathBuf> {
        let mut parts = Path::new(name).components();
        let ok = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) && !name.starts_with('.')
            && !name.contains(['/', '\\', ':']);
        if !ok {
            return Err(AppError::new(
                ErrorCode::InvalidInput,
                format!("not a media file name: {name}"),
            ));
        }
        Ok(self.root.join(name))
    }

    /// Validates and stores an attachment: images must decode (header and size checked),
    /// audio must decode; anything else is refused.
    pub fn import(&self, name: &str, bytes: &[u8]) -> AppResult<Attachment> {
        if bytes.is_empty() || bytes.len() > MAX_IMPORT_BYTES {
            return Err(AppError::new(
                ErrorCode::InvalidInput,
                format!("{name} is empty or larger than 64 MB"),
            ));
        }
        if let Ok(format) = image::guess_format(bytes) {
            return self.import_image(name, bytes, format);
        }
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("bin")
            .to_ascii_lowercase();
        if VIDEO_EXTS.contains(&ext.as_str()) {
            return self.import_video(name, bytes, &ext);
        }
        if !["wav", "mp3", "flac", "ogg"].contains(&ext.as_str()) {
            return Err(AppError::new(
                ErrorCode::InvalidInput,
                format!("{name}: unsupported file (drop a PNG, JPEG, WebP, GIF or BMP picture, WAV, MP3, FLAC or OGG audio, or an MP4, WebM, MKV, MOV or AVI video)"),
            ));
        }
        let file = self.fresh_name("input", &ext);
        self.write(&file, bytes)?;
        match mio_runtime::audio::decode_file(&self.root.join(&file)) {
            Ok(clip) => Ok(Attachment {
                kind: MediaKind::Audio,
                segment: Segment::Audio {
                    file,
                    duration_s: clip.samples.len() as f64 / f64::from(clip.sample_rate.max(1)),
                },
                name: name.to_string(),
            }),
            Err(e) => {
                let _ = std::fs::remove_file(self.root.join(&file));
                Err(AppError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "{name} is not readable audio: {}",
                        mio_runtime::commands::one_sentence(&e)
                    ),
                ))
            }
        }
    }

    /// Stores a video and its keyframes (the runtime's scene-cut selection) as PNG files.
    fn import_video(&self, name: &str, bytes: &[u8], ext: &str) -> AppResult<Attachment> {
        let file = self.fresh_name("input", ext);
        self.write(&file, bytes)?;
        let opts = mio_runtime::video::KeyframeOptions::default();
        let keyframes = mio_runtime::video::extract_keyframes(&self.root.join(&file), &opts);
        let mut written = vec![file.clone()];
        let result = keyframes
            .map_err(|e| {
                AppError::new(
                    ErrorCode::InvalidInput,
                    format!(
                        "{name} is not a readable video: {}",
                        mio_runtime::commands::one_sentence(&e)
                    ),
                )
            })
            .and_then(|kf| {
                let (mut frames, mut times_s, mut size) = (vec![], vec![], (0, 0));
                for k in &kf.frames {
                    let (w, h) = k.image.dimensions();
                    if let Segment::Image { file, .. } =
                        self.write_png("frame", w, h, k.image.as_raw())?
                    {
                        written.push(file.clone());
                        frames.push(file);
                        times_s.push(k.time_s);
                        size = (w, h);
                    }
                }
                if frames.is_empty() {
                    return Err(AppError::new(
                        ErrorCode::InvalidInput,
                        format!("{name} has no frame to show"),
                    ));
                }
                Ok(Segment::Video {
                    file: file.clone(),
                    frames,
                    times_s,
                    width: size.0,
                    height: size.1,
                })
            });
        match result {
            Ok(segment) => Ok(Attachment {
                kind: MediaKind::Video,
                segment,
                name: name.to_string(),
            }),
            Err(e) => {
                for f in written {
                    let _ = std::fs::remove_file(self.root.join(f));
                }
                Err(e)
            }
        }
    }

    fn import_image(
        &self,
        name: &str,
        bytes: &[u8],
        format: image::ImageFormat,
    ) -> AppResult<Attachment> {
        let bad = |e: &dyn std::fmt::Display| {
            AppError::new(
                ErrorCode::InvalidInput,
                format!("{name} is not a readable picture: {e}"),
            )
        };
        let img = image::load_from_memory_with_format(bytes, format).map_err(|e| bad(&e))?;
        let ext = format.extensions_str().first().copied().unwrap_or("img");
        let file = self.fresh_name("input", ext);
        self.write(&file, bytes)?;
        Ok(Attachment {
            kind: MediaKind::Image,
            segment: Segment::Image {
                file,
                width: img.width(),
                height: img.height(),
            },
            name: name.to_string(),
        })
    }
}

/// MIME type of a media file name.
pub fn mime_of(name: &str) -> &'static str {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("flac") => "audio/flac",
        Some("ogg") => "audio/ogg",
        Some("mp4" | "m4v") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("mov") => "video/quicktime",
        Some("avi") => "video/x-msvideo",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn dir() -> (tempfile::TempDir, MediaDir) {
        let tmp = tempfile::tempdir().unwrap();
        let media = MediaDir::open(tmp.path().join("media")).unwrap();
        (tmp, media)
    }

    #[test]
    fn resolve_refuses_paths_outside_the_folder() {
        let (_t, m) = dir();
        assert!(m.resolve("a.png").is_ok());
        for bad in [
            "../a.png",
            "/etc/passwd",
            "x/../../a",
            ".hidden",
            "",
            "a/b.png",
            "..",
            "c:x",
        ] {
            assert!(m.resolve(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn atomic_write_leaves_no_temporary() {
        let (_t, m) = dir();
        m.write("x.bin", b"hello").unwrap();
        let names: Vec<_> = std::fs::read_dir(m.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.bin")]);
        assert_eq!(std::fs::read(m.root().join("x.bin")).unwrap(), b"hello");
    }

    #[test]
    fn imports_pictures_and_refuses_corrupt_or_unknown_files() {
        let (_t, m) = dir();
        let seg = m.write_png("p", 2, 1, &[255, 0, 0, 0, 255, 0]).unwrap();
        let Segment::Image { file, .. } = seg else {
            panic!()
        };
        let bytes = std::fs::read(m.root().join(file)).unwrap();
        let a = m.import("red.png", &bytes).unwrap();
        assert_eq!(a.kind, MediaKind::Image);
        assert!(matches!(
            a.segment,
            Segment::Image {
                width: 2,
                height: 1,
                ..
            }
        ));
        let mut corrupt = bytes.clone();
        corrupt.truncate(20);
        assert_eq!(
            m.import("bad.png", &corrupt).unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            m.import("notes.txt", b"hello").unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert_eq!(
            m.import("bad.wav", b"RIFFjunk").unwrap_err().code,
            ErrorCode::InvalidInput
        );
    }

    fn video_fixture(name: &str) -> Vec<u8> {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/video/");
        std::fs::read(format!("{p}{name}")).unwrap()
    }

    #[test]
    fn a_video_becomes_its_keyframes_and_a_bad_one_leaves_nothing() {
        let (_t, m) = dir();
        let a = m.import("cut3.mp4", &video_fixture("cut3.mp4")).unwrap();
        assert_eq!(a.kind, MediaKind::Video);
        let Segment::Video {
            file,
            frames,
            times_s,
            width,
            ..
        } = &a.segment
        else {
            panic!("{:?}", a.segment)
        };
        assert!(frames.len() >= 2, "{frames:?}");
        assert_eq!(frames.len(), times_s.len());
        assert!(times_s.windows(2).all(|w| w[0] < w[1]));
        assert!(*width > 0);
        for f in std::iter::once(file).chain(frames) {
            assert!(m.resolve(f).unwrap().is_file());
        }
        let before = std::fs::read_dir(m.root()).unwrap().count();
        let err = m
            .import("garbage.mp4", &video_fixture("garbage.mp4"))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(err.message.contains("garbage.mp4"), "{}", err.message);
        assert_eq!(std::fs::read_dir(m.root()).unwrap().count(), before);
    }

    #[test]
    fn audio_round_trips_through_import() {
        let (_t, m) = dir();
        let samples: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        let Segment::Audio { file, duration_s } = m.write_wav("s", &samples, 16_000).unwrap()
        else {
            panic!()
        };
        assert!((duration_s - 0.1).abs() < 1e-9);
        let bytes = std::fs::read(m.root().join(file)).unwrap();
        let a = m.import("clip.wav", &bytes).unwrap();
        assert_eq!(a.kind, MediaKind::Audio);
        assert_eq!(mime_of("a.wav"), "audio/wav");
    }
}
