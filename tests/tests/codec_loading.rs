//! Media codecs load when a request first needs them (the default) or all with the engine
//! (`CodecLoading::AtLoad`), on the tiny model: a text request never touches a broken image
//! encoder, the first image request reports it clearly (and so does the next), and loading
//! at start reports it then; an intact codec gives the same codes either way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::atomic::AtomicBool;

use mio_models::engine::{CodecLoading, Engine, Event, ImageInput, LoadOptions, Request, Response};
use mio_tests::fixtures;

fn engine(dir: &Path, codecs: CodecLoading) -> mio_models::Result<Engine> {
    Engine::load(
        &LoadOptions {
            model_dir: dir.to_path_buf(),
            skip_lm: true,
            codecs,
            ..Default::default()
        },
        &candle_core::Device::Cpu,
    )
}

fn run(engine: &mut Engine, request: Request) -> mio_models::Result<Response> {
    engine.run(request, &AtomicBool::new(false), &mut |_| {})
}

fn image_request() -> Request {
    let name = "lossless.webp";
    let bytes = std::fs::read(fixtures().join("image_tokenizer").join(name)).unwrap();
    Request::ImageEncode {
        images: vec![ImageInput {
            name: name.into(),
            bytes,
        }],
    }
}

/// The tiny model's folder with `seed-tokenizer-2/eva_vit_g.pth` cut to half its length.
fn with_truncated_encoder() -> tempfile::TempDir {
    let src = fixtures().join("model");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let to = tmp.path().join(entry.file_name());
        if entry.file_name() == "seed-tokenizer-2" {
            std::fs::create_dir(&to).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap() {
                let file = file.unwrap();
                let bytes = std::fs::read(file.path()).unwrap();
                let keep = if file.file_name() == "eva_vit_g.pth" {
                    bytes.len() / 2
                } else {
                    bytes.len()
                };
                std::fs::write(to.join(file.file_name()), &bytes[..keep]).unwrap();
            }
        } else {
            #[cfg(unix)]
            std::os::unix::fs::symlink(entry.path(), &to).unwrap();
        }
    }
    tmp
}

#[test]
fn a_broken_codec_fails_its_first_use_not_the_start() {
    let dir = with_truncated_encoder();
    let mut lazy = engine(dir.path(), CodecLoading::OnFirstUse).unwrap();
    let Response::Ids { ids } = run(
        &mut lazy,
        Request::Tokenize {
            text: "hello".into(),
        },
    )
    .unwrap() else {
        panic!("not ids")
    };
    assert!(!ids.is_empty());
    for _ in 0..2 {
        let e = run(&mut lazy, image_request()).unwrap_err().to_string();
        assert!(e.contains("eva_vit_g.pth"), "{e}");
    }
    let e = engine(dir.path(), CodecLoading::AtLoad)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("eva_vit_g.pth"), "{e}");
}

#[test]
fn codes_are_the_same_whether_the_encoder_loads_at_start_or_on_first_use() {
    let dir = fixtures().join("model");
    let mut codes = vec![];
    for loading in [CodecLoading::OnFirstUse, CodecLoading::AtLoad] {
        let mut e = engine(&dir, loading).unwrap();
        let Response::ImageCodes { codes: c, .. } = run(&mut e, image_request()).unwrap() else {
            panic!("not image codes")
        };
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].len(), 32);
        codes.push(c);
    }
    assert_eq!(codes[0], codes[1]);
}

#[test]
fn a_codec_loading_on_first_use_is_reported_once() {
    let mut e = engine(&fixtures().join("model"), CodecLoading::OnFirstUse).unwrap();
    let stages = |e: &mut Engine| {
        let mut seen = vec![];
        e.run(image_request(), &AtomicBool::new(false), &mut |ev| {
            if let Event::Progress { stage, step, total } = ev {
                seen.push((stage, step, total));
            }
        })
        .unwrap();
        seen
    };
    let stage = "loading the SEED image encoder".to_string();
    assert_eq!(stages(&mut e), vec![(stage.clone(), 0, 1), (stage, 1, 1)]);
    assert_eq!(stages(&mut e), vec![]);
    let mut eager = engine(&fixtures().join("model"), CodecLoading::AtLoad).unwrap();
    assert_eq!(stages(&mut eager), vec![]);
}

#[test]
fn prepare_loads_what_it_names_ahead_of_the_turn() {
    let mut e = engine(&fixtures().join("model"), CodecLoading::OnFirstUse).unwrap();
    let run_seeing = |e: &mut Engine, request: Request| {
        let mut seen = vec![];
        let response = e
            .run(request, &AtomicBool::new(false), &mut |ev| {
                if let Event::Progress { stage, step, .. } = ev {
                    seen.push((stage, step));
                }
            })
            .unwrap();
        (response, seen)
    };
    let prepare = |image_encoder| Request::Prepare {
        speech: false,
        image_encoder,
        image_decoder: false,
    };
    let (response, seen) = run_seeing(&mut e, prepare(false));
    assert_eq!((response, seen), (Response::Prepared, vec![]));
    let (response, seen) = run_seeing(&mut e, prepare(true));
    assert_eq!(response, Response::Prepared);
    let stage = "loading the SEED image encoder".to_string();
    assert_eq!(seen, vec![(stage.clone(), 0), (stage, 1)]);
    let (_, seen) = run_seeing(&mut e, image_request());
    assert_eq!(seen, vec![]);
}
