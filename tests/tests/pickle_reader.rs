//! The safe `torch.save` reader (`mio_models::pickle`) on the release-shaped fixtures and on
//! hand-made hostile or broken checkpoints (`tests/fixtures/pickle/`, written by
//! `make_fixtures.py` there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use mio_models::pickle::{PthDType, PthFile, PthShards};
use mio_models::Error;
use mio_tests::{fixtures, release_layout, tiny_model};
use safetensors::SafeTensors;

fn pickle_fixture(name: &str) -> PathBuf {
    fixtures().join("pickle").join(name)
}

fn bin_shards() -> Vec<PathBuf> {
    (1..=2)
        .map(|k| release_layout().join(format!("pytorch_model-0000{k}-of-00002.bin")))
        .collect()
}

/// The bytes of an f32 tensor, via candle.
fn candle_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// A tensor's shape and raw little-endian bytes.
type ShapeAndBytes = (Vec<usize>, Vec<u8>);

/// Every tensor of the safetensors shards, by name: (shape, raw little-endian f32 bytes).
fn safetensors_tensors() -> Result<BTreeMap<String, ShapeAndBytes>> {
    let mut out = BTreeMap::new();
    for k in 1..=2 {
        let bytes =
            std::fs::read(tiny_model().join(format!("model-0000{k}-of-00002.safetensors")))?;
        for (name, view) in SafeTensors::deserialize(&bytes)?.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            out.insert(name, (view.shape().to_vec(), view.data().to_vec()));
        }
    }
    Ok(out)
}

#[test]
fn bin_shards_equal_the_safetensors_bit_for_bit() -> Result<()> {
    let expected = safetensors_tensors()?;
    let shards = PthShards::open(&bin_shards())?;
    let mut names: Vec<_> = shards.names().map(str::to_owned).collect();
    names.sort();
    assert!(names.iter().eq(expected.keys()), "tensor names differ");
    for (name, (shape, data)) in &expected {
        let info = shards.info(name).unwrap();
        assert_eq!(info.dtype, PthDType::F32, "{name}");
        assert_eq!(&info.shape, shape, "{name}");
        let file = shards.file_of(name).unwrap();
        assert!(
            file.tensor_bytes(name)?.as_ref() == data.as_slice(),
            "{name}: raw bytes differ"
        );
        let t = shards.tensor(name, &Device::Cpu)?;
        assert!(candle_bytes(&t)? == *data, "{name}: candle tensor differs");
    }
    assert!(
        expected.len() >= 20,
        "only {} tensors compared",
        expected.len()
    );
    Ok(())
}

#[test]
fn bin_shards_work_as_a_var_builder() -> Result<()> {
    let expected = safetensors_tensors()?;
    let (shape, data) = &expected["lm_head.weight"];
    let vb: VarBuilder = PthShards::open(&bin_shards())?.into_var_builder(DType::F32, &Device::Cpu);
    assert!(candle_bytes(&vb.get((shape[0], shape[1]), "lm_head.weight")?)? == *data);
    assert!(vb.contains_tensor("model.norm.weight"));
    assert!(vb.pp("model").contains_tensor("norm.weight"));
    assert!(!vb.contains_tensor("model.nope"));
    assert!(
        vb.get((1, 2), "lm_head.weight").is_err(),
        "wrong shape must fail"
    );
    assert!(vb.get(3, "model.nope").is_err());
    Ok(())
}

/// `manifest.json` → `files.<path>.tensors`: name → (shape, dtype).
fn manifest_tensors(file: &str) -> Result<BTreeMap<String, (Vec<usize>, String)>> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json"))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let tensors = manifest["files"][file]["tensors"]
        .as_object()
        .expect("manifest entry");
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let shape = serde_json::from_value(t["shape"].clone())?;
        out.insert(
            name.clone(),
            (shape, t["dtype"].as_str().unwrap_or_default().to_owned()),
        );
    }
    Ok(out)
}

fn dtype_name(dtype: PthDType) -> &'static str {
    match dtype {
        PthDType::F32 => "float32",
        PthDType::F16 => "float16",
        PthDType::BF16 => "bfloat16",
        PthDType::F64 => "float64",
        PthDType::I64 => "int64",
        PthDType::I32 => "int32",
        PthDType::U8 => "uint8",
        PthDType::Bool => "bool",
        _ => "other",
    }
}

