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
//! blocks from 4 MiB up: one page fault per 2 MiB instead of per 4 KiB. Loading the real-size SEED image tokenizer (2 GB of f16
//! weights turned into 4 GB of f32) went from 41 s to 17 s with it, most of the difference
//! being page faults, which are dear in a virtual machine.

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
            return mapped::map(layout.size());
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
            return mapped::map(layout.size());
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
            // SAFETY: a layout this size was served by `mapped::map`/`remap`.
            return unsafe { mapped::unmap(ptr, layout.size()) };
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
