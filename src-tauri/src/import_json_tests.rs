#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::export;
use crate::ipc::{ExportFormat, Mode, Role};

fn setup() -> (tempfile::TempDir, Store, MediaDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let media = MediaDir::open(dir.path().join("media")).unwrap();
    (dir, store, media)
}

/// A conversation with text, a picture and a guide step, exported as JSON.
fn exported(store: &mut Store, media: &MediaDir, out: &std::path::Path) -> (i64, Vec<u8>) {
    let img = media.write_png("x", 1, 1, &[1, 2, 3]).unwrap();
    let Segment::Image { file, .. } = img.clone() else {
        panic!()
    };
    let id = store.create_conversation("Plant a tree").unwrap();
    store
        .add_message(
            id,
            Role::User,
            Mode::Guide,
            MessageStatus::Done,
            &[Segment::Text {
                text: "Plant a tree".into(),
            }],
            "Plant a tree",
        )
        .unwrap();
    let step = Segment::Step {
        index: 0,
        text: "Dig".into(),
        file: Some(file),
        width: 1,
        height: 1,
    };
    store
        .add_message(
            id,
            Role::Assistant,
            Mode::Guide,
            MessageStatus::Done,
            &[step, img],
            "Dig<image>…</image>",
        )
        .unwrap();
    let view = store.conversation(id).unwrap();
    let path = export::write(&view, media, out, ExportFormat::Json).unwrap();
    (id, std::fs::read(path).unwrap())
}

#[test]
fn an_export_imports_as_a_new_conversation_with_its_own_media_copies() {
    let (d, mut store, media) = setup();
    let (id, bytes) = exported(&mut store, &media, &d.path().join("exports"));
    let summary = import(&mut store, &media, &bytes).unwrap();
    assert_ne!(summary.id, id);
    assert_eq!(summary.title, "Plant a tree");
    assert_eq!(summary.messages, 2);
    let original = store.conversation(id).unwrap();
    let copy = store.conversation(summary.id).unwrap();
    let kinds = |v: &ConversationView| {
        v.messages
            .iter()
            .map(|m| (m.role, m.mode, m.status, m.segments.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&original), kinds(&copy));
    let of = |v: &ConversationView| media_files(&v.messages[1].segments);
    let (a, b) = (of(&original), of(&copy));
    assert_eq!(b.len(), 2);
    assert_eq!(b[0], b[1], "the step and the image share one copy");
    assert!(a.iter().all(|f| !b.contains(f)));
    // Deleting the original leaves the copy's media intact.
    for f in store.delete_conversation(id).unwrap() {
        // (The step and the image name the same file: it goes once.)
        let _ = std::fs::remove_file(media.resolve(&f).unwrap());
    }
    assert!(media.resolve(&b[0]).unwrap().is_file());
    assert_eq!(
        store.message(copy.messages[1].id).unwrap().model_text,
        "Dig"
    );
}

#[test]
fn bad_files_are_one_clear_error_and_change_nothing() {
    let (d, mut store, media) = setup();
    let (_, bytes) = exported(&mut store, &media, &d.path().join("exports"));
    let before = store.list().unwrap().len();
    let n_media = std::fs::read_dir(media.root()).unwrap().count();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "not a MIO conversation export"),
        (
            br#"{"summary": 1}"#.to_vec(),
            "not a MIO conversation export",
        ),
        (
            br#"{"summary":{"id":1,"title":"t","updated_ms":0,"messages":0},"messages":[]}"#
                .to_vec(),
            "no messages",
        ),
        (
            String::from_utf8(bytes.clone())
                .unwrap()
                .replace("\"file\": \"x-", "\"file\": \"gone-")
                .into_bytes(),
            "media not in this app's media folder",
        ),
        (
            String::from_utf8(bytes)
                .unwrap()
                .replacen("\"file\": \"x-", "\"file\": \"../../etc/x-", 1)
                .into_bytes(),
            "media not in this app's media folder",
        ),
    ];
    for (bad, want) in cases {
        let err = import(&mut store, &media, &bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(err.message.contains(want), "{} / {want}", err.message);
    }
    assert_eq!(store.list().unwrap().len(), before);
    assert_eq!(std::fs::read_dir(media.root()).unwrap().count(), n_media);
}
