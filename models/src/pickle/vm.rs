//! A restricted pickle machine for the `data.pkl` that `torch.save` writes.
//!
//! Ports the opcode semantics of CPython's `pickle._Unpickler` (protocols 2 to 4, the
//! binary opcodes; `torch.save` uses protocol 2) without ever creating a Python object:
//! GLOBAL / STACK_GLOBAL / INST resolve only the names of [`Global::allowed`], any other
//! name stops the load at once with [`PickleError::Unsafe`]; REDUCE and NEWOBJ evaluate
//! only those emulated callables; BUILD states are discarded; BINPERSID accepts only
//! torch storage ids. Deviations: text-mode (protocol 0) opcodes other than GLOBAL/INST,
//! sets, extension codes and out-of-band buffers are reported as unsupported.

use std::collections::HashMap;
use std::rc::Rc;

use super::value::{dispose, Global, RawTensor, StorageRef, Value};

/// Why a pickle was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PickleError {
    /// The pickle references a global outside the allowlist (`module.name`).
    Unsafe(String),
    /// The pickle is truncated, malformed or uses something we do not support.
    Malformed(String),
}

type Result<T> = std::result::Result<T, PickleError>;

fn malformed<T>(message: impl Into<String>) -> Result<T> {
    Err(PickleError::Malformed(message.into()))
}

/// Longest module or attribute name accepted by the text-mode GLOBAL and INST opcodes.
const MAX_NAME_LEN: usize = 512;

/// Runs the pickle `data` and hands its result to `f`; every value is disposed afterwards.
pub(crate) fn load<T>(data: &[u8], f: impl FnOnce(&Value) -> Result<T>) -> Result<T> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = vm.run()?;
    let out = f(&root);
    vm.stack.push(root);
    out
}

/// The machine state: a value stack, the positions of MARKs in it, and the memo.
struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Drop for Vm<'_> {
    fn drop(&mut self) {
        let mut all = std::mem::take(&mut self.stack);
        all.extend(std::mem::take(&mut self.memo).into_values());
        dispose(all);
    }
}

