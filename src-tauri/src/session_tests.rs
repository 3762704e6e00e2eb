#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use mio_models::engine::{DecodedImage, Timings};

use super::*;
use crate::ipc::{Attachment, MediaKind};

/// A fake engine for the session tests (labelled as such: not a product path). It streams
/// "w0 w1 …", then a 2×2 picture and a short speech clip with its preview, and honours
/// cancel between steps.
struct FakeEngine {
    words: usize,
    delay: Duration,
}

impl Backend for FakeEngine {
    type Load = (usize, Duration);
    type Ready = ();
    type Request = Request;
    type Event = Event;
    type Response = Response;

    fn load((words, delay): Self::Load) -> anyhow::Result<(Self, ())> {
        Ok((FakeEngine { words, delay }, ()))
    }

    fn run(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
    ) -> anyhow::Result<Response> {
        let Request::Chat {
            conversation,
            media,
            ..
        } = request
        else {
            anyhow::bail!("fake engine: chat only");
        };
        assert_eq!(conversation.images.len(), media.images.len());
        let mut answer = String::new();
        let mut finish_reason = FinishReason::Eos;
        for i in 0..self.words {
            if cancel.load(Ordering::SeqCst) {
                finish_reason = FinishReason::Cancelled;
                break;
            }
            std::thread::sleep(self.delay);
            let text = format!("w{i} ");
            answer.push_str(&text);
            emit(Event::Token { id: i as u32, text });
        }
        if finish_reason == FinishReason::Eos {
            let image = DecodedImage {
                width: 2,
                height: 2,
                rgb: vec![128; 12],
            };
            emit(Event::Progress {
                stage: "image".into(),
                step: 1,
                total: 1,
            });
            emit(Event::Segment(OutputSegment::Image {
                codes: vec![1; 32],
                image: Some(image),
            }));
            emit(Event::SpeechPreview {
                index: 0,
                sample_rate: 16_000,
                samples: vec![0.0; 160],
            });
            emit(Event::Segment(OutputSegment::Speech {
                content: vec![1],
                timbre: None,
                audio: Some(vec![0.1; 1600]),
            }));
            answer.push_str("<image>…</image><spch>…</spch>");
        }
        Ok(Response::Chat {
            answer_text: answer,
            prompt_ids: vec![],
            new_ids: vec![],
            segments: vec![],
            warnings: vec![],
            finish_reason,
            timings: Timings {
                new_tokens: self.words,
                decode_s: 1.0,
                ..Timings::default()
            },
        })
    }
}

fn setup(words: usize, delay_ms: u64) -> (tempfile::TempDir, Worker<FakeEngine>, History) {
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::<FakeEngine>::spawn().unwrap();
    worker
        .load((words, Duration::from_millis(delay_ms)))
        .unwrap();
    let history = History {
        store: Arc::new(Mutex::new(
            Store::open(&dir.path().join("h.sqlite")).unwrap(),
        )),
        media: MediaDir::open(dir.path().join("media")).unwrap(),
    };
    (dir, worker, history)
}

fn collect() -> (Sink, mpsc::Receiver<StreamEvent>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |e| {
            let _ = tx.send(e);
        }),
        rx,
    )
}

fn until_end(rx: &mpsc::Receiver<StreamEvent>) -> Vec<StreamEvent> {
    let mut out = vec![];
    loop {
        let e = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        let last = matches!(e, StreamEvent::Done { .. } | StreamEvent::Failed { .. });
        out.push(e);
        if last {
            return out;
        }
    }
}

fn args(text: &str, conversation_id: Option<i64>) -> SendArgs {
    SendArgs {
        conversation_id,
        text: text.into(),
        attachments: vec![],
        mode: Mode::Chat,
        max_new_tokens: None,
    }
}

