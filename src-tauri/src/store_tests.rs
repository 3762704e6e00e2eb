#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

fn text(t: &str) -> Vec<Segment> {
    vec![Segment::Text { text: t.into() }]
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("history.sqlite")).unwrap();
    (dir, store)
}

#[test]
fn conversation_round_trip_and_order() {
    let (_d, mut s) = open();
    let c = s.create_conversation("Hello there\nsecond line").unwrap();
    s.add_message(
        c,
        Role::User,
        Mode::Chat,
        MessageStatus::Done,
        &text("Hello there"),
        "Hello there",
    )
    .unwrap();
    let a = s
        .add_message(
            c,
            Role::Assistant,
            Mode::Chat,
            MessageStatus::Streaming,
            &[],
            "",
        )
        .unwrap();
    let segs = vec![
        Segment::Text {
            text: "Look:".into(),
        },
        Segment::Image {
            file: "image-1.png".into(),
            width: 4,
            height: 4,
        },
    ];
    s.update_message(
        a.id,
        MessageStatus::Done,
        &segs,
        "Look:<image>…</image>",
        None,
    )
    .unwrap();
    let view = s.conversation(c).unwrap();
    assert_eq!(view.summary.title, "Hello there");
    assert_eq!(view.summary.messages, 2);
    assert_eq!(view.messages[1].segments, segs);
    assert_eq!(view.messages[1].status, MessageStatus::Done);
    assert_eq!(
        s.messages(c).unwrap()[1].model_text,
        "Look:<image>…</image>"
    );
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn a_crash_mid_turn_leaves_an_interrupted_message_with_its_partial_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let c;
    {
        let mut s = Store::open(&path).unwrap();
        c = s.create_conversation("q").unwrap();
        s.add_message(
            c,
            Role::User,
            Mode::Voice,
            MessageStatus::Done,
            &text("q"),
            "q",
        )
        .unwrap();
        let a = s
            .add_message(
                c,
                Role::Assistant,
                Mode::Voice,
                MessageStatus::Streaming,
                &[],
                "",
            )
            .unwrap();
        s.update_message(
            a.id,
            MessageStatus::Streaming,
            &text("partial"),
            "partial",
            None,
        )
        .unwrap();
        // dropped without a final status: the app died here
    }
    let s = Store::open(&path).unwrap();
    let view = s.conversation(c).unwrap();
    assert_eq!(view.messages.len(), 2);
    assert_eq!(view.messages[1].status, MessageStatus::Interrupted);
    assert_eq!(view.messages[1].segments, text("partial"));
    let mode: String = s
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn search_and_delete() {
    let (_d, mut s) = open();
    let a = s.create_conversation("cats").unwrap();
    s.add_message(
        a,
        Role::User,
        Mode::Chat,
        MessageStatus::Done,
        &text("tell me about 100% cats"),
        "tell me about 100% cats",
    )
    .unwrap();
    let b = s.create_conversation("dogs").unwrap();
    s.add_message(
        b,
        Role::User,
        Mode::Chat,
        MessageStatus::Done,
        &text("dogs"),
        "dogs",
    )
    .unwrap();
    s.add_message(
        b,
        Role::Assistant,
        Mode::Chat,
        MessageStatus::Done,
        &[Segment::Audio {
            file: "speech-1.wav".into(),
            duration_s: 1.0,
        }],
        "",
    )
    .unwrap();
    assert_eq!(
        s.search("CATS")
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(s.search("100%").unwrap().len(), 1);
    assert_eq!(s.search("_").unwrap().len(), 0);
    assert_eq!(s.search("dog").unwrap()[0].id, b);
    assert_eq!(
        s.delete_conversation(b).unwrap(),
        vec!["speech-1.wav".to_string()]
    );
    assert_eq!(s.list().unwrap().len(), 1);
    assert_eq!(s.conversation(b).unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(
        s.delete_conversation(b).unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[test]
fn titles() {
    assert_eq!(title_of("\n  hi  \nthere"), "hi");
    assert_eq!(title_of(""), "New conversation");
    assert_eq!(title_of(&"x".repeat(60)).chars().count(), 49);
}
