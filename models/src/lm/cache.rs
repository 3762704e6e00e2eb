//! The KV cache: HF's `past_key_values`, one explicit struct.
//!
//! Per layer, keys and values of every position seen so far, `(b, kv_heads, seq, head_dim)`,
//! keys already rotated (as upstream caches them). Appending concatenates on the sequence
//! dim; [`KvCache::reorder`] selects batch rows (beam search).

use candle_core::Tensor;

use crate::{Error, Result};

/// Keys and values of all layers for the sequences of a batch.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: vec![None; n_layers],
        }
    }

    /// Drops every cached position.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
    }

    /// Cached positions per row (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.first().and_then(|(k, _)| k.dim(2).ok()).unwrap_or(0)
    }

    /// Cached rows, `None` when empty.
    pub fn batch_size(&self) -> Option<usize> {
        self.first().and_then(|(k, _)| k.dim(0).ok())
    }

    fn first(&self) -> Option<&(Tensor, Tensor)> {
        self.layers.first().and_then(Option::as_ref)
    }

    /// Appends `k`, `v` `(b, kv_heads, t, head_dim)` to layer `layer`; returns the whole
    /// cached keys and values of that layer.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidArgument(format!("no cache for layer {layer}")))?;
        let kv = match slot.take() {
            None => (k.contiguous()?, v.contiguous()?),
            Some((pk, pv)) => (Tensor::cat(&[&pk, k], 2)?, Tensor::cat(&[&pv, v], 2)?),
        };
        *slot = Some(kv.clone());
        Ok(kv)
    }

    /// New row `i` = old row `rows[i]` (rows may repeat; the batch size may change).
    pub fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let Some(b) = self.batch_size() else {
            return Ok(());
        };
        if let Some(&bad) = rows.iter().find(|&&r| r >= b) {
            return Err(Error::InvalidArgument(format!(
                "reorder row {bad} of a batch of {b}"
            )));
        }
        for slot in self.layers.iter_mut() {
            if let Some((k, v)) = slot.take() {
                let idx = Tensor::from_iter(rows.iter().map(|&r| r as u32), k.device())?;
                *slot = Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn append_reorder_reset() {
        let dev = Device::Cpu;
        let mut cache = KvCache::new(2);
        assert_eq!((cache.seq_len(), cache.batch_size()), (0, None));
        let k = Tensor::arange(0f32, 2., &dev)
            .unwrap()
            .reshape((2, 1, 1, 1))
            .unwrap();
        for layer in 0..2 {
            cache.append(layer, &k, &k).unwrap();
            cache.append(layer, &k, &k).unwrap();
        }
        assert_eq!((cache.seq_len(), cache.batch_size()), (2, Some(2)));
        cache.reorder(&[1, 1, 0]).unwrap();
        let zero = Tensor::zeros((3, 1, 1, 1), candle_core::DType::F32, &dev).unwrap();
        let (k0, _) = cache.append(0, &zero, &zero).unwrap();
        let rows = k0.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            rows,
            vec![vec![1., 1., 0.], vec![1., 1., 0.], vec![0., 0., 0.]]
        );
        assert!(cache.reorder(&[3]).is_err());
        cache.reset();
        assert_eq!(cache.seq_len(), 0);
    }
}