#[test]
fn a_turn_streams_text_then_media_and_stores_them_in_order() {
    let (_d, worker, history) = setup(3, 0);
    let (sink, rx) = collect();
    let started = send(&worker, &history, args("hi", None), sink).unwrap();
    let events = until_end(&rx);
    let texts: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, "w0 w1 w2 ");
    assert!(events
        .iter()
        .any(|e| matches!(e, StreamEvent::SpeechPreview { .. })));
    assert!(events
        .iter()
        .any(|e| matches!(e, StreamEvent::Progress { .. })));
    let StreamEvent::Done {
        message,
        tokens_per_s,
    } = events.last().unwrap()
    else {
        panic!()
    };
    assert_eq!(*tokens_per_s, 3.0);
    assert_eq!(message.status, MessageStatus::Done);
    assert!(matches!(
        &message.segments[..],
        [
            Segment::Text { .. },
            Segment::Image { width: 2, .. },
            Segment::Audio { .. }
        ]
    ));
    for f in crate::store::media_files(&message.segments) {
        assert!(history.media.resolve(&f).unwrap().exists());
    }
    // The preview was temporary.
    let n_files = std::fs::read_dir(history.media.root()).unwrap().count();
    assert_eq!(n_files, 2);
    let view = history
        .with(|s| s.conversation(started.conversation_id))
        .unwrap();
    assert_eq!(view.messages.len(), 2);
    assert_eq!(
        history.with(|s| s.message(message.id)).unwrap().model_text,
        "w0 w1 w2 <image>…</image><spch>…</spch>"
    );
}

#[test]
fn cancel_keeps_the_partial_answer_as_cancelled() {
    let (_d, worker, history) = setup(1000, 5);
    let (sink, rx) = collect();
    let started = send(&worker, &history, args("long", None), sink).unwrap();
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(matches!(first, StreamEvent::Text { .. }));
    worker.cancel(started.request_id);
    let events = until_end(&rx);
    let StreamEvent::Done { message, .. } = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(message.status, MessageStatus::Cancelled);
    assert!(matches!(&message.segments[..], [Segment::Text { .. }]));
}

#[test]
fn regenerate_replaces_the_last_answer_and_follow_ups_carry_history() {
    let (_d, worker, history) = setup(2, 0);
    let (sink, rx) = collect();
    let started = send(&worker, &history, args("one", None), sink).unwrap();
    until_end(&rx);
    let (sink, rx) = collect();
    regenerate(&worker, &history, started.conversation_id, sink).unwrap();
    until_end(&rx);
    let view = history
        .with(|s| s.conversation(started.conversation_id))
        .unwrap();
    assert_eq!(view.messages.len(), 2);
    let req = history
        .with(|s| {
            build_request(
                s,
                &history.media,
                started.conversation_id,
                Mode::Voice,
                Some(7),
            )
        })
        .unwrap();
    let Request::Chat {
        conversation,
        mode,
        params,
        ..
    } = req
    else {
        panic!()
    };
    assert_eq!(conversation.messages.len(), 2);
    assert_eq!(mode, ChatMode::Voice);
    assert_eq!(params.max_new_tokens, Some(7));
}

#[test]
fn attachments_become_placeholders_and_empty_messages_are_refused() {
    let (_d, worker, history) = setup(1, 0);
    let png = history.media.write_png("in", 2, 2, &[9; 12]).unwrap();
    let attachment = Attachment {
        kind: MediaKind::Image,
        segment: png,
        name: "a.png".into(),
    };
    let (sink, rx) = collect();
    let mut a = args("what is this?", None);
    a.attachments.push(attachment);
    let started = send(&worker, &history, a, sink).unwrap();
    until_end(&rx);
    let req = history
        .with(|s| build_request(s, &history.media, started.conversation_id, Mode::Edit, None))
        .unwrap();
    let Request::Chat {
        conversation,
        media,
        ..
    } = req
    else {
        panic!()
    };
    assert_eq!(
        conversation.messages[0].content,
        "what is this?\n<image_placeholder_0>"
    );
    assert_eq!(media.images.len(), 1);
    let (sink, _rx) = collect();
    let err = send(&worker, &history, args("  ", None), sink).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidInput);
}