impl Vm<'_> {
    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            if op == b'.' {
                return self.pop();
            }
            if let Some(value) = self.literal(op)? {
                self.stack.push(value);
            } else if !self.structure(op)?
                && !self.container(op)?
                && !self.memo_op(op)?
                && !self.object(op)?
            {
                return malformed(format!("unsupported pickle opcode 0x{op:02x} at byte {at}"));
            }
        }
    }

    /// Opcodes that push a constant read from the stream.
    fn literal(&mut self, op: u8) -> Result<Option<Value>> {
        Ok(Some(match op {
            b'N' => Value::None,
            0x88 | 0x89 => Value::Bool,
            b'K' => Value::Int(i64::from(self.byte()?)),
            b'M' => Value::Int(i64::from(u16::from_le_bytes(self.array()?))),
            b'J' => Value::Int(i64::from(i32::from_le_bytes(self.array()?))),
            0x8a => {
                let n = usize::from(self.byte()?);
                long(self.take(n)?)
            }
            0x8b => {
                let n = self.len4()?;
                long(self.take(n)?)
            }
            b'G' => {
                self.take(8)?;
                Value::Float
            }
            b'X' => {
                let n = u32::from_le_bytes(self.array()?) as usize;
                self.text(n)?
            }
            0x8c => {
                let n = usize::from(self.byte()?);
                self.text(n)?
            }
            0x8d => {
                let n = self.len8()?;
                self.text(n)?
            }
            b'T' => {
                let n = self.len4()?;
                bytes_or_str(self.take(n)?)
            }
            b'U' => {
                let n = usize::from(self.byte()?);
                bytes_or_str(self.take(n)?)
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.len4()?,
                    b'C' => usize::from(self.byte()?),
                    _ => self.len8()?,
                };
                self.take(n)?;
                Value::Bytes
            }
            b')' => Value::Tuple(Rc::new(Vec::new())),
            b']' => Value::List(Rc::default()),
            b'}' => Value::Dict(Rc::default()),
            _ => return Ok(None),
        }))
    }

    /// Protocol, framing and stack shaping opcodes; false when `op` is not one of them.
    fn structure(&mut self, op: u8) -> Result<bool> {
        match op {
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return malformed(format!("unknown pickle protocol {proto}"));
                }
            }
            0x95 => {
                self.take(8)?;
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                if self.stack.len() > self.floor() {
                    self.pop()?;
                } else {
                    self.pop_mark()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Tuple, list and dict building opcodes; false when `op` is not one of them.
    fn container(&mut self, op: u8) -> Result<bool> {
        match op {
            b't' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let items = self.pop_n(n)?;
                self.stack.push(Value::Tuple(Rc::new(items)));
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.stack.push(Value::List(Rc::new(items.into())));
            }
            b'd' => {
                let items = pairs(self.pop_mark()?)?;
                self.stack.push(Value::Dict(Rc::new(items.into())));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    self.pop_n(1)?
                } else {
                    self.pop_mark()?
                };
                let Value::List(list) = self.top()? else {
                    return malformed("APPEND to something that is not a list");
                };
                borrow(list)?.extend(items);
            }
            b's' | b'u' => {
                let items = pairs(if op == b's' {
                    self.pop_n(2)?
                } else {
                    self.pop_mark()?
                })?;
                let Value::Dict(dict) = self.top()? else {
                    return malformed("SETITEM on something that is not a dict");
                };
                borrow(dict)?.extend(items);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Memo opcodes; false when `op` is not one of them.
    fn memo_op(&mut self, op: u8) -> Result<bool> {
        match op {
            b'q' | b'r' | 0x94 => {
                let index = match op {
                    b'q' => u32::from(self.byte()?),
                    b'r' => u32::from_le_bytes(self.array()?),
                    _ => u32::try_from(self.memo.len()).unwrap_or(u32::MAX),
                };
                let top = self.top()?.clone();
                if let Some(old) = self.memo.insert(index, top) {
                    dispose(vec![old]);
                }
            }
            b'h' | b'j' => {
                let index = if op == b'h' {
                    u32::from(self.byte()?)
                } else {
                    u32::from_le_bytes(self.array()?)
                };
                let Some(value) = self.memo.get(&index) else {
                    return malformed(format!("memo key {index} read before it was written"));
                };
                self.stack.push(value.clone());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Globals, calls, persistent ids and BUILD; false when `op` is not one of them.
    fn object(&mut self, op: u8) -> Result<bool> {
        match op {
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(resolve(&module, &name)?));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                    return malformed("STACK_GLOBAL needs two strings");
                };
                let global = resolve(module, name)?;
                self.stack.push(Value::Global(global));
            }
            b'i' => {
                let module = self.line()?;
                let name = self.line()?;
                resolve(&module, &name)?;
                return malformed(format!("INST {module}.{name} is not supported"));
            }
            b'R' | 0x81 => self.reduce(op == 0x81)?,
            b'Q' => {
                let pid = self.pop()?;
                let storage = persistent_storage(&pid)?;
                dispose(vec![pid]);
                self.stack.push(Value::Storage(Rc::new(storage)));
            }
            b'b' => {
                let state = self.pop()?;
                self.top()?;
                dispose(vec![state]);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// REDUCE (`f(*args)`) and NEWOBJ (`cls.__new__(cls, *args)`) on an allowed global.
    fn reduce(&mut self, newobj: bool) -> Result<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let result = match (&func, &args) {
            (Value::Global(global), Value::Tuple(items)) => call(*global, items, newobj),
            (Value::Global(_), other) => malformed(format!(
                "call arguments are a {}, not a tuple",
                other.kind()
            )),
            (other, _) => malformed(format!("cannot call a {}", other.kind())),
        };
        dispose(vec![args, func]);
        self.stack.push(result?);
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn top(&self) -> Result<&Value> {
        match self.stack.last() {
            Some(value) if self.stack.len() > self.floor() => Ok(value),
            _ => malformed("pickle stack underflow"),
        }
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return malformed("pickle stack underflow");
        }
        match self.stack.pop() {
            Some(value) => Ok(value),
            None => malformed("pickle stack underflow"),
        }
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>> {
        if self.stack.len() < self.floor() + n {
            return malformed("pickle stack underflow");
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        match self.marks.pop() {
            Some(mark) if mark <= self.stack.len() => Ok(self.stack.split_off(mark)),
            _ => malformed("pickle MARK missing"),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len());
        let Some(end) = end else {
            return malformed(format!("pickle truncated at byte {}", self.data.len()));
        };
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len4(&mut self) -> Result<usize> {
        let n = i32::from_le_bytes(self.array()?);
        usize::try_from(n).or_else(|_| malformed("negative length in pickle"))
    }

    fn len8(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.array()?);
        usize::try_from(n).or_else(|_| malformed("length too large in pickle"))
    }

    fn text(&mut self, n: usize) -> Result<Value> {
        match std::str::from_utf8(self.take(n)?) {
            Ok(s) => Ok(Value::Str(s.into())),
            Err(_) => malformed("string in pickle is not valid UTF-8"),
        }
    }

    /// A newline-terminated name (text-mode GLOBAL / INST argument).
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let window = &rest[..rest.len().min(MAX_NAME_LEN + 1)];
        let Some(n) = window.iter().position(|&b| b == b'\n') else {
            return malformed("unterminated or overlong name in GLOBAL");
        };
        let name = self.take(n + 1)?;
        match std::str::from_utf8(&name[..n]) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => malformed("name in GLOBAL is not valid UTF-8"),
        }
    }
}

/// The allowed global `module.name`, or the refusal naming it.
fn resolve(module: &str, name: &str) -> Result<Global> {
    Global::allowed(module, name).ok_or_else(|| PickleError::Unsafe(format!("{module}.{name}")))
}

/// Evaluates an allowed callable on `args` (never any Python code).
fn call(global: Global, args: &[Value], newobj: bool) -> Result<Value> {
    match (global, newobj) {
        (Global::OrderedDict, _) => ordered_dict(args),
        (Global::RebuildTensorV2, false) => rebuild_tensor(args),
        (Global::RebuildParameter, false) => match args.first() {
            Some(Value::Tensor(t)) => Ok(Value::Tensor(t.clone())),
            _ => malformed("_rebuild_parameter needs a tensor"),
        },
        (other, _) => malformed(format!("{other:?} cannot be called this way")),
    }
}

/// `collections.OrderedDict()` or `OrderedDict([(k, v), ...])` as a plain dict.
fn ordered_dict(args: &[Value]) -> Result<Value> {
    let mut items = Vec::new();
    match args {
        [] => {}
        [Value::List(list)] => {
            for pair in borrow(list)?.iter() {
                match pair {
                    Value::Tuple(kv) if kv.len() == 2 => items.push((kv[0].clone(), kv[1].clone())),
                    _ => return malformed("OrderedDict items must be pairs"),
                }
            }
        }
        _ => return malformed("unsupported OrderedDict arguments"),
    }
    Ok(Value::Dict(Rc::new(items.into())))
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, ...)`.
fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    let [Value::Storage(storage), offset, Value::Tuple(size), Value::Tuple(stride), ..] = args
    else {
        return malformed("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
    };
    let shape = size.iter().map(index).collect::<Result<Vec<_>>>()?;
    let strides = stride.iter().map(index).collect::<Result<Vec<_>>>()?;
    if shape.len() != strides.len() {
        return malformed("tensor size and stride differ in length");
    }
    let tensor = RawTensor {
        storage: (**storage).clone(),
        offset: index(offset)?,
        shape,
        strides,
    };
    Ok(Value::Tensor(Rc::new(tensor)))
}

/// `('storage', torch.XStorage, key, location, numel)`.
fn persistent_storage(pid: &Value) -> Result<StorageRef> {
    let Value::Tuple(items) = pid else {
        return malformed(format!("persistent id is a {}, not a tuple", pid.kind()));
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), key, _location, numel]
            if &**tag == "storage" =>
        {
            let key = match key {
                Value::Str(s) => s.to_string(),
                Value::Int(i) => i.to_string(),
                _ => return malformed("storage key is neither a string nor an int"),
            };
            Ok(StorageRef {
                dtype: *dtype,
                key,
                numel: index(numel)?,
            })
        }
        _ => malformed("persistent id is not a torch storage"),
    }
}

/// A non-negative integer as `usize`.
fn index(value: &Value) -> Result<usize> {
    match value {
        Value::Int(i) => usize::try_from(*i).or_else(|_| malformed("negative size in tensor")),
        other => malformed(format!("expected an int, found a {}", other.kind())),
    }
}

/// Python's little-endian two's complement LONG payload.
fn long(bytes: &[u8]) -> Value {
    if bytes.len() > 8 {
        return Value::BigInt;
    }
    let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut buf = [fill; 8];
    buf[..bytes.len()].copy_from_slice(bytes);
    Value::Int(i64::from_le_bytes(buf))
}

fn bytes_or_str(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::Str(s.into()),
        Err(_) => Value::Bytes,
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if items.len() & 1 == 1 {
        return malformed("odd number of items for a dict");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn borrow<T>(cell: &std::cell::RefCell<T>) -> Result<std::cell::RefMut<'_, T>> {
    cell.try_borrow_mut()
        .or_else(|_| malformed("container is already in use"))
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