#[test]
fn release_pickles_list_the_manifest_tensors() -> Result<()> {
    for (file, count) in [
        ("model/SpeechTokenizer/SpeechTokenizer.pt", 166),
        ("model/seed-tokenizer-2/eva_vit_g.pth", 30),
        ("model/seed-tokenizer-2/seed_quantizer.pt", 188),
    ] {
        let expected = manifest_tensors(file)?;
        // Through release-layout/'s links too: every loader must work on both folders.
        let linked = release_layout().join(file.trim_start_matches("model/"));
        for path in [fixtures().join(file), linked] {
            let pth = PthFile::open(&path)?;
            let mut got = BTreeMap::new();
            for name in pth.names() {
                let info = pth.info(name).unwrap();
                got.insert(
                    name.to_owned(),
                    (info.shape.clone(), dtype_name(info.dtype).to_owned()),
                );
                let t = pth.tensor(name, &Device::Cpu)?;
                assert_eq!(t.dims(), info.shape.as_slice());
            }
            assert_eq!(got, expected, "{file}");
            assert_eq!(pth.len(), count, "{file}");
        }
    }
    let eva = PthFile::open(fixtures().join("model/seed-tokenizer-2/eva_vit_g.pth"))?;
    assert!(eva
        .names()
        .all(|n| eva.info(n).unwrap().dtype == PthDType::F16));
    assert_eq!(eva.tensor("pos_embed", &Device::Cpu)?.dtype(), DType::F16);
    let vb = eva.into_var_builder(DType::F32, &Device::Cpu);
    assert_eq!(vb.get((1, 257, 64), "pos_embed")?.dtype(), DType::F32);
    Ok(())
}

fn check_expected(pth: &PthFile, expected: &serde_json::Value, stem: &str) -> Result<()> {
    let expected = expected.as_object().unwrap();
    let mut names: Vec<_> = pth.names().collect();
    names.sort();
    let mut want: Vec<_> = expected.keys().map(String::as_str).collect();
    want.sort();
    assert_eq!(names, want);
    for (name, e) in expected {
        let info = pth.info(name).unwrap();
        assert_eq!(dtype_name(info.dtype), e["dtype"], "{name}");
        assert_eq!(serde_json::to_value(&info.shape)?, e["shape"], "{name}");
        assert_eq!(serde_json::to_value(&info.strides)?, e["strides"], "{name}");
        assert_eq!(
            info.storage_offset,
            e["storage_offset"].as_u64().unwrap() as usize,
            "{name}"
        );
        assert_eq!(
            info.entry,
            format!("{stem}/data/{}", e["key"].as_str().unwrap())
        );
        let t = pth.tensor(name, &Device::Cpu)?;
        assert_eq!(t.dims(), info.shape.as_slice(), "{name}");
        let values: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let want: Vec<f64> = serde_json::from_value(e["values"].clone())?;
        assert_eq!(values, want, "{name}");
    }
    Ok(())
}

#[test]
fn strided_views_dtypes_and_nesting_read_correctly() -> Result<()> {
    let text = std::fs::read_to_string(pickle_fixture("layouts.json"))?;
    let expected: serde_json::Value = serde_json::from_str(&text)?;
    let layouts = PthFile::open(pickle_fixture("layouts.pt"))?;
    check_expected(&layouts, &expected["layouts.pt"], "layouts")?;
    assert!(!layouts.info("model.w_t").unwrap().is_contiguous());
    assert_eq!(
        layouts.tensor("model.flag", &Device::Cpu)?.dtype(),
        DType::U8
    );
    assert_eq!(
        layouts
            .tensor("model.long", &Device::Cpu)?
            .to_vec2::<i64>()?[0],
        [-3, 1 << 40]
    );
    let big = PthFile::open(pickle_fixture("bigendian.pt"))?;
    check_expected(&big, &expected["bigendian.pt"], "bigendian")?;
    // Selecting a wrapper key gives names relative to it.
    let model = PthFile::open_with_key(pickle_fixture("layouts.pt"), "model")?;
    assert!(model.contains("w_t") && model.contains("nested.deep.x") && !model.contains("list.0"));
    assert_eq!(model.len(), 16);
    assert!(PthFile::open_with_key(pickle_fixture("layouts.pt"), "optimizer").is_err());
    Ok(())
}

