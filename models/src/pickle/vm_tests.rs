//! Unit tests of the restricted pickle machine on hand-assembled and fixture pickles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::*;
use crate::pickle::tensor::PthDType;
use crate::pickle::test_util::P;

/// The top-level dict of tensors a pickle evaluates to.
fn tensors(data: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    load(data, |root| {
        let Value::Dict(items) = root else {
            return malformed("root is not a dict");
        };
        let mut out = Vec::new();
        for (k, v) in items.borrow().iter() {
            if let (Value::Str(k), Value::Tensor(t)) = (k, v) {
                out.push((k.to_string(), (**t).clone()));
            }
        }
        Ok(out)
    })
}

fn state_dict() -> Vec<u8> {
    P::new()
        .op(b'}')
        .op(b'q')
        .raw(&[0])
        .op(b'(')
        .uni("a")
        .tensor("0", 3)
        .uni("b")
        .tensor("1", 2)
        .op(b'u')
        .stop()
}

#[test]
fn rebuilds_a_state_dict() {
    let found = tensors(&state_dict()).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].0, "a");
    let t = &found[0].1;
    assert_eq!(
        (t.storage.dtype, t.storage.key.as_str(), t.storage.numel),
        (PthDType::F32, "0", 3)
    );
    assert_eq!(
        (t.offset, t.shape.as_slice(), t.strides.as_slice()),
        (0, &[3][..], &[1][..])
    );
    assert_eq!(found[1].1.storage.key, "1");
}

#[test]
fn refuses_unsafe_globals_by_name() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            P::new()
                .global("posix", "system")
                .uni("touch x")
                .op(0x85)
                .op(b'R')
                .stop(),
            "posix.system",
        ),
        (P::new().global("os", "system").stop(), "os.system"),
        (P::new().global("builtins", "eval").stop(), "builtins.eval"),
        (
            P::new().global("torch._utils", "_rebuild_tensor").stop(),
            "torch._utils._rebuild_tensor",
        ),
        (
            P::new().global("torch.storage", "_load_from_bytes").stop(),
            "torch.storage._load_from_bytes",
        ),
        (P::new().global("torch", "Tensor").stop(), "torch.Tensor"),
        // Protocol 4 STACK_GLOBAL and the INST opcode are checked the same way.
        (
            P::new()
                .op(0x8c)
                .raw(b"\x08builtins")
                .op(0x8c)
                .raw(b"\x04exec")
                .op(0x93)
                .stop(),
            "builtins.exec",
        ),
        (
            P::new()
                .op(b'(')
                .op(b'i')
                .raw(b"subprocess\nPopen\n")
                .stop(),
            "subprocess.Popen",
        ),
    ];
    for (data, name) in cases {
        assert_eq!(
            tensors(&data).unwrap_err(),
            PickleError::Unsafe(name.into()),
            "{name}"
        );
    }
}

#[test]
fn refuses_calls_that_are_not_tensor_rebuilds() {
    // Calling a string, a storage class, or REDUCE with non-tuple arguments.
    let cases = [
        P::new().uni("x").op(b')').op(b'R').stop(),
        P::new()
            .global("torch", "FloatStorage")
            .op(b')')
            .op(b'R')
            .stop(),
        P::new()
            .global("collections", "OrderedDict")
            .uni("x")
            .op(b'R')
            .stop(),
        P::new().uni("notstorage").op(b'Q').stop(),
        P::new()
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b')')
            .op(b'R')
            .stop(),
    ];
    for data in cases {
        assert!(matches!(tensors(&data), Err(PickleError::Malformed(_))));
    }
}

#[test]
fn protocol_4_framing_memoize_and_long_ints() {
    let data = P(vec![0x80, 4, 0x95])
        .raw(&[0; 8])
        .op(b'}')
        .op(0x94)
        .op(0x8c)
        .raw(b"\x01w")
        .tensor("k", 1)
        .op(b's')
        .stop();
    assert_eq!(tensors(&data).unwrap()[0].0, "w");
    assert!(matches!(long(&[0, 0, 0, 0x80, 0]), Value::Int(0x8000_0000)));
    assert!(matches!(long(&[0xff]), Value::Int(-1)));
    assert!(matches!(long(&[]), Value::Int(0)));
    assert!(matches!(long(&[1; 9]), Value::BigInt));
}

#[test]
fn deep_and_cyclic_structures_are_disposed_without_recursion() {
    let mut deep = P::new();
    let n = 1_000_000;
    deep.0.extend(std::iter::repeat_n(b']', n));
    deep.0.extend(std::iter::repeat_n(b'a', n - 1));
    assert!(load(&deep.stop(), |_| Ok(())).is_ok());
    // A list that contains itself, and a dict holding it.
    let cyclic = P::new()
        .op(b']')
        .op(b'2')
        .op(b'a')
        .op(b'}')
        .op(b'q')
        .raw(&[1])
        .uni("l")
        .op(b'h')
        .raw(&[1])
        .stop();
    let _ = load(&cyclic, |_| Ok(()));
}

#[test]
fn malformed_streams_are_errors() {
    let cases: [&[u8]; 8] = [
        b"",
        b"\x80\x02",
        b"\x80\x02.",
        b"\x80\x02h\x05.",
        b"\x80\x02(0.",
        b"\x80\x02(K\x01\x85.",
        b"\x80\x02X\xff\xff\xff\xffab.",
        b"\x80\x02\xff.",
    ];
    for data in cases {
        assert!(
            matches!(tensors(data), Err(PickleError::Malformed(_))),
            "{data:?}"
        );
    }
}

fn fixture_pickle() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/model/seed-tokenizer-2/eva_vit_g.pth");
    let archive = crate::pickle::archive::Archive::open(&path).unwrap();
    archive.read("eva_vit_g/data.pkl").unwrap().into_owned()
}

#[test]
fn every_truncation_is_an_error() {
    for data in [state_dict(), fixture_pickle()] {
        assert!(tensors(&data).is_ok());
        for len in 0..data.len() {
            assert!(
                tensors(&data[..len]).is_err(),
                "prefix of {len} bytes was accepted"
            );
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = fixture_pickle();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let mut data = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % data.len();
            data[at] = next() as u8;
        }
        let _ = tensors(&data);
    }
}
