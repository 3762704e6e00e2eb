//! Downloads MIO releases from the Hugging Face Hub: resumable, verified, only the files MIO
//! reads. Used by `mio download` and the app's model manager.

mod api;
pub mod cli;
mod fetch;
mod select;

pub use api::{HubClient, RepoFile};
pub use fetch::{download, DownloadOptions, DownloadProgress, DownloadReport};
pub use select::select;
