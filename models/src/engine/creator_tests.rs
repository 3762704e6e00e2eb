//! Creator-mode prompts and guide-step assembly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::engine::DecodedImage;

fn image(codes: u32, drawn: bool) -> OutputSegment {
    OutputSegment::Image {
        codes: vec![codes; 32],
        image: drawn.then(|| DecodedImage {
            width: 1,
            height: 1,
            rgb: vec![codes as u8; 3],
        }),
    }
}

fn text(t: &str) -> OutputSegment {
    OutputSegment::Text { text: t.into() }
}

#[test]
fn prompts_are_the_references() {
    assert_eq!(
        creator_prompt(ChatMode::Image, " A tree in the middle of a meadow. ").unwrap(),
        "Please generate an image according to the caption.\nA tree in the middle of a meadow."
    );
    assert_eq!(
        creator_prompt(ChatMode::Video, "rush hour traffic").unwrap(),
        "Please generate a video for ``rush hour traffic''"
    );
    assert_eq!(
        creator_prompt(ChatMode::Guide, "How to make a cake?").unwrap(),
        "How to make a cake? Please provide a step-by-step guide in the form of a visual story."
    );
    assert_eq!(creator_prompt(ChatMode::Chat, " hi ").unwrap(), " hi ");
}

#[test]
fn edit_prompt_puts_the_image_before_the_instruction() {
    assert_eq!(
        creator_prompt(ChatMode::Edit, "make the sky stormy\n<image_placeholder_0>").unwrap(),
        "Please edit the image according to the instruction.\n<image_placeholder_0>\nmake the sky stormy"
    );
    assert_eq!(
        creator_prompt(ChatMode::Edit, "<image_placeholder_3> add a hat").unwrap(),
        "Please edit the image according to the instruction.\n<image_placeholder_3>\nadd a hat"
    );
    for bad in [
        "make it red",
        "<image_placeholder_0>",
        "<image_placeholder_0><image_placeholder_1> merge",
    ] {
        let err = creator_prompt(ChatMode::Edit, bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
    }
}

#[test]
fn rewrite_touches_the_last_user_message_only() {
    use crate::engine::Message;
    let conv = Conversation {
        messages: vec![
            Message::new(Role::User, "first"),
            Message::new(Role::Assistant, "ok"),
            Message::new(Role::User, "a cat"),
        ],
        images: vec![],
        speech: vec![],
    };
    let out = rewrite(&conv, ChatMode::Image).unwrap();
    assert_eq!(out.messages[0].content, "first");
    assert_eq!(out.messages[1].content, "ok");
    assert_eq!(out.messages[2].content, format!("{IMAGE_PROMPT}a cat"));
}

#[test]
fn guide_steps_pair_text_with_the_following_picture() {
    // As the reference's interleaved answers: "text <image> . text <image> . tail".
    let segments = vec![
        text("First, water the plant. "),
        image(1, true),
        text(" . Then lift it out.  "),
        image(2, false),
        text(" .  "),
        image(3, true),
        text(" . Enjoy!"),
    ];
    let steps = guide_steps(&segments);
    let got: Vec<(usize, &str, u32, bool)> = steps
        .iter()
        .map(|s| {
            (
                s.index,
                s.text.as_str(),
                s.codes.first().copied().unwrap_or(0),
                s.image.is_some(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "First, water the plant.", 1, true),
            (1, "Then lift it out.", 2, false),
            (2, "", 3, true),
            (3, "Enjoy!", 0, false),
        ]
    );
    assert!(guide_steps(&[text(" . ")]).is_empty());
}

#[test]
fn streamed_steps_match_the_final_ones() {
    let mut stream = GuideStream::default();
    let events = [
        Event::Token {
            id: 1,
            text: "Dig ".into(),
        },
        Event::Token {
            id: 2,
            text: "a hole.".into(),
        },
        Event::Progress {
            stage: "image".into(),
            step: 1,
            total: 1,
        },
        Event::Segment(image(7, true)),
        Event::Token {
            id: 3,
            text: " . Plant it.".into(),
        },
        Event::Segment(text(" . Plant it.")),
    ];
    let mut steps: Vec<GuideStep> = events.iter().filter_map(|e| stream.observe(e)).collect();
    assert_eq!(steps.len(), 1, "a step is sent when its picture is done");
    steps.extend(stream.close(None));
    let want = guide_steps(&[text("Dig a hole."), image(7, true), text(" . Plant it.")]);
    assert_eq!(steps, want);
    assert_eq!(steps[1].text, "Plant it.");
}

#[test]
fn plans_prime_pictures() {
    let v = crate::text::tiny_vocab();
    assert_eq!(plan(ChatMode::Image, &v).primed, vec![v.image_start]);
    assert_eq!(plan(ChatMode::Edit, &v).task, Task::ImageGeneration);
    assert_eq!(plan(ChatMode::Video, &v).task, Task::VideoGeneration);
    assert!(plan(ChatMode::Guide, &v).primed.is_empty());
    assert_eq!(plan(ChatMode::Guide, &v).task, Task::Interleaved);
    assert_eq!(plan(ChatMode::Voice, &v).primed, vec![v.speech_start]);
}
