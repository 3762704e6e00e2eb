//! MIO media block strings and ids (`MIOTokenizer.tokenize_images` / `tokenize_speeches` of
//! the reference `tokenization_mio.py`, from codes already computed by the image and speech
//! tokenizers).
//!
//! * image: `<image>` + 32 × `<imgN>` + `</image>`;
//! * speech: `<spch>` + content `<spchN>` (layer 0) [+ layer k ∈ 1..3 as `<spch{N + 1024·k}>`,
//!   each layer complete before the next] + `</spch>`, no separators.

use super::vocab::MioVocab;
use crate::{Error, Result};

fn check_codes(codes: &[u32], limit: u32, what: &str) -> Result<()> {
    match codes.iter().find(|c| **c >= limit) {
        Some(c) => Err(Error::InvalidArgument(format!(
            "{what} code {c} is not below {limit}"
        ))),
        None => Ok(()),
    }
}

fn check_image(vocab: &MioVocab, codes: &[u32]) -> Result<()> {
    if codes.len() != MioVocab::IMAGE_CODES_PER_BLOCK {
        return Err(Error::InvalidArgument(format!(
            "an image block takes {} codes, got {}",
            MioVocab::IMAGE_CODES_PER_BLOCK,
            codes.len()
        )));
    }
    check_codes(codes, vocab.n_image_codes, "image")
}

/// Speech token numbers N (`<spchN>`) of a block: the content layer, then the three timbre
/// layers offset by `codebook · k`.
fn speech_numbers(
    vocab: &MioVocab,
    content: &[u32],
    timbre: Option<&[Vec<u32>; 3]>,
) -> Result<Vec<u32>> {
    let cb = vocab.speech_codebook_size;
    check_codes(content, cb, "speech content")?;
    let mut out = content.to_vec();
    if let Some(layers) = timbre {
        for (k, layer) in (1u32..).zip(layers.iter()) {
            if layer.len() != content.len() {
                return Err(Error::InvalidArgument(format!(
                    "timbre layer {k} has {} codes but the content layer has {}",
                    layer.len(),
                    content.len()
                )));
            }
            check_codes(layer, cb, "speech timbre")?;
            out.extend(layer.iter().map(|c| c + cb * k));
        }
    }
    Ok(out)
}

/// `<image><imgN>…</image>` of 32 image codes.
pub fn image_block(vocab: &MioVocab, codes: &[u32]) -> Result<String> {
    check_image(vocab, codes)?;
    let body: String = codes.iter().map(|c| format!("<img{c}>")).collect();
    Ok(format!("<image>{body}</image>"))
}

/// Token ids of [`image_block`].
pub fn image_block_ids(vocab: &MioVocab, codes: &[u32]) -> Result<Vec<u32>> {
    check_image(vocab, codes)?;
    let mut ids = vec![vocab.image_start];
    ids.extend(codes.iter().map(|c| vocab.img0 + c));
    ids.push(vocab.image_end);
    Ok(ids)
}

/// `<spch>…</spch>` of content codes (0..1023), optionally followed by the three timbre
/// layers (same length, codes 0..1023 each, offset by 1024·k in the string).
pub fn speech_block(
    vocab: &MioVocab,
    content: &[u32],
    timbre: Option<&[Vec<u32>; 3]>,
) -> Result<String> {
    let body: String = speech_numbers(vocab, content, timbre)?
        .iter()
        .map(|n| format!("<spch{n}>"))
        .collect();
    Ok(format!("<spch>{body}</spch>"))
}

/// Token ids of [`speech_block`].
pub fn speech_block_ids(
    vocab: &MioVocab,
    content: &[u32],
    timbre: Option<&[Vec<u32>; 3]>,
) -> Result<Vec<u32>> {
    let mut ids = vec![vocab.speech_start];
    ids.extend(
        speech_numbers(vocab, content, timbre)?
            .iter()
            .map(|n| vocab.spch0 + n),
    );
    ids.push(vocab.speech_end);
    Ok(ids)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::text::tiny_vocab;

    #[test]
    fn image_blocks() {
        let v = tiny_vocab();
        let codes: Vec<u32> = (0..32).map(|i| i * 200).collect();
        let s = image_block(&v, &codes).unwrap();
        assert!(s.starts_with("<image><img0><img200>") && s.ends_with("<img6200></image>"));
        let ids = image_block_ids(&v, &codes).unwrap();
        assert_eq!((ids.len(), ids[0], ids[1], ids[33]), (34, 1005, 1006, 1004));
        assert!(image_block(&v, &codes[..31]).is_err());
        let mut bad = codes.clone();
        bad[3] = 8192;
        assert!(image_block_ids(&v, &bad).is_err());
    }

    #[test]
    fn speech_blocks() {
        let v = tiny_vocab();
        assert_eq!(
            speech_block(&v, &[5, 7], None).unwrap(),
            "<spch><spch5><spch7></spch>"
        );
        let timbre = [vec![1, 2], vec![3, 4], vec![5, 1023]];
        assert_eq!(
            speech_block(&v, &[5, 7], Some(&timbre)).unwrap(),
            "<spch><spch5><spch7><spch1025><spch1026><spch2051><spch2052><spch3077><spch4095></spch>"
        );
        let ids = speech_block_ids(&v, &[5, 7], Some(&timbre)).unwrap();
        assert_eq!(
            ids,
            [1003, 9203, 9205, 10223, 10224, 11249, 11250, 12275, 13293, 1001]
        );
        assert!(speech_block(&v, &[1024], None).is_err());
        assert!(speech_block(&v, &[1, 2], Some(&[vec![1], vec![3, 4], vec![5, 6]])).is_err());
    }
}
