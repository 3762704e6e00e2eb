//! Process-wide allocator settings for the model workloads (glibc on Linux; elsewhere
//! nothing).
//!
//! The codecs and the unCLIP decoder allocate and free tensors of tens of megabytes many
//! times per call. With glibc's defaults each one is a fresh `mmap` that the kernel zeroes
//! page by page on first touch and unmaps on free: `perf` showed the kernel's `clear_page`
//! at 16 % of an unCLIP decode, and the SpeechTokenizer ran 25–30 % faster with the settings
//! below (`mio bench speech`, real size: encode 3.0 → 2.2–2.7 s, decode 2.1–2.4 → 1.5–1.8 s).
//! [`tune_allocator`] raises the mmap threshold to its maximum (32 MiB), so such buffers
//! come from the heap and are reused, and stops glibc from trimming the heap after every
//! free; [`release_free_memory`] hands the freed heap back to the system between jobs, so a
//! finished generation does not keep its peak resident.
//!
//! [`TensorAllocator`] (the global allocator of `mio` and the app) maps buffers of 32 MiB
//! and more itself and asks the kernel for transparent huge pages on them and on heap
//! blocks from 4 MiB up: one page fault per 2 MiB instead of per 4 KiB; and it keeps up to
//! 1 GiB of freed mappings for the next tensor of about the same size (no faults, no
//! zeroing), until the worker's job ends. Page faults are dear in a virtual machine: `perf`
//! of an unCLIP step still shows the kernel zeroing fresh pages at 8–16 %. (Loading the
//! real-size SEED image tokenizer stayed at 37–41 s with this allocator, while one run with
//! glibc's own `glibc.malloc.hugetlb=1` tunable took 17 s: not yet understood.)

/// Called once at start-up, before the first model loads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes glibc's allocator parameters; it is called before the
    // program's other threads allocate, and the values are within glibc's documented ranges
    // (M_MMAP_THRESHOLD at most 32 MiB on 64-bit targets).
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Returns the heap's free memory to the system (after a job; cheap when little is free).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free heap pages; it is safe to call at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "linux")]
    mapped::drain_cache();
}

/// Buffers from this size up are mapped by [`TensorAllocator`] (glibc's own mmap threshold,
/// as [`tune_allocator`] sets it, so smaller ones keep coming from the reused heap).
pub const MAPPED_FROM: usize = 32 << 20;

