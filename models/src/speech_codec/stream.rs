//! Helpers of the streaming decoder: chunks that may be empty are `Option<Tensor>` (`None`
//! = zero samples), split and joined along the last (time) axis.

use candle_core::{Tensor, D};

use crate::Result;

/// Splits `(…, T)` at `n`: the first `n` samples and the rest (`None` where empty).
pub(crate) fn split_at(xs: &Tensor, n: usize) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let len = xs.dim(D::Minus1)?;
    let n = n.min(len);
    let head = (n > 0).then(|| xs.narrow(D::Minus1, 0, n)).transpose()?;
    let tail = (n < len)
        .then(|| xs.narrow(D::Minus1, n, len - n))
        .transpose()?;
    Ok((head, tail))
}

/// `a` then `b` along time.
pub(crate) fn cat_opt(a: Option<Tensor>, b: Option<Tensor>) -> Result<Option<Tensor>> {
    Ok(match (a, b) {
        (Some(a), Some(b)) => Some(Tensor::cat(&[&a, &b], D::Minus1)?),
        (a, None) => a,
        (None, b) => b,
    })
}

/// Length along time of a possibly empty chunk.
pub(crate) fn len_opt(xs: &Option<Tensor>) -> Result<usize> {
    Ok(match xs {
        Some(t) => t.dim(D::Minus1)?,
        None => 0,
    })
}

/// Two streams of the same positions joined by addition (a residual connection whose
/// branches have different delays): each side is queued until the other catches up.
#[derive(Debug, Clone, Default)]
pub(crate) struct SumJoin {
    left: Option<Tensor>,
    right: Option<Tensor>,
}

impl SumJoin {
    /// Empties both queues.
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Queues new samples of both sides and returns their sum where both are known.
    pub(crate) fn push(
        &mut self,
        left: Option<Tensor>,
        right: Option<Tensor>,
    ) -> Result<Option<Tensor>> {
        let l = cat_opt(self.left.take(), left)?;
        let r = cat_opt(self.right.take(), right)?;
        let n = len_opt(&l)?.min(len_opt(&r)?);
        let (l_head, l_tail) = match &l {
            Some(t) => split_at(t, n)?,
            None => (None, None),
        };
        let (r_head, r_tail) = match &r {
            Some(t) => split_at(t, n)?,
            None => (None, None),
        };
        self.left = l_tail;
        self.right = r_tail;
        match (l_head, r_head) {
            (Some(a), Some(b)) => Ok(Some((a + b)?)),
            _ => Ok(None),
        }
    }
}
