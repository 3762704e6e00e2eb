//! The values our pickle machine builds, and the allowlist of globals it accepts.
//!
//! No Python object is ever created: a global is either one of the few callables we
//! emulate ([`Global`]) or refused by name. Containers are shared (`Rc`) because pickle's
//! memo aliases them; they are torn down iteratively by [`dispose`] so that a deeply
//! nested or cyclic pickle can neither overflow the stack nor leak.

use std::cell::RefCell;
use std::rc::Rc;

use super::tensor::{PthDType, TensorInfo};

/// A global (`module.name`) the unpickler may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Global {
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `collections.OrderedDict`.
    OrderedDict,
    /// A typed storage class such as `torch.FloatStorage`.
    Storage(PthDType),
}

impl Global {
    /// The allowed global `module.name`, or `None` when it must be refused.
    pub(crate) fn allowed(module: &str, name: &str) -> Option<Self> {
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Some(Self::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Self::RebuildParameter),
            ("collections", "OrderedDict") => Some(Self::OrderedDict),
            ("torch", storage) => PthDType::from_storage_name(storage).map(Self::Storage),
            _ => None,
        }
    }
}

/// A typed storage named by a persistent id `('storage', type, key, location, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// Element type from the storage class.
    pub dtype: PthDType,
    /// The key: the storage is the zip entry `<prefix>/data/<key>`.
    pub key: String,
    /// Number of elements.
    pub numel: usize,
}

/// A tensor as rebuilt by the VM: storage plus view; the entry name is added later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawTensor {
    /// The storage it views.
    pub storage: StorageRef,
    /// Offset in elements.
    pub offset: usize,
    /// Logical shape.
    pub shape: Vec<usize>,
    /// Strides in elements.
    pub strides: Vec<usize>,
}

impl RawTensor {
    /// The public description, with the storage's zip entry under `prefix`.
    pub(crate) fn info(&self, prefix: &str) -> TensorInfo {
        TensorInfo {
            dtype: self.storage.dtype,
            shape: self.shape.clone(),
            strides: self.strides.clone(),
            storage_offset: self.offset,
            storage_numel: self.storage.numel,
            entry: format!("{prefix}data/{}", self.storage.key),
        }
    }
}

/// A mutable list shared through the memo.
pub(crate) type ListRef = Rc<RefCell<Vec<Value>>>;
/// A mutable dict (insertion-ordered key/value pairs) shared through the memo.
pub(crate) type DictRef = Rc<RefCell<Vec<(Value, Value)>>>;

/// One value on the pickle stack.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// `None`.
    None,
    /// `True` / `False` (the value itself is never needed).
    Bool,
    /// An integer that fits in `i64`.
    Int(i64),
    /// An integer too large for `i64` (kept only as a placeholder).
    BigInt,
    /// A float (the value itself is never needed).
    Float,
    /// A text string.
    Str(Rc<str>),
    /// A byte string (the content is never needed).
    Bytes,
    /// An immutable tuple.
    Tuple(Rc<Vec<Value>>),
    /// A list.
    List(ListRef),
    /// A dict (also what `collections.OrderedDict()` evaluates to).
    Dict(DictRef),
    /// An allowed global, usable as a callable by REDUCE.
    Global(Global),
    /// A storage from a persistent id.
    Storage(Rc<StorageRef>),
    /// A rebuilt tensor.
    Tensor(Rc<RawTensor>),
}

impl Value {
    /// A short name of the value's kind, for error messages (never the value itself).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// Drops `values` without recursion; list and dict contents are drained even when still
/// shared, which breaks reference cycles. Call only once no one reads the containers.
pub(crate) fn dispose(values: Vec<Value>) {
    let mut work = values;
    while let Some(value) = work.pop() {
        match value {
            Value::Tuple(items) => {
                if let Ok(items) = Rc::try_unwrap(items) {
                    work.extend(items);
                }
            }
            Value::List(items) => {
                if let Ok(mut items) = items.try_borrow_mut() {
                    work.extend(items.drain(..));
                }
            }
            Value::Dict(items) => {
                if let Ok(mut items) = items.try_borrow_mut() {
                    for (k, v) in items.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}