/// The process's global allocator: the system's, except that buffers of [`MAPPED_FROM`]
/// bytes and more are anonymous mappings advised for transparent huge pages (Linux; the
/// system allocator everywhere else). Install it in a binary with
/// `#[global_allocator] static ALLOC: mio_runtime::memory::TensorAllocator = TensorAllocator;`.
pub struct TensorAllocator;

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod mapped {
    use std::alloc::Layout;

    const PAGE: usize = 4096;

    fn len(size: usize) -> usize {
        size.div_ceil(PAGE) * PAGE
    }

    /// Whether this layout is served by a mapping of its own.
    pub fn serves(layout: Layout) -> bool {
        layout.size() >= super::MAPPED_FROM && layout.align() <= PAGE
    }

    fn advise(ptr: *mut u8, size: usize) {
        // SAFETY: `ptr..ptr + len(size)` is a mapping this module made; the advice only
        // changes how the kernel backs untouched pages and cannot fail in a way that
        // matters (an old kernel without THP answers EINVAL, which is ignored).
        unsafe {
            libc::madvise(ptr.cast(), len(size), libc::MADV_HUGEPAGE);
        }
    }

    /// Advises the whole 2 MiB pages inside a heap block of `size` bytes at `ptr` for huge
    /// pages (blocks from 4 MiB up): pages not yet touched then fault in 2 MiB at a time.
    pub fn advise_heap(ptr: *mut u8, size: usize) {
        const HUGE: usize = 2 << 20;
        if ptr.is_null() || size < 2 * HUGE {
            return;
        }
        let start = (ptr as usize).div_ceil(HUGE) * HUGE;
        let end = (ptr as usize + size) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside a live block the system allocator just gave
            // out; the advice changes no contents, only how untouched pages get backed.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }

    /// Freed mappings kept for reuse: a tensor op's output of the same size as one just
    /// dropped (attention score blocks, the VAE's activations) then needs no page faults and
    /// no zeroing by the kernel. At most [`CACHE_SLOTS`] mappings and [`CACHE_BYTES`] bytes
    /// (4 GiB made an unCLIP decode's peak 3 GiB larger for no measurable speed);
    /// emptied between jobs by [`super::release_free_memory`]. A fixed array, so the
    /// allocator never allocates under its own lock.
    const CACHE_SLOTS: usize = 16;
    const CACHE_BYTES: usize = 1 << 30;

    struct Cache {
        slots: [(usize, usize); CACHE_SLOTS],
        bytes: usize,
    }

    static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Cache {
        slots: [(0, 0); CACHE_SLOTS],
        bytes: 0,
    });

    fn cache() -> std::sync::MutexGuard<'static, Cache> {
        CACHE.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A cached mapping of at least `size` bytes and at most half as much again, if any
    /// (taken out of the cache), with its length.
    fn take_cached(size: usize) -> Option<(*mut u8, usize)> {
        let want = len(size);
        let mut c = cache();
        let best = c
            .slots
            .iter()
            .enumerate()
            .filter(|(_, &(p, l))| p != 0 && l >= want && l <= want + want / 2)
            .min_by_key(|(_, &(_, l))| l)
            .map(|(i, _)| i)?;
        let (p, l) = std::mem::take(&mut c.slots[best]);
        c.bytes -= l;
        Some((p as *mut u8, l))
    }

    /// Keeps a freed mapping for reuse when there is room; false when the caller must unmap.
    fn keep(ptr: *mut u8, l: usize) -> bool {
        let mut c = cache();
        if c.bytes + l > CACHE_BYTES {
            return false;
        }
        let Some(slot) = c.slots.iter_mut().find(|(p, _)| *p == 0) else {
            return false;
        };
        *slot = (ptr as usize, l);
        c.bytes += l;
        true
    }

    /// Unmaps every cached mapping.
    pub fn drain_cache() {
        let mut c = cache();
        for slot in c.slots.iter_mut() {
            let (p, l) = std::mem::take(slot);
            if p != 0 {
                // SAFETY: a mapping of `l` bytes this module made and nothing uses.
                unsafe {
                    libc::munmap(p as *mut libc::c_void, l);
                }
            }
        }
        c.bytes = 0;
    }

    /// A mapping of at least `size` bytes from the cache, zeroed if `zeroed`, or a fresh
    /// zeroed one; null when the kernel refuses.
    pub fn take(size: usize, zeroed: bool) -> *mut u8 {
        if let Some((p, l)) = take_cached(size) {
            if l != len(size) {
                // Hand back the tail so the block is exactly `len(size)` long, as `unmap`
                // and `remap` expect. SAFETY: the tail lies inside this mapping, unused.
                unsafe {
                    libc::munmap(p.add(len(size)).cast(), l - len(size));
                }
            }
            if zeroed {
                // SAFETY: `p` is a mapping of at least `size` writable bytes.
                unsafe { p.write_bytes(0, size) };
            }
            return p;
        }
        map(size)
    }

    /// # Safety
    /// `ptr` came from [`take`], [`map`] or [`remap`] with this `size`, and is not used again.
    pub unsafe fn give_back(ptr: *mut u8, size: usize) {
        if !keep(ptr, len(size)) {
            // SAFETY: the caller's contract.
            unsafe { unmap(ptr, size) }
        }
    }

    /// A fresh zeroed mapping of `size` bytes, or null.
    pub fn map(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len(size),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        advise(p.cast(), size);
        p.cast()
    }

    /// # Safety
    /// `ptr` came from [`map`] or [`remap`] with this `size`.
    pub unsafe fn unmap(ptr: *mut u8, size: usize) {
        // SAFETY: the caller's contract: this is exactly one of our mappings.
        unsafe {
            libc::munmap(ptr.cast(), len(size));
        }
    }

    /// Grows or shrinks a mapping, moving it if needed; null when the kernel refuses (the
    /// old mapping is then untouched).
    ///
    /// # Safety
    /// `ptr` came from [`map`] or [`remap`] with `old` bytes.
    pub unsafe fn remap(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
        // SAFETY: the caller's contract: `ptr` is exactly one of our mappings of `old`
        // bytes; MREMAP_MAYMOVE leaves it intact when it fails.
        let p = unsafe { libc::mremap(ptr.cast(), len(old), len(new), libc::MREMAP_MAYMOVE) };
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        advise(p.cast(), new);
        p.cast()
    }
}

