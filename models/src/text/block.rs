//! Typed errors for malformed media blocks in model output.

/// Why an image or speech block in model output cannot be decoded as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[non_exhaustive]
pub enum BlockError {
    /// An image block without exactly 32 codes.
    #[error("image block has {got} codes, expected {expected}")]
    ImageCodeCount {
        /// Codes found.
        got: usize,
        /// Codes required.
        expected: usize,
    },
    /// A speech block with no speech tokens.
    #[error("speech block holds no speech tokens")]
    EmptySpeech,
    /// Speech layers out of order (content, timbre0, timbre1, timbre2 expected).
    #[error("speech layers out of order: {0:?}")]
    SpeechLayerOrder(Vec<String>),
    /// Speech layers of unequal lengths.
    #[error("speech layers have unequal lengths {0:?}")]
    SpeechLayerLengths(Vec<usize>),
    /// A block opened but never closed (generation stopped inside it, or another token
    /// interrupted it).
    #[error("{0} block was not closed")]
    Unterminated(&'static str),
    /// A media token (`<imgN>`, `<spchN>`, `</image>`, `</spch>`) outside any block; it is
    /// kept as text.
    #[error("media token {0} outside a block")]
    StrayToken(String),
}
