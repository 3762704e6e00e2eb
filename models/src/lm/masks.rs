//! Position ids and the additive attention mask of a (left-padded) batch.
//!
//! Ports transformers 4.34 `LlamaForCausalLM.prepare_inputs_for_generation` (position ids
//! `attention_mask.cumsum(-1) - 1`, set to 1 where the mask is 0, last `t` columns kept)
//! and `LlamaModel._prepare_decoder_attention_mask` (causal mask over `past + t` keys plus
//! the padding mask). Deviation: upstream adds two `finfo.min` masks (giving `-inf` where
//! both apply); we put a single `f32::MIN` wherever either applies. Softmax weights are
//! the same (exactly 0 for masked keys of a row with any visible key), and a query row
//! that sees no key at all (a padding position) gets uniform weights instead of NaN.
//! Mask shape `(b, 1, t, past + t)`, f32.

use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// Position ids of the last `t` tokens of each row, from the row's whole attention mask.
pub fn position_ids(attention_mask: &[Vec<u8>], t: usize) -> Vec<Vec<u32>> {
    attention_mask
        .iter()
        .map(|row| {
            let mut sum: i64 = 0;
            let pos: Vec<u32> = row
                .iter()
                .map(|&m| {
                    sum += i64::from(m != 0);
                    if m == 0 {
                        1
                    } else {
                        (sum - 1) as u32
                    }
                })
                .collect();
            pos[pos.len().saturating_sub(t)..].to_vec()
        })
        .collect()
}

/// Position ids `past..past + t` for `b` unpadded rows.
pub fn dense_positions(b: usize, past: usize, t: usize) -> Vec<Vec<u32>> {
    vec![(past as u32..(past + t) as u32).collect(); b]
}

/// Checks a batch's attention mask: `b` rows of `past + t` entries.
pub fn check_mask(attention_mask: &[Vec<u8>], b: usize, past: usize, t: usize) -> Result<()> {
    if attention_mask.len() != b {
        return Err(Error::InvalidArgument(format!(
            "attention mask has {} rows for a batch of {b}",
            attention_mask.len()
        )));
    }
    if let Some(row) = attention_mask.iter().find(|r| r.len() != past + t) {
        return Err(Error::InvalidArgument(format!(
            "attention mask row has {} entries, expected {} cached + {t} new",
            row.len(),
            past
        )));
    }
    Ok(())
}

/// The additive mask `(b, 1, t, past + t)`, or `None` when nothing is masked.
pub fn additive_mask(
    attention_mask: Option<&[Vec<u8>]>,
    b: usize,
    past: usize,
    t: usize,
    dev: &Device,
) -> Result<Option<Tensor>> {
    let total = past + t;
    let padded = attention_mask.is_some_and(|m| m.iter().flatten().any(|&v| v == 0));
    if t == 1 && !padded {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(b * t * total);
    for r in 0..b {
        let row = attention_mask.and_then(|m| m.get(r));
        for i in 0..t {
            for j in 0..total {
                let causal = j > past + i;
                let pad = row.and_then(|row| row.get(j)).is_some_and(|&v| v == 0);
                data.push(if causal || pad { f32::MIN } else { 0.0 });
            }
        }
    }
    Ok(Some(Tensor::from_vec(data, (b, 1, t, total), dev)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_hf_rule() {
        let mask = vec![vec![0, 0, 1, 1, 1], vec![1, 1, 1, 1, 1]];
        assert_eq!(
            position_ids(&mask, 5),
            vec![vec![1, 1, 0, 1, 2], vec![0, 1, 2, 3, 4]]
        );
        assert_eq!(position_ids(&mask, 1), vec![vec![2], vec![4]]);
        assert_eq!(dense_positions(1, 3, 2), vec![vec![3, 4]]);
    }

    #[test]
    fn mask_combines_causal_and_padding() {
        let m = vec![vec![0, 1, 1]];
        let t = additive_mask(Some(&m), 1, 0, 3, &Device::Cpu)
            .unwrap()
            .unwrap();
        let v = t
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let x = f32::MIN;
        assert_eq!(v, vec![vec![x, x, x], vec![x, 0., x], vec![x, 0., 0.]]);
        assert!(additive_mask(None, 2, 4, 1, &Device::Cpu)
            .unwrap()
            .is_none());
        let step = additive_mask(Some(&[vec![0, 1, 1, 1]]), 1, 3, 1, &Device::Cpu).unwrap();
        let step = step
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(step, vec![x, 0., 0., 0.]);
        assert!(check_mask(&m, 1, 1, 2).is_ok() && check_mask(&m, 1, 0, 2).is_err());
    }
}
