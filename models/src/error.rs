//! The one error type of mio-models.

use std::path::PathBuf;

/// Everything that can go wrong inside mio-models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A required file of the model folder is missing.
    #[error("missing model file {0}")]
    MissingFile(PathBuf),
    /// A JSON file could not be parsed.
    #[error("cannot parse {path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde said.
        message: String,
    },
    /// A checkpoint is corrupt, truncated or not laid out as expected.
    #[error("invalid checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A pickle names a global outside the tensor-rebuild allowlist; nothing was executed.
    #[error("refusing to load {path}: its pickle uses the global {global}, which is not a tensor-rebuild global")]
    UnsafePickle {
        /// The checkpoint file.
        path: PathBuf,
        /// The refused global, as `module.name` (e.g. `posix.system`).
        global: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("tensor {name} has shape {got:?}, expected {expected:?} from the config")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape found in the checkpoint.
        got: Vec<usize>,
    },
    /// A tensor the model needs is absent from every shard.
    #[error("tensor {0} is missing from the checkpoint")]
    MissingTensor(String),
    /// A model configuration is inconsistent or invalid.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// The tokenizer files are invalid or inconsistent.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tokenizer file (`tokenizer.model`, `tokenizer_config.json`, ...) is corrupt or unsupported.
    #[error("invalid tokenizer file {path}: {message}")]
    TokenizerFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A token id outside the vocabulary.
    #[error("unknown token id {id} (vocabulary has {vocab_size} tokens)")]
    UnknownTokenId {
        /// The offending id.
        id: u32,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// Generation was asked to continue an empty prompt.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt plus the requested new tokens do not fit the context.
    #[error("the prompt has {len} tokens, which with the answer's new tokens does not fit the model's context of {max}: start a new conversation or ask for fewer new tokens")]
    PromptTooLong {
        /// Prompt length in tokens.
        len: usize,
        /// Context length of the model.
        max: usize,
    },
    /// Invalid generation or request parameters.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A media block in model output is malformed (see [`crate::text::BlockError`]).
    #[error("malformed block: {0}")]
    MalformedBlock(#[from] crate::text::BlockError),
    /// An audio file or buffer is malformed or in an unsupported encoding.
    #[error("audio: {0}")]
    Audio(String),
    /// The requested device or feature is not available in this build.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Generation cannot go on: the LM broke the `CausalLm` contract or no token is possible.
    #[error("generation failed: {0}")]
    Generation(String),
    /// The remote LM server (`--lm-url`) is unreachable, failed, timed out, answered
    /// something unexpected or serves another vocabulary.
    #[error("remote LM: {0}")]
    RemoteLm(String),
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// An image file is corrupt, truncated or in an unsupported format.
    #[error("cannot read image {path}: {message}")]
    ImageDecode {
        /// The image file.
        path: PathBuf,
        /// Why it cannot be decoded.
        message: String,
    },
    /// An image has no pixels (zero width or height).
    #[error("the image is empty ({width}x{height} pixels)")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A component of the unCLIP image decoder is missing from the release folder.
    #[error("the image decoder lacks its {component}: {path} is missing (image output needs the whole stable-diffusion-2-1-unclip/ folder)")]
    MissingComponent {
        /// The component (`unet`, `vae`, ...).
        component: String,
        /// The missing file or folder.
        path: PathBuf,
    },
    /// A model produced NaN or infinite values (broken or mismatched weights).
    #[error("{0}")]
    NonFinite(String),
    /// An error inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}
