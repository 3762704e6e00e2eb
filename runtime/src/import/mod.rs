//! `mio import`: a release folder as it ships → a ready, quantized model folder.

mod cli;
mod hash;
mod pace;
mod plan;
mod run;
mod state;

pub(crate) use cli::bar_line;
pub use cli::run as run_cli;
pub use hash::{expected_hashes, sha256_file, ExpectedHash};
pub use pace::{Pace, PaceMeter};
pub use plan::{Action, ImportPlan, Step};
pub use run::{import_release, ImportOptions, ImportProgress, ImportReport};