// SAFETY: every block is either the system allocator's (forwarded unchanged) or one mapping
// of its own, chosen by the layout alone, which the caller passes back identically to
// `dealloc` and `realloc`; mappings are page-aligned, zeroed, and at least `size` long.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for TensorAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if mapped::serves(layout) {
            return mapped::take(layout.size(), false);
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { std::alloc::System.alloc(layout) };
        #[cfg(target_os = "linux")]
        mapped::advise_heap(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if mapped::serves(layout) {
            return mapped::take(layout.size(), true);
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        #[cfg(target_os = "linux")]
        mapped::advise_heap(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        #[cfg(target_os = "linux")]
        if mapped::serves(layout) {
            // SAFETY: a layout this size was served by `mapped::take`/`remap`.
            return unsafe { mapped::give_back(ptr, layout.size()) };
        }
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        #[cfg(target_os = "linux")]
        {
            let Ok(new_layout) = std::alloc::Layout::from_size_align(new_size, layout.align())
            else {
                return std::ptr::null_mut();
            };
            let (old_mapped, new_mapped) = (mapped::serves(layout), mapped::serves(new_layout));
            if old_mapped && new_mapped {
                // SAFETY: `ptr` is our mapping of `layout.size()` bytes.
                return unsafe { mapped::remap(ptr, layout.size(), new_size) };
            }
            if old_mapped || new_mapped {
                // SAFETY: a fresh block of the new layout, the overlap copied, the old block
                // freed with its own layout; on failure the old block is left as it was.
                unsafe {
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    return new;
                }
            }
        }
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        #[cfg(target_os = "linux")]
        mapped::advise_heap(p, new_size);
        p
    }
}

#[cfg(test)]
#[allow(unsafe_code, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn big_blocks_are_zeroed_writable_and_keep_their_contents_when_resized() {
        let a = TensorAllocator;
        let big = MAPPED_FROM + 12345;
        let layout = Layout::from_size_align(big, 64).unwrap();
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0);
            let s = std::slice::from_raw_parts_mut(p, big);
            assert!(s.iter().step_by(4093).all(|&b| b == 0));
            s[0] = 7;
            s[big - 1] = 9;
            // Grow within mappings, then shrink below the threshold into the heap, then
            // grow back into a mapping: the contents survive each move.
            let p = a.realloc(p, layout, 2 * big);
            assert!(!p.is_null());
            assert_eq!((*p, *p.add(big - 1)), (7, 9));
            let layout = Layout::from_size_align(2 * big, 64).unwrap();
            let p = a.realloc(p, layout, 1000);
            assert!(!p.is_null());
            assert_eq!(*p, 7);
            let layout = Layout::from_size_align(1000, 64).unwrap();
            let p = a.realloc(p, layout, big);
            assert!(!p.is_null());
            assert_eq!(*p, 7);
            a.dealloc(p, Layout::from_size_align(big, 64).unwrap());
        }
    }

    #[test]
    fn a_freed_mapping_is_reused_and_comes_back_zeroed_when_asked() {
        let a = TensorAllocator;
        let size = MAPPED_FROM + 4096 * 3;
        let layout = Layout::from_size_align(size, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xAB, size);
            a.dealloc(p, layout);
            // The same size again (other tests may take it first: then a fresh mapping,
            // which is zeroed too).
            let q = a.alloc_zeroed(layout);
            assert!(!q.is_null());
            let s = std::slice::from_raw_parts(q, size);
            assert!(s.iter().step_by(997).all(|&b| b == 0) && s[size - 1] == 0);
            a.dealloc(q, layout);
            // A slightly smaller block may reuse a bigger cached mapping; it must be usable
            // to its end and free cleanly.
            let small = Layout::from_size_align(size - 8192, 8).unwrap();
            let r = a.alloc(small);
            assert!(!r.is_null());
            r.write_bytes(1, small.size());
            a.dealloc(r, small);
        }
        release_free_memory();
    }

    #[test]
    fn small_and_over_aligned_blocks_go_to_the_system_allocator() {
        let a = TensorAllocator;
        unsafe {
            for layout in [
                Layout::from_size_align(100, 8).unwrap(),
                Layout::from_size_align(MAPPED_FROM, 1 << 16).unwrap(),
            ] {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % layout.align(), 0);
                p.write_bytes(1, layout.size());
                a.dealloc(p, layout);
            }
        }
    }
}
