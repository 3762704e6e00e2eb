//! Video decoding in a build without the `video` feature (no FFmpeg libraries linked, e.g.
//! to run `mio` on a machine that lacks them): the same API, and opening any file is one
//! clear error.

use std::path::Path;

use anyhow::{bail, Result};

use super::frame::{VideoFrame, VideoInfo};

/// A video file being decoded (never constructed in this build).
pub struct VideoReader {
    info: VideoInfo,
}

impl VideoReader {
    /// Fails: this build has no video decoder.
    pub fn open(path: &Path) -> Result<Self> {
        bail!(
            "cannot read {}: this build of mio has no video decoding (it was built without \
             the `video` feature, which links FFmpeg)",
            path.display()
        )
    }

    /// The stream's description.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Never reached (no reader can be opened).
    pub fn for_each_frame(self, _f: impl FnMut(VideoFrame) -> Result<bool>) -> Result<usize> {
        bail!("this build of mio has no video decoding")
    }
}
