//! The creator modes as the engine runs them: the app's mode → the engine's `ChatMode` (its
//! prompt and `infer.py` preset), decoding overrides from the settings, the presets shown in
//! settings, and how a Guide step replaces what streamed before it.

use mio_models::engine::{ChatMode, GenerationParams, GuideStep};

use crate::ipc::{GenOverrides, Mode, ModePreset, Segment};

/// The engine's decoding parameters for `o` (unset fields keep the mode's preset).
pub fn generation_params(o: &GenOverrides) -> GenerationParams {
    GenerationParams {
        max_new_tokens: o.max_new_tokens.map(|n| n as usize),
        num_beams: o.num_beams.map(|n| n.max(1) as usize),
        do_sample: o.do_sample,
        temperature: o.temperature,
        top_p: o.top_p,
        repetition_penalty: o.repetition_penalty,
        seed: o.seed,
        preview_every: Some(PREVIEW_EVERY),
        // A long conversation keeps working: its oldest turns are left out of the prompt.
        fit_context: Some(true),
        ..GenerationParams::default()
    }
}

/// The reference presets of every mode (`infer.py`'s task settings).
pub fn presets() -> Vec<ModePreset> {
    [
        Mode::Chat,
        Mode::Voice,
        Mode::Guide,
        Mode::Edit,
        Mode::Image,
        Mode::Video,
    ]
    .into_iter()
    .map(|mode| {
        let task = mio_models::engine::chat_task(chat_mode(mode));
        let (beams, sample, penalty) = task.search();
        ModePreset {
            mode,
            task: task.name().into(),
            max_new_tokens: 512,
            num_beams: beams as u32,
            do_sample: sample,
            temperature: 1.0,
            top_p: 0.7,
            repetition_penalty: f64::from(penalty),
        }
    })
    .collect()
}

/// A picture preview every this many denoising steps (of 20).
pub const PREVIEW_EVERY: usize = 5;

/// The engine's mode (its prompt and preset) for the app's.
pub fn chat_mode(mode: Mode) -> ChatMode {
    match mode {
        Mode::Chat => ChatMode::Chat,
        Mode::Voice => ChatMode::Voice,
        Mode::Guide => ChatMode::Guide,
        Mode::Edit => ChatMode::Edit,
        Mode::Image => ChatMode::Image,
        Mode::Video => ChatMode::Video,
    }
}

/// `segments` with the text and picture streamed since the last step replaced by `step`
/// (a `Segment::Step`); other segments of that stretch (speech) stay after it.
pub fn close_step(segments: &mut Vec<Segment>, step: &GuideStep) -> Segment {
    let start = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Step { .. }))
        .map_or(0, |i| i + 1);
    let tail: Vec<Segment> = segments.drain(start..).collect();
    let picture = tail.iter().rev().find_map(|s| match s {
        Segment::Image {
            file,
            width,
            height,
        } if !step.codes.is_empty() => Some((file.clone(), *width, *height)),
        _ => None,
    });
    let (file, width, height) = picture.map_or((None, 0, 0), |(f, w, h)| (Some(f), w, h));
    let seg = Segment::Step {
        index: step.index as u32,
        text: step.text.clone(),
        file,
        width,
        height,
    };
    segments.push(seg.clone());
    segments.extend(
        tail.into_iter()
            .filter(|s| matches!(s, Segment::Audio { .. })),
    );
    seg
}
