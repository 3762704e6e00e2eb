//! The MIO Desktop window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    mio_desktop::run();
}
