//! The MIO Desktop window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[global_allocator]
static ALLOC: mio_runtime::memory::TensorAllocator = mio_runtime::memory::TensorAllocator;

fn main() {
    mio_desktop::run();
}
