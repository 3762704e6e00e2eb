//! One PyTorch `torch.save` shard (`pytorch_model-0000K-of-0000N.bin`) as a
//! [`TensorSource`], through the safe pickle reader: only tensor-rebuild globals are
//! accepted, and each tensor's bytes are read from its zip entry on demand, so a multi-GB
//! shard never sits in memory whole.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::weights::{TensorMeta, TensorSource};
use crate::pickle::PthFile;
use crate::{Error, Result};

/// A `.bin` shard.
pub struct PthShard {
    file: PthFile,
    metas: BTreeMap<String, TensorMeta>,
}

impl PthShard {
    /// Opens the shard and indexes its tensors (no tensor data is read).
    pub fn open(path: &Path) -> Result<Self> {
        let file = PthFile::open(path)?;
        let mut metas = BTreeMap::new();
        for name in file.names() {
            let Some(info) = file.info(name) else {
                continue;
            };
            let dtype = info.dtype.to_candle().ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!("tensor {name} has an element type candle cannot hold"),
                )
            })?;
            metas.insert(
                name.to_string(),
                TensorMeta {
                    shape: info.shape.clone(),
                    dtype,
                },
            );
        }
        Ok(Self { file, metas })
    }
}

impl TensorSource for PthShard {
    fn path(&self) -> &Path {
        self.file.path()
    }

    fn tensors(&self) -> &BTreeMap<String, TensorMeta> {
        &self.metas
    }

    fn read(&self, name: &str, dev: &Device) -> Result<Tensor> {
        self.file.tensor(name, dev)
    }
}
