//! Unit tests of `PthFile` on small torch-style zips written by the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::pickle::test_util::{checkpoint, P};
use crate::pickle::PthDType;

fn dict_of(entries: impl FnOnce(P) -> P) -> Vec<u8> {
    entries(P::new().op(b'}').op(b'(')).op(b'u').stop()
}

fn open_err(pickle: &[u8], storages: &[(&str, &[u8])]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = checkpoint(dir.path(), "ckpt", pickle, storages, Some("little"));
    match PthFile::open(&path) {
        Err(e) => e.to_string(),
        Ok(f) => panic!("accepted: {f:?}"),
    }
}

#[test]
fn absurd_shapes_and_sizes_are_rejected_without_overflow() {
    let huge = 1u64 << 40;
    let empty_huge = dict_of(|p| {
        p.uni("w")
            .tensor_of("FloatStorage", "0", 0, 0, &[huge, huge, 0], &[1, 1, 1])
    });
    assert!(open_err(&empty_huge, &[("0", &[])]).contains("too many elements"));
    let big_numel = dict_of(|p| {
        p.uni("w")
            .tensor_of("FloatStorage", "0", 1 << 62, 0, &[1], &[1])
    });
    assert!(open_err(&big_numel, &[("0", &[0; 4])]).contains("declares"));
    let far = dict_of(|p| {
        p.uni("w")
            .tensor_of("FloatStorage", "0", 1, 1 << 62, &[2], &[1 << 62])
    });
    assert!(open_err(&far, &[("0", &[0; 4])]).contains("reaches past"));
    let missing = dict_of(|p| p.uni("w").tensor("7", 1));
    assert!(open_err(&missing, &[("0", &[0; 4])]).contains("ckpt/data/7 is missing"));
}

#[test]
fn duplicate_and_deeply_nested_names_are_rejected() {
    let dup = dict_of(|p| {
        p.uni("a.b")
            .tensor("0", 1)
            .uni("a")
            .op(b'}')
            .uni("b")
            .tensor("0", 1)
            .op(b's')
    });
    assert!(open_err(&dup, &[("0", &[0; 4])]).contains("appears twice"));
    let mut deep = P::new();
    for _ in 0..100 {
        deep = deep.op(b'}').uni("k");
    }
    deep = deep.tensor("0", 1);
    for _ in 0..100 {
        deep = deep.op(b's');
    }
    assert!(open_err(&deep.stop(), &[("0", &[0; 4])]).contains("nested too deeply"));
}

#[test]
fn bare_tensor_int_keys_and_int8() {
    let dir = tempfile::tempdir().unwrap();
    let root = P::new().tensor("0", 2).stop();
    let path = checkpoint(
        dir.path(),
        "bare",
        &root,
        &[("0", &[0, 0, 128, 63, 0, 0, 0, 64])],
        None,
    );
    let file = PthFile::open(&path).unwrap();
    assert_eq!(file.names().collect::<Vec<_>>(), [""]);
    assert_eq!(
        file.tensor("", &Device::Cpu)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        [1.0, 2.0]
    );

    let pickle = dict_of(|p| {
        p.int(5)
            .op(b']')
            .tensor_of("CharStorage", "0", 2, 0, &[2], &[1])
            .op(b'a')
    });
    let path = checkpoint(
        dir.path(),
        "int8",
        &pickle,
        &[("0", &[1, 255])],
        Some("little"),
    );
    let file = PthFile::open(&path).unwrap();
    assert_eq!(file.info("5.0").unwrap().dtype, PthDType::I8);
    assert_eq!(file.tensor_bytes("5.0").unwrap().as_ref(), [1, 255]);
    assert!(matches!(
        file.tensor("5.0", &Device::Cpu),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        file.tensor("nope", &Device::Cpu),
        Err(Error::MissingTensor(_))
    ));
}

#[test]
fn bad_byteorder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let pickle = dict_of(|p| p.uni("w").tensor("0", 1));
    let path = checkpoint(
        dir.path(),
        "order",
        &pickle,
        &[("0", &[0; 4])],
        Some("middle"),
    );
    assert!(PthFile::open(&path)
        .unwrap_err()
        .to_string()
        .contains("byteorder"));
}
