//! Test helpers: pickles assembled opcode by opcode and torch-style zips around them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// A protocol-2 pickle assembled opcode by opcode.
pub(crate) struct P(pub Vec<u8>);

impl P {
    pub(crate) fn new() -> Self {
        P(vec![0x80, 2])
    }
    pub(crate) fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }
    pub(crate) fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c').raw(format!("{module}\n{name}\n").as_bytes())
    }
    pub(crate) fn uni(self, s: &str) -> Self {
        self.op(b'X')
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    pub(crate) fn int(self, i: u8) -> Self {
        self.op(b'K').raw(&[i])
    }
    /// An int as LONG1 with 8 bytes, so any `u64` below 2^63 fits.
    pub(crate) fn long(self, v: u64) -> Self {
        self.op(0x8a).raw(&[8]).raw(&v.to_le_bytes())
    }
    /// `(v0, v1, ...)` of LONG1 ints.
    pub(crate) fn tuple(self, values: &[u64]) -> Self {
        values
            .iter()
            .fold(self.op(b'('), |p, &v| p.long(v))
            .op(b't')
    }
    /// `_rebuild_tensor_v2(('storage', torch.<kind>, key, 'cpu', numel), offset, shape, stride,
    /// False, OrderedDict())`.
    pub(crate) fn tensor_of(
        self,
        kind: &str,
        key: &str,
        numel: u64,
        offset: u64,
        shape: &[u64],
        stride: &[u64],
    ) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(')
            .op(b'(')
            .uni("storage")
            .global("torch", kind)
            .uni(key)
            .uni("cpu")
            .long(numel)
            .op(b't')
            .op(b'Q')
            .long(offset)
            .tuple(shape)
            .tuple(stride)
            .op(0x89)
            .global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b't')
            .op(b'R')
    }
    /// A contiguous float32 vector of `n` elements in storage `key`.
    pub(crate) fn tensor(self, key: &str, n: u8) -> Self {
        let n = u64::from(n);
        self.tensor_of("FloatStorage", key, n, 0, &[n], &[1])
    }
    pub(crate) fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
}

/// Writes `dir/<stem>.pt` laid out as `torch.save` does: `<stem>/data.pkl`, an optional
/// `<stem>/byteorder`, and `<stem>/data/<key>` for each storage.
pub(crate) fn checkpoint(
    dir: &Path,
    stem: &str,
    pickle: &[u8],
    storages: &[(&str, &[u8])],
    byteorder: Option<&str>,
) -> PathBuf {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file(format!("{stem}/data.pkl"), opts).unwrap();
    zip.write_all(pickle).unwrap();
    if let Some(order) = byteorder {
        zip.start_file(format!("{stem}/byteorder"), opts).unwrap();
        zip.write_all(order.as_bytes()).unwrap();
    }
    for (key, data) in storages {
        zip.start_file(format!("{stem}/data/{key}"), opts).unwrap();
        zip.write_all(data).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let path = dir.join(format!("{stem}.pt"));
    std::fs::write(&path, bytes).unwrap();
    path
}
