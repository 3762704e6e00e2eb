//! MIO speech strings and ids of codec codes (`MIOTokenizer.tokenize_speeches` and the
//! parsing half of `decode_speeches` in the reference `tokenization_mio.py`).
//!
//! Encoding: layer 0 (content) alone, or with layers 1..3 offset by `codebook · k` (timbre),
//! through [`crate::text::speech_block`] / [`crate::text::speech_block_ids`]. Parsing:
//! `<spchN>` tokens grouped by `N / codebook` into runs that must come in layer order with
//! equal lengths (`check_speech_completeness`). Deviation: a content-only string (one run of
//! layer 0) is accepted too and gives one layer (upstream refuses it), so a preview can be
//! decoded from the content layer alone.

use crate::text::{speech_block, speech_block_ids, BlockError, MioVocab, SPEECH_LAYERS};
use crate::{Error, Result};

/// Content layer and optional timbre layers, as [`speech_block`] takes them.
type Layers<'a> = (&'a [u32], Option<[Vec<u32>; 3]>);

/// The content layer and, with `add_timbre`, the three timbre layers of `codes` (≥ 1 resp.
/// ≥ 4 RVQ layers, equal lengths).
fn split_layers(codes: &[Vec<u32>], add_timbre: bool) -> Result<Layers<'_>> {
    let need = if add_timbre {
        SPEECH_LAYERS as usize
    } else {
        1
    };
    if codes.len() < need {
        return Err(Error::InvalidArgument(format!(
            "a MIO speech block needs {need} RVQ layer(s), got {}",
            codes.len()
        )));
    }
    let timbre = add_timbre.then(|| [codes[1].clone(), codes[2].clone(), codes[3].clone()]);
    Ok((&codes[0], timbre))
}

/// `<spch>…</spch>` of RVQ codes (`codes[layer][frame]`).
pub fn speech_string(vocab: &MioVocab, codes: &[Vec<u32>], add_timbre: bool) -> Result<String> {
    let (content, timbre) = split_layers(codes, add_timbre)?;
    speech_block(vocab, content, timbre.as_ref())
}

/// Token ids of [`speech_string`].
pub fn speech_ids(vocab: &MioVocab, codes: &[Vec<u32>], add_timbre: bool) -> Result<Vec<u32>> {
    let (content, timbre) = split_layers(codes, add_timbre)?;
    speech_block_ids(vocab, content, timbre.as_ref())
}

/// The token numbers N of every `<spchN>` in `s` (other text and `<spch>`, `</spch>`,
/// whitespace are skipped).
fn token_numbers(s: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("<spch") {
        rest = &rest[i + 5..];
        let Some(end) = rest.find('>') else { break };
        let digits = &rest[..end];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let n = digits.parse::<u32>().map_err(|_| {
                Error::InvalidArgument(format!("speech token <spch{digits}> is out of range"))
            })?;
            out.push(n);
        }
        rest = &rest[end..];
    }
    Ok(out)
}

/// RVQ layers of a MIO speech string: 4 layers (content + timbre) or 1 (content only).
pub fn speech_layers_from_string(s: &str, codebook: u32) -> Result<Vec<Vec<u32>>> {
    let numbers = token_numbers(s)?;
    speech_layers_from_numbers(&numbers, codebook)
}

/// RVQ layers of speech token numbers N (`<spchN>`), as [`speech_layers_from_string`].
pub fn speech_layers_from_numbers(numbers: &[u32], codebook: u32) -> Result<Vec<Vec<u32>>> {
    if numbers.is_empty() {
        return Err(BlockError::EmptySpeech.into());
    }
    if codebook == 0 {
        return Err(Error::InvalidArgument(
            "speech codebook size is zero".into(),
        ));
    }
    let mut runs: Vec<(u32, Vec<u32>)> = Vec::new();
    for &n in numbers {
        let layer = n / codebook;
        if layer >= SPEECH_LAYERS {
            return Err(Error::InvalidArgument(format!(
                "speech token <spch{n}> is beyond the {SPEECH_LAYERS} speech layers"
            )));
        }
        match runs.last_mut() {
            Some((l, codes)) if *l == layer => codes.push(n % codebook),
            _ => runs.push((layer, vec![n % codebook])),
        }
    }
    let names = || runs.iter().map(|(l, _)| layer_name(*l)).collect::<Vec<_>>();
    let in_order = runs.iter().enumerate().all(|(i, (l, _))| *l as usize == i);
    if !in_order || !(runs.len() == 1 || runs.len() == SPEECH_LAYERS as usize) {
        return Err(BlockError::SpeechLayerOrder(names()).into());
    }
    let lens: Vec<usize> = runs.iter().map(|(_, c)| c.len()).collect();
    if lens.iter().any(|n| *n != lens[0]) {
        return Err(BlockError::SpeechLayerLengths(lens).into());
    }
    Ok(runs.into_iter().map(|(_, c)| c).collect())
}

fn layer_name(layer: u32) -> String {
    match layer {
        0 => "content".into(),
        k => format!("timbre{}", k - 1),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_bad_ones() {
        let s = "<spch><spch5><spch7><spch1025><spch1026><spch2051><spch2052><spch3077><spch4095></spch>";
        assert_eq!(
            speech_layers_from_string(s, 1024).unwrap(),
            [vec![5, 7], vec![1, 2], vec![3, 4], vec![5, 1023]]
        );
        let spaced = "<spch> <spch5> <spch7> </spch>";
        assert_eq!(
            speech_layers_from_string(spaced, 1024).unwrap(),
            [vec![5, 7]]
        );
        assert!(speech_layers_from_string("<spch></spch>", 1024).is_err());
        assert!(speech_layers_from_string("<spch1025><spch5>", 1024).is_err());
        assert!(speech_layers_from_string("<spch5><spch1025>", 1024).is_err());
        let uneven = "<spch5><spch7><spch1025><spch2051><spch3077>";
        assert!(speech_layers_from_string(uneven, 1024).is_err());
        assert!(speech_layers_from_string("<spch4096>", 1024).is_err());
        assert!(speech_layers_from_string("<spch99999999999>", 1024).is_err());
    }
}