#[test]
fn compressed_entries_fall_back_to_reading() -> Result<()> {
    let pth = PthFile::open(pickle_fixture("deflated.pt"))?;
    assert!(matches!(pth.tensor_bytes("a")?, Cow::Owned(_)));
    let a: Vec<Vec<f32>> = pth.tensor("a", &Device::Cpu)?.to_vec2()?;
    assert_eq!(a, [[0., 1., 2., 3.], [4., 5., 6., 7.]]);
    let b: Vec<Vec<f32>> = pth.tensor("b", &Device::Cpu)?.to_vec2()?;
    assert_eq!(b, [[0., 4.], [1., 5.], [2., 6.], [3., 7.]]);
    Ok(())
}

#[test]
fn malicious_pickle_is_refused_and_runs_nothing() {
    let marker = Path::new("/tmp/mio_pickle_pwned_marker");
    let _ = std::fs::remove_file(marker);
    let err = PthFile::open(pickle_fixture("malicious.pt")).unwrap_err();
    match &err {
        Error::UnsafePickle { global, .. } => assert_eq!(global, "posix.system"),
        other => panic!("expected UnsafePickle, got {other}"),
    }
    assert!(err.to_string().contains("posix.system"), "{err}");
    assert!(!marker.exists(), "the payload ran");
    assert!(
        PthShards::open(&[pickle_fixture("layouts.pt"), pickle_fixture("malicious.pt")]).is_err()
    );
    assert!(!marker.exists(), "the payload ran");
}

fn checkpoint_error(path: &Path) -> String {
    match PthFile::open(path) {
        Err(e @ Error::Checkpoint { .. }) => e.to_string(),
        Err(other) => panic!(
            "{}: expected a checkpoint error, got {other}",
            path.display()
        ),
        Ok(_) => panic!("{} was accepted", path.display()),
    }
}

#[test]
fn broken_storages_are_clear_errors() {
    let msg = checkpoint_error(&pickle_fixture("bad_size.pt"));
    assert!(
        msg.contains("declares 100") && msg.contains("8 bytes"),
        "{msg}"
    );
    let msg = checkpoint_error(&pickle_fixture("view_out_of_range.pt"));
    assert!(msg.contains("reaches past its storage"), "{msg}");
    let msg = checkpoint_error(&pickle_fixture("truncated_entry.pt"));
    assert!(msg.contains("truncated"), "{msg}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn corrupt_archives_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, bytes) in [
        ("empty.pt", &b""[..]),
        ("garbage.pt", &b"this is not a zip archive at all"[..]),
        ("header_only.pt", &b"PK\x03\x04\x14\x00\x00\x00"[..]),
        (
            "legacy.pt",
            &b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02"[..],
        ),
    ] {
        let msg = checkpoint_error(&write(dir.path(), name, bytes));
        assert!(msg.contains(name), "{msg}");
    }
    // A valid zip without data.pkl.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "archive/other.txt",
        zip::write::SimpleFileOptions::default(),
    )?;
    std::io::Write::write_all(&mut zip, b"hello")?;
    let bytes = zip.finish()?.into_inner();
    assert!(checkpoint_error(&write(dir.path(), "no_pickle.pt", &bytes)).contains("data.pkl"));
    assert!(matches!(
        PthFile::open(dir.path().join("absent.pt")),
        Err(Error::Io { .. })
    ));
    Ok(())
}

#[test]
fn truncated_checkpoints_never_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = std::fs::read(fixtures().join("model/seed-tokenizer-2/eva_vit_g.pth"))?;
    let n = bytes.len();
    let lengths = (0..n).step_by(997).chain(n.saturating_sub(300)..n);
    for len in lengths {
        let path = write(dir.path(), "cut.pth", &bytes[..len]);
        assert!(
            PthFile::open(&path).is_err(),
            "a {len}-byte prefix was accepted"
        );
    }
    Ok(())
}

#[test]
fn random_corruption_never_panics() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = std::fs::read(pickle_fixture("layouts.pt"))?;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut opened = 0;
    for _ in 0..1500 {
        let mut bytes = base.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        let path = write(dir.path(), "fuzz.pt", &bytes);
        if let Ok(pth) = PthFile::open(&path) {
            opened += 1;
            for name in pth.names() {
                let _ = pth.tensor(name, &Device::Cpu);
            }
        }
    }
    assert!(
        opened > 0,
        "every mutation was rejected; the test is not reaching the tensors"
    );
    Ok(())
}
