//! `mio replay` on every shipped script (tests/scripts/*.yaml) on the tiny model, plus a
//! failing expectation and a broken script.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn replay(script: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mio"))
        .arg("replay")
        .arg(script)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn every_shipped_script_passes_and_writes_a_report() {
    let dir = root().join("tests/scripts");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    assert!(scripts.len() >= 5, "{scripts:?}");
    let tmp = tempfile::tempdir().unwrap();
    for script in scripts {
        let out = tmp.path().join(script.file_stem().unwrap());
        let r = replay(&script, &out, &[]);
        assert!(
            r.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&r.stderr)
        );
        let t: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("transcript.json")).unwrap())
                .unwrap();
        assert_eq!(t["failed"], 0);
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(
            html.contains("all expectations hold") && !html.contains("src='http"),
            "{}",
            script.display()
        );
        // A video input is shown as the strip of keyframes the model saw.
        let videos = t["turns"][0]["videos"].as_array().map_or(0, |v| v.len());
        if videos > 0 {
            let frames = t["turns"][0]["videos"][0]["frames"]
                .as_array()
                .unwrap()
                .len();
            assert!(frames > 1);
            assert!(html.contains("<div class=strip>"), "{}", script.display());
            assert_eq!(
                html.matches("<figure><img src='data:image/png;base64,")
                    .count(),
                frames,
                "{}",
                script.display()
            );
        }
    }
}

#[test]
fn a_failed_expectation_exits_non_zero_and_is_in_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("fail.yaml");
    let model = root().join("tests/fixtures/model");
    std::fs::write(
        &script,
        format!(
            "name: fail\nmodel: {}\nparams: {{num_beams: 1, max_new_tokens: 4}}\nturns:\n  - user: hi\n    expect: {{text_contains: [\"this will not appear\"], images: 3}}\n",
            model.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let r = replay(&script, &out, &[]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("2 expectation(s) failed"), "{err}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("2 expectation(s) failed") && html.contains("✗"));
}

#[test]
fn a_broken_script_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("bad.yaml");
    std::fs::write(&script, "name: bad\nturns: [ {usr: typo} ]\n").unwrap();
    let r = replay(&script, &tmp.path().join("out"), &["--model", "/nowhere"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.starts_with("error: ")
            && err.contains("not a valid replay script")
            && err.trim().lines().count() == 1,
        "{err}"
    );
}
