//! Ids of MIO's special and media tokens, read from the release's tokenizer files.

/// Where MIO's special and media tokens sit in the vocabulary.
///
/// Built from the tokenizer files (never hard-coded): for the real release
/// `text_vocab_size` = 64000, `img0` = 64006, `spch0` = 72198; for the tiny model
/// 1000, 1006 and 9198.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MioVocab {
    /// `<unk>`.
    pub unk: u32,
    /// `<|startoftext|>` (bos).
    pub bos: u32,
    /// `<|endoftext|>` (eos of the base model).
    pub eos: u32,
    /// `<|im_start|>`.
    pub im_start: u32,
    /// `<|im_end|>` (eos of the Instruct model).
    pub im_end: u32,
    /// `<image>`.
    pub image_start: u32,
    /// `</image>`.
    pub image_end: u32,
    /// `<spch>`.
    pub speech_start: u32,
    /// `</spch>`.
    pub speech_end: u32,
    /// `[IMG]` (unused placeholder token of the release).
    pub image_placeholder: u32,
    /// `[SPCH]` (unused placeholder token of the release).
    pub speech_placeholder: u32,
    /// Number of sentencepiece (text) tokens.
    pub text_vocab_size: u32,
    /// Id of `<img0>`; `<imgN>` = `img0 + N`.
    pub img0: u32,
    /// Number of image codes (8192).
    pub n_image_codes: u32,
    /// Id of `<spch0>`; `<spchN>` = `spch0 + N`.
    pub spch0: u32,
    /// Number of speech tokens (4096 = 4 layers × 1024).
    pub n_speech_tokens: u32,
    /// Size of one speech codebook (1024): layer k of a speech block uses
    /// `<spch{k*1024 + code}>`.
    pub speech_codebook_size: u32,
    /// Total vocabulary size.
    pub vocab_size: u32,
}

impl MioVocab {
    /// The image code of `id`, when `id` is an `<imgN>` token.
    pub fn image_code(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.img0)
            .filter(|c| *c < self.n_image_codes)
    }

    /// The speech token number N of `id`, when `id` is a `<spchN>` token.
    pub fn speech_token(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.spch0)
            .filter(|c| *c < self.n_speech_tokens)
    }
}
