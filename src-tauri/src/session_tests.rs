#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use mio_models::engine::{ChatMode, DecodedImage, GuideStep, Timings};

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
        if let Request::Prepare {
            image_encoder,
            speech,
            ..
        } = request
        {
            // A fake with an image encoder to load and no speech codec.
            anyhow::ensure!(!speech, "fake engine: no speech codec");
            if image_encoder {
                for step in 0..2 {
                    emit(Event::Progress {
                        stage: "loading the SEED image encoder".into(),
                        step,
                        total: 1,
                    });
                }
            }
            return Ok(Response::Prepared);
        }
        let Request::Chat {
            conversation,
            media,
            mode,
            params,
        } = request
        else {
            anyhow::bail!("fake engine: chat and prepare only");
        };
        assert_eq!(conversation.images.len(), media.images.len());
        if mode == ChatMode::Guide {
            assert_eq!(params.preview_every, Some(PREVIEW_EVERY));
            return Ok(fake_guide(emit));
        }
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
            warnings: if finish_reason == FinishReason::Eos {
                vec!["the 2 oldest messages were left out".into()]
            } else {
                vec![]
            },
            finish_reason,
            timings: Timings {
                new_tokens: self.words,
                decode_s: 1.0,
                ..Timings::default()
            },
        })
    }
}

fn pic(v: u8) -> DecodedImage {
    DecodedImage {
        width: 2,
        height: 2,
        rgb: vec![v; 12],
    }
}

