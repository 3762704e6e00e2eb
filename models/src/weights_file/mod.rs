//! One weights file, pickled (`.pt`/`.pth`/`.bin`) or safetensors, behind one interface,
//! and the streaming pickle → safetensors conversion `mio import` uses.

mod file;
mod write;

pub use file::{preferred_weights, WeightFile};
pub use write::{pth_to_safetensors, safetensors_dtype_name, safetensors_size};
