//! Ids of MIO's special and media tokens, read from the release's tokenizer files.

use crate::{Error, Result};

/// Number of speech layers in a MIO speech block (content + 3 timbre layers).
pub const SPEECH_LAYERS: u32 = 4;

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

impl MioVocab {
    /// Codes in one image block (SEED's 32 causal queries).
    pub const IMAGE_CODES_PER_BLOCK: usize = 32;

    /// Id of `<imgN>`.
    pub fn image_token(&self, code: u32) -> Option<u32> {
        (code < self.n_image_codes).then(|| self.img0 + code)
    }

    /// Id of `<spchN>` (N = layer·codebook + code).
    pub fn speech_token_id(&self, n: u32) -> Option<u32> {
        (n < self.n_speech_tokens).then(|| self.spch0 + n)
    }

    /// Builds the vocabulary from a token → id lookup (added tokens first, then
    /// sentencepiece pieces), checking that the media tokens are contiguous and that the
    /// ids `text_vocab_size..vocab_size` hold exactly the 6 specials and the media tokens.
    pub fn from_lookup(
        text_vocab_size: u32,
        vocab_size: u32,
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Result<Self> {
        let need =
            |t: &str| lookup(t).ok_or_else(|| Error::Tokenizer(format!("token {t} is missing")));
        let (img0, n_image_codes) = contiguous(&lookup, "img")?;
        let (spch0, n_speech_tokens) = contiguous(&lookup, "spch")?;
        if n_speech_tokens % SPEECH_LAYERS != 0 {
            return Err(Error::Tokenizer(format!(
                "{n_speech_tokens} speech tokens is not a multiple of 4 layers"
            )));
        }
        let v = MioVocab {
            unk: need("<unk>")?,
            bos: need("<|startoftext|>")?,
            eos: need("<|endoftext|>")?,
            im_start: need("<|im_start|>")?,
            im_end: need("<|im_end|>")?,
            image_start: need("<image>")?,
            image_end: need("</image>")?,
            speech_start: need("<spch>")?,
            speech_end: need("</spch>")?,
            image_placeholder: need("[IMG]")?,
            speech_placeholder: need("[SPCH]")?,
            text_vocab_size,
            img0,
            n_image_codes,
            spch0,
            n_speech_tokens,
            speech_codebook_size: n_speech_tokens / SPEECH_LAYERS,
            vocab_size,
        };
        v.check_layout()?;
        Ok(v)
    }

    /// The ids above the text vocabulary are exactly the 6 specials and the media tokens.
    fn check_layout(&self) -> Result<()> {
        let specials = [
            self.image_start,
            self.image_end,
            self.speech_start,
            self.speech_end,
            self.image_placeholder,
            self.speech_placeholder,
        ];
        let mut above: Vec<(u32, u32)> = specials.iter().map(|&id| (id, id + 1)).collect();
        above.push((self.img0, self.img0 + self.n_image_codes));
        above.push((self.spch0, self.spch0 + self.n_speech_tokens));
        above.sort_unstable();
        let mut next = self.text_vocab_size;
        for (start, end) in above {
            if start != next {
                return Err(Error::Tokenizer(format!(
                    "vocabulary layout: expected id {next} to start the next MIO token range, found {start} \
                     (text vocab {}, vocab {})",
                    self.text_vocab_size, self.vocab_size
                )));
            }
            next = end;
        }
        if next != self.vocab_size {
            return Err(Error::Tokenizer(format!(
                "vocabulary has {} ids but the text, special and media tokens end at {next}",
                self.vocab_size
            )));
        }
        Ok(())
    }
}

/// `(id of <{prefix}0>, count)` of the run `<{prefix}0>`, `<{prefix}1>`, … with consecutive
/// ids; errors if a further `<{prefix}N>` exists out of sequence.
fn contiguous(lookup: &impl Fn(&str) -> Option<u32>, prefix: &str) -> Result<(u32, u32)> {
    let first = lookup(&format!("<{prefix}0>"))
        .ok_or_else(|| Error::Tokenizer(format!("token <{prefix}0> is missing")))?;
    let mut n = 1u32;
    while let Some(id) = lookup(&format!("<{prefix}{n}>")) {
        if id != first + n {
            return Err(Error::Tokenizer(format!(
                "<{prefix}{n}> has id {id}, expected {}",
                first + n
            )));
        }
        n += 1;
    }
    Ok((first, n))
}

/// The tiny fixture model's vocabulary numbers (text vocab 1000, 6 specials, 8192 image and
/// 4096 speech tokens), for unit tests that need ids without loading the tokenizer.
#[cfg(test)]
pub(crate) fn tiny_vocab() -> MioVocab {
    MioVocab {
        unk: 0,
        bos: 1,
        eos: 2,
        im_start: 6,
        im_end: 7,
        image_start: 1005,
        image_end: 1004,
        speech_start: 1003,
        speech_end: 1001,
        image_placeholder: 1002,
        speech_placeholder: 1000,
        text_vocab_size: 1000,
        img0: 1006,
        n_image_codes: 8192,
        spch0: 9198,
        n_speech_tokens: 4096,
        speech_codebook_size: 1024,
        vocab_size: 13294,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn tiny(text: u32, n_img: u32, n_spch: u32) -> HashMap<String, u32> {
        let mut m: HashMap<String, u32> = HashMap::new();
        for (i, t) in [
            "<unk>",
            "<|startoftext|>",
            "<|endoftext|>",
            "x",
            "y",
            "z",
            "<|im_start|>",
            "<|im_end|>",
        ]
        .iter()
        .enumerate()
        {
            m.insert(t.to_string(), i as u32);
        }
        for (i, t) in [
            "[SPCH]", "</spch>", "[IMG]", "<spch>", "</image>", "<image>",
        ]
        .iter()
        .enumerate()
        {
            m.insert(t.to_string(), text + i as u32);
        }
        for n in 0..n_img {
            m.insert(format!("<img{n}>"), text + 6 + n);
        }
        for n in 0..n_spch {
            m.insert(format!("<spch{n}>"), text + 6 + n_img + n);
        }
        m
    }

    #[test]
    fn builds_and_checks_layout() {
        let m = tiny(1000, 8192, 4096);
        let v = MioVocab::from_lookup(1000, 13294, |t| m.get(t).copied()).unwrap();
        assert_eq!(
            (v.img0, v.spch0, v.speech_codebook_size, v.image_start),
            (1006, 9198, 1024, 1005)
        );
        assert_eq!(v.image_token(5), Some(1011));
        assert_eq!(v.speech_token_id(4096), None);
        assert!(MioVocab::from_lookup(1000, 13295, |t| m.get(t).copied()).is_err());
        let mut holes = tiny(1000, 8, 8);
        holes.insert("<img8>".into(), 5000);
        assert!(MioVocab::from_lookup(1000, 1022, |t| holes.get(t).copied()).is_err());
        let odd = tiny(1000, 8, 6);
        assert!(MioVocab::from_lookup(1000, 1020, |t| odd.get(t).copied()).is_err());
    }
}
