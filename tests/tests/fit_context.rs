//! A conversation longer than the context: an error by default, and with `fit_context` the
//! oldest turns are left out (the app's setting) with a warning, on the tiny model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mio_models::engine::{
    ChatMode, Conversation, Engine, GenerationParams, LoadOptions, MediaInputs, Message, Request,
    Response, Role,
};
use mio_models::Error;
use mio_tests::fixtures;

fn chat(
    engine: &mut Engine,
    conv: &Conversation,
    max_new: usize,
    fit: Option<bool>,
) -> mio_models::Result<Response> {
    let vocab = engine.info().vocab_size as u32;
    let params = GenerationParams {
        max_new_tokens: Some(max_new),
        num_beams: Some(1),
        do_sample: Some(false),
        // Every id ends the answer: one new token, whatever the random weights say.
        eos_ids: Some((0..vocab).collect()),
        constraints: Some(false),
        fit_context: fit,
        ..GenerationParams::default()
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    engine.run(
        Request::Chat {
            conversation: conv.clone(),
            mode: ChatMode::Chat,
            params,
            media: MediaInputs::default(),
        },
        &cancel,
        &mut |_| {},
    )
}

#[test]
fn a_too_long_conversation_fails_clearly_or_drops_its_oldest_turns() {
    let mut engine = Engine::load(
        &LoadOptions {
            model_dir: fixtures().join("model"),
            ..Default::default()
        },
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let ctx = engine.info().context_length;
    let mut messages = vec![];
    for i in 0..6 {
        messages.push(Message::new(
            Role::User,
            format!("question number {i} about the weather in spring"),
        ));
        messages.push(Message::new(
            Role::Assistant,
            format!("answer number {i}: it is mild and often rainy"),
        ));
    }
    messages.push(Message::new(Role::User, "the last question, about summer"));
    let conv = Conversation {
        messages,
        ..Default::default()
    };
    let Response::Chat {
        prompt_ids,
        warnings,
        ..
    } = chat(&mut engine, &conv, 1, None).unwrap()
    else {
        panic!("not a chat response")
    };
    assert!(warnings.is_empty(), "{warnings:?}");
    let full = prompt_ids.len();
    // Room for all but a few tokens of the prompt.
    let max_new = ctx - full + 5;
    let e = chat(&mut engine, &conv, max_new, None).unwrap_err();
    assert!(
        matches!(e, Error::PromptTooLong { len, max } if len == full && max == ctx),
        "{e}"
    );
    assert!(e.to_string().contains("start a new conversation"), "{e}");

    let Response::Chat {
        prompt_ids,
        warnings,
        ..
    } = chat(&mut engine, &conv, max_new, Some(true)).unwrap()
    else {
        panic!("not a chat response")
    };
    assert!(prompt_ids.len() + max_new <= ctx);
    // One turn (a question and its answer) was enough.
    assert!(
        warnings[0].starts_with("the 2 oldest messages were left out"),
        "{warnings:?}"
    );
    let tok = mio_models::text::TextTokenizer::load(&fixtures().join("model")).unwrap();
    let text = tok.decode(&prompt_ids).unwrap();
    assert!(!text.contains("question number 0"), "{text}");
    assert!(
        text.contains("question number 1") && text.contains("the last question"),
        "{text}"
    );

    // Nothing fits but the last question: still the clear error, nothing else is dropped silently.
    let e = chat(&mut engine, &conv, ctx, Some(true)).unwrap_err();
    assert!(matches!(e, Error::PromptTooLong { .. }), "{e}");
}
