//! Safe reader for PyTorch `torch.save` zip checkpoints (`.bin`, `.pt`, `.pth`).
//!
//! Replaces `torch.load` for the MIO release's pickles (LM shards, `SpeechTokenizer.pt`,
//! `eva_vit_g.pth`, `seed_quantizer.pt`). The pickle is run by a restricted machine that
//! knows only the tensor-rebuild globals and refuses anything else by name
//! ([`crate::Error::UnsafePickle`]); tensor data is read lazily from the memory-mapped zip.

mod archive;
mod backend;
mod pth_file;
mod tensor;
#[cfg(test)]
mod test_util;
mod value;
mod vm;

pub(crate) use backend::check_stored_shape;
pub use backend::PthShards;
pub use pth_file::PthFile;
pub use tensor::{PthDType, TensorInfo};
