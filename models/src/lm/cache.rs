//! The KV cache: HF's `past_key_values`, one explicit struct.
//!
//! Per layer, keys (already rotated, as upstream caches them) and values of every position
//! seen so far, in buffers `(b, kv_heads, capacity, head_dim)` that grow by
//! [`GROWTH`] positions, so a decode step writes one position in place instead of copying
//! the whole cache. A forward pass writes all layers at [`KvCache::seq_len`] and then
//! [`KvCache::advance`]s once: a failed pass leaves the visible cache unchanged.
//! [`KvCache::reorder`] selects batch rows (beam search, HF `_reorder_cache`). `Clone`
//! copies the buffers (clones never share storage that is written in place).

use candle_core::{Tensor, D};

use crate::{Error, Result};

/// Positions added to a layer's buffers when they are full.
pub const GROWTH: usize = 256;

#[derive(Debug)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Keys and values of all layers for the sequences of a batch.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    len: usize,
}

impl Clone for KvCache {
    fn clone(&self) -> Self {
        let copy = |l: &LayerKv| -> Option<LayerKv> {
            Some(LayerKv {
                k: l.k.copy().ok()?,
                v: l.v.copy().ok()?,
            })
        };
        let layers: Vec<Option<LayerKv>> = self
            .layers
            .iter()
            .map(|l| l.as_ref().and_then(copy))
            .collect();
        // A failed copy (out of memory) leaves an empty cache rather than a shared one.
        if layers
            .iter()
            .zip(&self.layers)
            .any(|(a, b)| a.is_some() != b.is_some())
        {
            return KvCache::new(self.layers.len());
        }
        KvCache {
            layers,
            len: self.len,
        }
    }
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        KvCache {
            layers: (0..n_layers).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Drops every cached position (and frees the buffers).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Cached positions per row (0 when empty).
    pub fn seq_len(&self) -> usize {
        self.len
    }

    /// Cached rows, `None` when empty.
    pub fn batch_size(&self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        self.layers
            .first()
            .and_then(Option::as_ref)
            .and_then(|l| l.k.dim(0).ok())
    }

    /// Writes `k`, `v` `(b, kv_heads, t, head_dim)` of layer `layer` after the cached
    /// positions; returns views of that layer's keys and values up to and including them.
    /// Visible to [`KvCache::seq_len`] only after [`KvCache::advance`].
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let len = self.len;
        let t = k.dim(2)?;
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidArgument(format!("no cache for layer {layer}")))?;
        let fits = slot.as_ref().is_some_and(|l| {
            l.k.dim(2).is_ok_and(|cap| cap >= len + t) && l.k.dim(0).ok() == k.dim(0).ok()
        });
        if !fits {
            *slot = Some(grow(slot.take(), len, len + t, k, v)?);
        }
        let l = slot
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("empty cache slot".into()))?;
        l.k.slice_set(&k.contiguous()?, 2, len)?;
        l.v.slice_set(&v.contiguous()?, 2, len)?;
        Ok((l.k.narrow(2, 0, len + t)?, l.v.narrow(2, 0, len + t)?))
    }

    /// Makes `t` positions written by [`KvCache::append`] in every layer visible.
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
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
        let mut layers = Vec::with_capacity(self.layers.len());
        for slot in &self.layers {
            layers.push(match slot {
                Some(l) => {
                    let idx = Tensor::from_iter(rows.iter().map(|&r| r as u32), l.k.device())?;
                    Some(LayerKv {
                        k: l.k.index_select(&idx, 0)?,
                        v: l.v.index_select(&idx, 0)?,
                    })
                }
                None => None,
            });
        }
        self.layers = layers;
        Ok(())
    }
}

/// New buffers holding at least `need` positions, with the first `len` of `old` copied.
fn grow(old: Option<LayerKv>, len: usize, need: usize, k: &Tensor, v: &Tensor) -> Result<LayerKv> {
    let cap = need.div_ceil(GROWTH) * GROWTH;
    let buffer = |x: &Tensor, prev: Option<&Tensor>| -> Result<Tensor> {
        let (b, h, _, d) = x.dims4()?;
        let buf = Tensor::zeros((b, h, cap, d), x.dtype(), x.device())?;
        if let Some(prev) = prev.filter(|_| len > 0) {
            if prev.dim(0)? != b {
                return Err(Error::InvalidArgument(format!(
                    "batch of {b} rows on a cache of {} rows",
                    prev.dim(0)?
                )));
            }
            buf.slice_set(&prev.narrow(D::Minus2, 0, len)?.contiguous()?, 2, 0)?;
        }
        Ok(buf)
    };
    Ok(LayerKv {
        k: buffer(k, old.as_ref().map(|l| &l.k))?,
        v: buffer(v, old.as_ref().map(|l| &l.v))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn col(cache: &mut KvCache, x: &Tensor) -> Vec<Vec<f32>> {
        let (k, _) = cache.append(0, x, x).unwrap();
        k.flatten_from(1).unwrap().to_vec2::<f32>().unwrap()
    }

    #[test]
    fn append_grow_reorder_reset() {
        let dev = Device::Cpu;
        let mut cache = KvCache::new(2);
        assert_eq!((cache.seq_len(), cache.batch_size()), (0, None));
        let k = Tensor::arange(0f32, 2., &dev)
            .unwrap()
            .reshape((2, 1, 1, 1))
            .unwrap();
        for _ in 0..GROWTH + 1 {
            for layer in 0..2 {
                cache.append(layer, &k, &k).unwrap();
            }
            cache.advance(1);
        }
        assert_eq!((cache.seq_len(), cache.batch_size()), (GROWTH + 1, Some(2)));
        let fork = cache.clone();
        cache.reorder(&[1, 1, 0]).unwrap();
        let zero = Tensor::zeros((3, 1, 1, 1), DType::F32, &dev).unwrap();
        let rows = col(&mut cache, &zero);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][GROWTH - 1..], [1., 1., 0.]);
        assert_eq!(rows[2][GROWTH - 1..], [0., 0., 0.]);
        // Not advanced: the written position stays invisible; the fork is untouched.
        assert_eq!(cache.seq_len(), GROWTH + 1);
        let mut fork = fork;
        let two = Tensor::full(7f32, (2, 1, 1, 1), &dev).unwrap();
        assert_eq!(col(&mut fork, &two)[0][GROWTH - 1..], [0., 0., 7.]);
        assert!(cache.reorder(&[3]).is_err());
        cache.reset();
        assert_eq!((cache.seq_len(), cache.batch_size()), (0, None));
    }
}
