//! Tensor descriptions of a torch checkpoint and the layout arithmetic to read them.
//!
//! Ports the meaning of `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
//! stride, ...)`: a tensor is a strided view (in elements) into one typed storage, which
//! `torch.save` writes as the zip entry `<prefix>/data/<key>`. Deviation: `torch.bool` loads
//! as `DType::U8` (0/1) and `torch.int8` is described but cannot become a candle tensor.

use candle_core::DType;

/// Element type of a torch storage (`torch.FloatStorage` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PthDType {
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`), one byte per element.
    Bool,
}

impl PthDType {
    /// The dtype of the typed storage class `torch.<name>`, if it is one we read.
    pub fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// The candle dtype holding the same bits (`Bool` becomes `U8`); `None` for `I8`.
    pub fn to_candle(self) -> Option<DType> {
        Some(match self {
            Self::F64 => DType::F64,
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::BF16 => DType::BF16,
            Self::I64 => DType::I64,
            Self::I32 => DType::I32,
            Self::I16 => DType::I16,
            Self::U8 | Self::Bool => DType::U8,
            Self::I8 => return None,
        })
    }
}

/// Where one tensor of a checkpoint lives; no data is read until asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type.
    pub dtype: PthDType,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Strides in elements, one per dimension (torch strides are never negative).
    pub strides: Vec<usize>,
    /// Offset of element `[0, 0, ...]` in the storage, in elements.
    pub storage_offset: usize,
    /// Number of elements of the whole storage (the persistent id's `numel`).
    pub storage_numel: usize,
    /// The zip entry holding the storage, e.g. `pytorch_model-00001-of-00002/data/3`.
    pub entry: String,
}

impl TensorInfo {
    /// Number of elements of the tensor (saturating; [`super::PthFile::open`] rejects
    /// shapes whose product overflows).
    pub fn elem_count(&self) -> usize {
        self.checked_elem_count().unwrap_or(usize::MAX)
    }

    /// Number of elements, or `None` when the product of the dimensions (taken left to
    /// right, as candle does) overflows.
    pub fn checked_elem_count(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    /// Whether the view is row-major contiguous (size-1 dimensions may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if dim != 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(dim);
        }
        true
    }

    /// One past the last storage element the view touches (0 for an empty tensor), or
    /// `None` on arithmetic overflow.
    pub fn storage_extent(&self) -> Option<usize> {
        if self.shape.contains(&0) {
            return Some(0);
        }
        let mut last = self.storage_offset;
        for (&dim, &stride) in self.shape.iter().zip(&self.strides) {
            last = last.checked_add((dim - 1).checked_mul(stride)?)?;
        }
        last.checked_add(1)
    }

    /// Storage size in bytes as the persistent id declares it.
    pub fn storage_bytes(&self) -> Option<usize> {
        self.storage_numel.checked_mul(self.dtype.size_in_bytes())
    }
}

/// Copies the elements of `info`'s view out of `storage` (the whole storage entry) in
/// row-major order. The caller has checked `storage_extent() * elem size <= storage.len()`.
pub(crate) fn gather(info: &TensorInfo, storage: &[u8]) -> Vec<u8> {
    let es = info.dtype.size_in_bytes();
    let count = info.elem_count();
    let mut out = Vec::with_capacity(count.saturating_mul(es));
    if count == 0 {
        return out;
    }
    let rank = info.shape.len();
    if rank == 0 {
        let start = info.storage_offset * es;
        out.extend_from_slice(&storage[start..start + es]);
        return out;
    }
    let inner_dim = info.shape[rank - 1];
    let inner_stride = info.strides[rank - 1];
    let mut index = vec![0usize; rank - 1];
    loop {
        let base = info.storage_offset
            + index
                .iter()
                .zip(&info.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&storage[base * es..(base + inner_dim) * es]);
        } else {
            for k in 0..inner_dim {
                let at = (base + k * inner_stride) * es;
                out.extend_from_slice(&storage[at..at + es]);
            }
        }
        if !advance(&mut index, &info.shape[..rank - 1]) {
            return out;
        }
    }
}

/// Odometer step over `shape`; false once every index has been visited.
fn advance(index: &mut [usize], shape: &[usize]) -> bool {
    for d in (0..index.len()).rev() {
        index[d] += 1;
        if index[d] < shape[d] {
            return true;
        }
        index[d] = 0;
    }
    false
}

/// Reverses the bytes of every element (big-endian checkpoints).
pub(crate) fn swap_bytes(data: &mut [u8], elem_size: usize) {
    if elem_size > 1 {
        data.chunks_exact_mut(elem_size).for_each(<[u8]>::reverse);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(shape: &[usize], strides: &[usize], offset: usize) -> TensorInfo {
        TensorInfo {
            dtype: PthDType::U8,
            shape: shape.to_vec(),
            strides: strides.to_vec(),
            storage_offset: offset,
            storage_numel: 64,
            entry: "a/data/0".into(),
        }
    }

    #[test]
    fn gather_transposed_and_offset_views() {
        let storage: Vec<u8> = (0..64).collect();
        // A 2x3 row-major matrix transposed: shape [3, 2], strides [1, 3].
        let t = info(&[3, 2], &[1, 3], 0);
        assert!(!t.is_contiguous());
        assert_eq!(gather(&t, &storage), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(t.storage_extent(), Some(6));
        let o = info(&[2, 2], &[2, 1], 5);
        assert!(o.is_contiguous());
        assert_eq!(gather(&o, &storage), vec![5, 6, 7, 8]);
        let e = info(&[2, 3], &[0, 1], 1);
        assert_eq!(gather(&e, &storage), vec![1, 2, 3, 1, 2, 3]);
        let s = info(&[], &[], 9);
        assert_eq!(
            (gather(&s, &storage), s.storage_extent()),
            (vec![9], Some(10))
        );
        let z = info(&[0, 4], &[4, 1], 0);
        assert_eq!(
            (gather(&z, &storage).len(), z.storage_extent()),
            (0, Some(0))
        );
        assert!(info(&[2, 1], &[1, 7], 0).is_contiguous());
        assert_eq!(info(&[2, 2], &[usize::MAX, 1], 0).storage_extent(), None);
    }

    #[test]
    fn swap_reverses_each_element() {
        let mut data = vec![1, 2, 3, 4, 5, 6];
        swap_bytes(&mut data, 2);
        assert_eq!(data, vec![2, 1, 4, 3, 6, 5]);
    }
}
