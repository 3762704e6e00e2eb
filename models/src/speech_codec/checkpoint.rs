//! A `VarBuilder` backend over the SpeechTokenizer checkpoint that remembers which tensors
//! were read, so a test can prove that every tensor the model needs is used (CONVENTIONS
//! rule 6). Not an upstream component.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::weights_file::WeightFile;

/// Names read so far, shared between the backend and its owner.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadLog(Arc<Mutex<BTreeSet<String>>>);

impl ReadLog {
    fn record(&self, name: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(name.to_string());
        }
    }

    /// Every name recorded.
    pub(crate) fn names(&self) -> BTreeSet<String> {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// [`WeightFile`] with a [`ReadLog`].
struct TrackedPth {
    file: WeightFile,
    log: ReadLog,
}

impl SimpleBackend for TrackedPth {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.file.get(s, name, h, dtype, dev)?;
        self.log.record(name);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let t = self.file.get_unchecked(name, dtype, dev)?;
        self.log.record(name);
        Ok(t)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.file.contains(name)
    }
}

/// A float32 `VarBuilder` over `file` and the log of what it reads.
pub(crate) fn tracked_var_builder(
    file: WeightFile,
    dev: &Device,
) -> (VarBuilder<'static>, ReadLog) {
    let log = ReadLog::default();
    let backend = TrackedPth {
        file,
        log: log.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(backend), DType::F32, dev.clone());
    (vb, log)
}