/// The fake engine's guide answer: "Dig a hole." + picture (with a preview), then
/// "Water it." without one, with the engine's step events.
fn fake_guide(emit: &mut dyn FnMut(Event)) -> Response {
    emit(Event::Token {
        id: 1,
        text: "Dig a hole.".into(),
    });
    emit(Event::ImagePreview {
        step: 5,
        total: 20,
        width: 2,
        height: 2,
        rgb: vec![7; 12],
    });
    emit(Event::Segment(OutputSegment::Image {
        codes: vec![3; 32],
        image: Some(pic(200)),
    }));
    emit(Event::GuideStep(GuideStep {
        index: 0,
        text: "Dig a hole.".into(),
        codes: vec![3; 32],
        image: Some(pic(200)),
    }));
    emit(Event::Token {
        id: 2,
        text: " Water it.".into(),
    });
    emit(Event::GuideStep(GuideStep {
        index: 1,
        text: "Water it.".into(),
        codes: vec![],
        image: None,
    }));
    Response::Chat {
        answer_text: "Dig a hole.<image>…</image> Water it.".into(),
        prompt_ids: vec![],
        new_ids: vec![],
        segments: vec![],
        warnings: vec![],
        finish_reason: FinishReason::Eos,
        timings: Timings::default(),
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
        params: None,
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
        warnings,
    } = events.last().unwrap()
    else {
        panic!()
    };
    assert_eq!(*tokens_per_s, 3.0);
    // The engine's warnings reach the UI with the end of the turn.
    assert_eq!(
        warnings,
        &["the 2 oldest messages were left out".to_string()]
    );
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
                &GenOverrides {
                    max_new_tokens: Some(7),
                    temperature: Some(0.5),
                    ..GenOverrides::default()
                },
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
    assert_eq!(params.temperature, Some(0.5));
    assert_eq!(params.num_beams, None);
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
        .with(|s| {
            build_request(
                s,
                &history.media,
                started.conversation_id,
                Mode::Edit,
                &GenOverrides::default(),
            )
        })
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

#[test]
fn every_mode_reaches_the_engine_as_its_chat_mode() {
    let pairs = [
        (Mode::Chat, ChatMode::Chat),
        (Mode::Voice, ChatMode::Voice),
        (Mode::Guide, ChatMode::Guide),
        (Mode::Edit, ChatMode::Edit),
        (Mode::Image, ChatMode::Image),
        (Mode::Video, ChatMode::Video),
    ];
    for (app, engine) in pairs {
        assert_eq!(chat_mode(app), engine);
    }
}

#[test]
fn guide_steps_replace_their_text_and_picture_and_previews_are_temporary() {
    let (_d, worker, history) = setup(1, 0);
    let (sink, rx) = collect();
    let mut a = args("How do I plant a tree?", None);
    a.mode = Mode::Guide;
    send(&worker, &history, a, sink).unwrap();
    let events = until_end(&rx);
    let preview = events.iter().find_map(|e| match e {
        StreamEvent::ImagePreview {
            step: 5,
            total: 20,
            segment,
        } => Some(segment.clone()),
        _ => None,
    });
    assert!(matches!(preview, Some(Segment::Image { width: 2, .. })));
    let steps: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::GuideStep { segment } => Some(segment.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(steps.len(), 2);
    let StreamEvent::Done { message, .. } = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(message.segments, steps);
    let [Segment::Step {
        index: 0,
        text,
        file: Some(file),
        width: 2,
        ..
    }, Segment::Step {
        index: 1,
        file: None,
        ..
    }] = &message.segments[..]
    else {
        panic!("{:?}", message.segments)
    };
    assert_eq!(text, "Dig a hole.");
    assert!(history.media.resolve(file).unwrap().exists());
    // Only the step's picture is left: the preview was removed.
    let n_files = std::fs::read_dir(history.media.root()).unwrap().count();
    assert_eq!(n_files, 1);
}

#[test]
fn closing_a_step_keeps_earlier_steps_and_speech() {
    let mut segs = vec![
        Segment::Text { text: "a".into() },
        Segment::Audio {
            file: "s.wav".into(),
            duration_s: 1.0,
        },
        Segment::Image {
            file: "p.png".into(),
            width: 4,
            height: 3,
        },
    ];
    let step = GuideStep {
        index: 0,
        text: "a".into(),
        codes: vec![1],
        image: None,
    };
    let s = close_step(&mut segs, &step);
    assert_eq!(
        s,
        Segment::Step {
            index: 0,
            text: "a".into(),
            file: Some("p.png".into()),
            width: 4,
            height: 3
        }
    );
    assert!(matches!(
        &segs[..],
        [Segment::Step { .. }, Segment::Audio { .. }]
    ));
    segs.push(Segment::Text { text: "b".into() });
    let last = GuideStep {
        index: 1,
        text: "b".into(),
        codes: vec![],
        image: None,
    };
    close_step(&mut segs, &last);
    assert_eq!(segs.len(), 3);
    assert!(matches!(
        &segs[1],
        Segment::Step {
            index: 1,
            file: None,
            ..
        }
    ));
}

#[test]
fn edit_and_resend_truncates_after_the_message_and_answers_again() {
    let (_d, worker, history) = setup(2, 0);
    let (sink, rx) = collect();
    let png = history.media.write_png("in", 2, 2, &[9; 12]).unwrap();
    let mut a = args("first question", None);
    a.attachments.push(Attachment {
        kind: MediaKind::Image,
        segment: png.clone(),
        name: "a.png".into(),
    });
    let first = send(&worker, &history, a, sink).unwrap();
    until_end(&rx);
    let (sink, rx) = collect();
    send(
        &worker,
        &history,
        args("second", Some(first.conversation_id)),
        sink,
    )
    .unwrap();
    until_end(&rx);
    let before = history
        .with(|s| s.conversation(first.conversation_id))
        .unwrap();
    assert_eq!(before.messages.len(), 4);
    let old_answer_files = crate::store::media_files(&before.messages[1].segments);
    assert!(!old_answer_files.is_empty());

    let user_id = first.user.as_ref().unwrap().id;
    let (sink, rx) = collect();
    let again = resend(
        &worker,
        &history,
        first.conversation_id,
        user_id,
        "first question, edited",
        sink,
    )
    .unwrap();
    assert_eq!(
        again.user.as_ref().unwrap().segments,
        vec![
            Segment::Text {
                text: "first question, edited".into()
            },
            png
        ]
    );
    until_end(&rx);
    let after = history
        .with(|s| s.conversation(first.conversation_id))
        .unwrap();
    assert_eq!(after.messages.len(), 2);
    assert_eq!(after.messages[1].id, again.message_id);
    for f in old_answer_files {
        assert!(!history.media.resolve(&f).unwrap().exists(), "{f} kept");
    }
    let req = history
        .with(|s| {
            build_request(
                s,
                &history.media,
                first.conversation_id,
                Mode::Chat,
                &GenOverrides::default(),
            )
        })
        .unwrap();
    let Request::Chat { conversation, .. } = req else {
        panic!()
    };
    assert_eq!(conversation.messages.len(), 2);
    assert!(conversation.messages[0]
        .content
        .starts_with("first question, edited"));
    // An assistant message cannot be resent.
    let (sink, _rx) = collect();
    let err = resend(
        &worker,
        &history,
        first.conversation_id,
        again.message_id,
        "x",
        sink,
    )
    .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

#[test]
fn presets_follow_the_reference_tasks() {
    let p = presets();
    assert_eq!(p.len(), 6);
    let of = |m: Mode| p.iter().find(|x| x.mode == m).unwrap().clone();
    assert_eq!(
        (of(Mode::Chat).num_beams, of(Mode::Chat).do_sample),
        (5, false)
    );
    assert_eq!(of(Mode::Voice).repetition_penalty, 2.0);
    assert!(of(Mode::Guide).do_sample && of(Mode::Video).do_sample);
    assert_eq!(of(Mode::Edit).task, "image generation");
    assert!((of(Mode::Image).repetition_penalty - 1.15).abs() < 1e-6);
}

#[test]
fn a_video_attachment_sends_its_keyframes_after_the_pictures() {
    let (_d, worker, history) = setup(1, 0);
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/video/cut3.mp4"
    ))
    .unwrap();
    let video = history.media.import("cut3.mp4", &bytes).unwrap();
    let Segment::Video { frames, .. } = &video.segment else {
        panic!()
    };
    let n = frames.len();
    let png = history.media.write_png("in", 2, 2, &[9; 12]).unwrap();
    let mut a = args("what happens?", None);
    a.attachments.push(Attachment {
        kind: MediaKind::Image,
        segment: png,
        name: "a.png".into(),
    });
    a.attachments.push(video);
    let (sink, rx) = collect();
    let started = send(&worker, &history, a, sink).unwrap();
    until_end(&rx);
    let req = history
        .with(|s| {
            build_request(
                s,
                &history.media,
                started.conversation_id,
                Mode::Chat,
                &GenOverrides::default(),
            )
        })
        .unwrap();
    let Request::Chat {
        conversation,
        media,
        ..
    } = req
    else {
        panic!()
    };
    assert_eq!(media.images.len(), 1 + n);
    let frames: String = (1..=n)
        .map(|i| format!("<image_placeholder_{i}>"))
        .collect();
    assert_eq!(
        conversation.messages[0].content,
        format!("what happens?\n<image_placeholder_0>\n{frames}")
    );
}

#[test]
fn preparing_for_an_attachment_streams_the_loading_then_ends_quietly_or_fails_once() {
    let (_dir, worker, _history) = setup(1, 0);
    let (sink, rx) = collect();
    prepare(&worker, MediaKind::Video, sink).unwrap();
    let mut seen = vec![];
    while let Ok(e) = rx.recv_timeout(Duration::from_secs(20)) {
        seen.push(e);
    }
    let stage = "loading the SEED image encoder".to_string();
    assert_eq!(
        seen,
        vec![
            StreamEvent::Progress {
                stage: stage.clone(),
                step: 0,
                total: 1
            },
            StreamEvent::Progress {
                stage,
                step: 1,
                total: 1
            },
        ]
    );
    let (sink, rx) = collect();
    prepare(&worker, MediaKind::Audio, sink).unwrap();
    let events = until_end(&rx);
    assert!(
        matches!(&events[..], [StreamEvent::Failed { error, message: None }] if error.message.contains("no speech codec")),
        "{events:?}"
    );
}
