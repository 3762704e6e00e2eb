//! Zip access for `torch.save` checkpoints: the file is memory-mapped once and stored
//! (uncompressed) entries, which is all `torch.save` writes, are handed out as slices of
//! the map without copying; compressed entries fall back to a decompressing read.
//!
//! Ports nothing upstream; it replaces `torch.serialization._open_zipfile_reader`.
//! Every entry's range is checked against the file length when the archive is opened,
//! so a truncated file is reported then, not when a tensor is read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use zip::{CompressionMethod, ZipArchive};

use crate::{Error, Result};

/// The first bytes of a pre-1.6 (non-zip) `torch.save` file: PROTO 2, LONG1 magic number.
const LEGACY_MAGIC: [u8; 4] = [0x80, 0x02, 0x8a, 0x0a];

/// The memory map, shareable with the zip reader.
#[derive(Clone)]
struct MapBytes(Arc<Mmap>);

impl AsRef<[u8]> for MapBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where one entry's bytes are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    index: usize,
    stored: bool,
    data_start: usize,
    size: usize,
}

/// A memory-mapped zip archive with an index of its entries.
pub(crate) struct Archive {
    path: PathBuf,
    map: Arc<Mmap>,
    zip: ZipArchive<Cursor<MapBytes>>,
    entries: HashMap<String, Entry>,
}

impl Archive {
    /// Maps `path` and indexes its entries.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let map = Arc::new(map_file(&file).map_err(|e| Error::io(path, e))?);
        if map.starts_with(&LEGACY_MAGIC) {
            return Err(Error::checkpoint(
                path,
                "legacy (pre torch 1.6) checkpoint format is not supported; re-save it with a recent torch.save",
            ));
        }
        let zip = ZipArchive::new(Cursor::new(MapBytes(map.clone())))
            .map_err(|e| Error::checkpoint(path, format!("not a valid zip archive: {e}")))?;
        let mut zip = zip;
        let entries = index_entries(path, &mut zip, map.len())?;
        Ok(Self {
            path: path.to_owned(),
            map,
            zip,
            entries,
        })
    }

    /// The checkpoint file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry name.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Uncompressed size of the entry `name`, if present.
    pub(crate) fn size(&self, name: &str) -> Option<usize> {
        self.entries.get(name).map(|e| e.size)
    }

    /// The bytes of entry `name`: borrowed from the map when stored, read otherwise.
    pub(crate) fn read(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let Some(entry) = self.entries.get(name).copied() else {
            return Err(self.corrupt(format!("entry {name} is missing")));
        };
        if entry.stored {
            return match self
                .map
                .get(entry.data_start..entry.data_start + entry.size)
            {
                Some(bytes) => Ok(Cow::Borrowed(bytes)),
                None => Err(self.corrupt(format!("entry {name} is truncated"))),
            };
        }
        let mut zip = self.zip.clone();
        let file = zip
            .by_index(entry.index)
            .map_err(|e| self.corrupt(format!("entry {name}: {e}")))?;
        let mut out = Vec::with_capacity(entry.size.min(1 << 26));
        file.take(entry.size as u64)
            .read_to_end(&mut out)
            .map_err(|e| self.corrupt(format!("entry {name} cannot be decompressed: {e}")))?;
        if out.len() != entry.size {
            return Err(self.corrupt(format!("entry {name} is truncated")));
        }
        Ok(Cow::Owned(out))
    }

    /// Drops the mapped pages of the stored entry `name` from this process (they are read
    /// from the file again if touched), so streaming through a shard bigger than memory keeps
    /// the resident set at one tensor. Best effort: errors are ignored.
    pub(crate) fn release(&self, name: &str) {
        if let Some(entry) = self.entries.get(name).filter(|e| e.stored) {
            release_range(&self.map, entry.data_start, entry.size);
        }
    }

    /// [`Self::release`] for `len` bytes from `start` inside the stored entry `name`.
    pub(crate) fn release_part(&self, name: &str, start: usize, len: usize) {
        if let Some(entry) = self.entries.get(name).filter(|e| e.stored) {
            if start.saturating_add(len) <= entry.size {
                release_range(&self.map, entry.data_start + start, len);
            }
        }
    }

    fn corrupt(&self, message: String) -> Error {
        Error::checkpoint(&self.path, message)
    }
}

/// Locates every entry's data and checks that it lies inside the file.
fn index_entries(
    path: &Path,
    zip: &mut ZipArchive<Cursor<MapBytes>>,
    file_len: usize,
) -> Result<HashMap<String, Entry>> {
    let corrupt = |message: String| Error::checkpoint(path, message);
    let mut entries = HashMap::with_capacity(zip.len());
    for index in 0..zip.len() {
        let file = zip
            .by_index_raw(index)
            .map_err(|e| corrupt(format!("{e}")))?;
        let name = file.name().to_owned();
        if file.encrypted() {
            return Err(corrupt(format!("entry {name} is encrypted")));
        }
        let stored = file.compression() == CompressionMethod::Stored;
        let (size, packed) = (file.size(), file.compressed_size());
        let start = file
            .data_start()
            .ok_or_else(|| corrupt(format!("entry {name} has no data")))?;
        let end = start
            .checked_add(packed)
            .filter(|&end| end <= file_len as u64);
        if end.is_none() || (stored && size != packed) {
            return Err(corrupt(format!(
                "entry {name} is truncated: it needs {packed} bytes from offset {start} but the file has {file_len}"
            )));
        }
        let (data_start, size) = (to_usize(start)?, to_usize(size)?);
        entries.insert(
            name,
            Entry {
                index,
                stored,
                data_start,
                size,
            },
        );
    }
    Ok(entries)
}

fn to_usize(n: u64) -> Result<usize> {
    usize::try_from(n)
        .map_err(|_| Error::Unsupported("zip entry larger than the address space".into()))
}

/// Maps the whole file read-only.
#[cfg(unix)]
#[allow(unsafe_code)]
fn release_range(map: &Mmap, offset: usize, len: usize) {
    if offset.checked_add(len).is_none_or(|end| end > map.len()) || len == 0 {
        return;
    }
    // SAFETY: the map is a read-only shared file mapping (`Mmap::map`), so MADV_DONTNEED only
    // drops the process's page-table entries: a later access faults the same bytes back in
    // from the file; no borrowed slice can observe different contents.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

#[cfg(not(unix))]
fn release_range(_: &Mmap, _: usize, _: usize) {}

#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the map is read-only and lives as long as the `Archive`. Like every mmap-based
    // checkpoint loader (safetensors, candle) we rely on the file not being truncated or
    // rewritten by another process while it is open; every slice taken from it is
    // bounds-checked against the length it had when mapped.
    unsafe { Mmap::map(file) }
}
