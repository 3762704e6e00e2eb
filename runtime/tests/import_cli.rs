//! `mio import` through the binary: the tiny release-layout folder imported as f16 gives the
//! golden greedy and beam ids with `--model MODELDIR` alone; a full disk mid-import is one
//! sentence on stderr, a non-zero exit and no MODELDIR left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn mio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mio"))
        .args(args)
        .output()
        .unwrap()
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn mm_prompt() -> String {
    let bytes = std::fs::read(fixtures().join("golden/lm.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensor("mm.input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn imported_folder_generates_the_golden_ids_with_no_extra_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m").display().to_string();
    let release = fixtures().join("release-layout").display().to_string();
    let args = [
        "import",
        "--release",
        &release,
        "--out",
        &out,
        "--quant",
        "f16",
        "--json",
    ];
    let v = json_of(&mio(&args));
    assert_eq!(v["lm_file"], "model-f16.gguf");
    let lm: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden/lm.json")).unwrap())
            .unwrap();
    let prompt = mm_prompt();
    let base = [
        "generate",
        "--model",
        &out,
        "--ids",
        &prompt,
        "--max-new-tokens",
        "20",
        "--eos-id",
        "7",
        "--no-constraints",
        "--json",
    ];
    let v = json_of(&mio(&base));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["greedy"]["new_tokens"]));
    let mut beam = base.to_vec();
    beam.extend(["--num-beams", "5"]);
    let v = json_of(&mio(&beam));
    assert_eq!(ids(&v["new_ids"]), ids(&lm["runs"]["beam5"]["new_tokens"]));
    // The llama.cpp backend finds the manifest's GGUF too.
    for extra in [&[][..], &["--num-beams", "5"][..]] {
        let mut args = base.to_vec();
        args.extend(["--backend", "llamacpp"]);
        args.extend(extra);
        let v = json_of(&mio(&args));
        let run = if extra.is_empty() { "greedy" } else { "beam5" };
        assert_eq!(
            ids(&v["new_ids"]),
            ids(&lm["runs"][run]["new_tokens"]),
            "llamacpp {run}"
        );
    }
    let info = json_of(&mio(&["info", "--model", &out, "--json"]));
    assert!(info.to_string().contains("gguf"), "{info}");
}

#[test]
fn a_disk_that_fills_is_one_sentence_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m");
    let release = fixtures().join("release-layout").display().to_string();
    let o = mio(&[
        "import",
        "--release",
        &release,
        "--out",
        &out.display().to_string(),
        "--quant",
        "q8_0",
        "--write-limit",
        "100000",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.trim().rsplit(['\r', '\n']).next().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("no space left"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
}
