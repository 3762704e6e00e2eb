//! `mio replay`: a scripted conversation run headless, checked against expectations, with a
//! transcript and a self-contained HTML report. Testers write scripts; CI replays
//! `tests/scripts/*.yaml` on the tiny model.
//!
//! Script (YAML): `name`, optional `description`, `model` (relative to the script),
//! `mode` (`chat` | `voice` | `image` | `video` | `guide` | `edit`; creator modes also export
//! their files into `turnN/`), `params` (decoding overrides, as `GenerationParams`), and
//! `turns`: each a `user` message with optional `images` / `audio` and an `expect` block.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mio_models::engine::{
    ChatMode, Conversation, FinishReason, GenerationParams, LoadOptions, Message, OutputSegment,
    Request, Response, Role, Timings,
};
use serde::{Deserialize, Serialize};

use crate::commands::write_atomic;
use crate::device::DeviceKind;
use crate::engine_backend::EngineWorker;
use crate::media::{load_inputs, place_media, save_outputs};

/// A replay script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Short name (report title).
    pub name: String,
    /// What the script checks.
    #[serde(default)]
    pub description: String,
    /// Model folder, relative to the script file.
    pub model: Option<PathBuf>,
    /// Assistant mode.
    #[serde(default)]
    pub mode: ChatMode,
    /// Decoding overrides for every turn.
    #[serde(default)]
    pub params: GenerationParams,
    /// The user's turns, in order.
    pub turns: Vec<Turn>,
}

/// One user turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// The message.
    pub user: String,
    /// Images attached (relative to the script).
    #[serde(default)]
    pub images: Vec<PathBuf>,
    /// Audio attached (relative to the script).
    #[serde(default)]
    pub audio: Vec<PathBuf>,
    /// Videos attached (relative to the script): their keyframes follow the images.
    #[serde(default)]
    pub videos: Vec<PathBuf>,
    /// What the answer must satisfy.
    #[serde(default)]
    pub expect: Expect,
}

/// Expectations on one answer; every given field must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Substrings the answer's text must contain.
    #[serde(default)]
    pub text_contains: Vec<String>,
    /// A regular expression the answer's text must match.
    pub text_matches: Option<String>,
    /// Exact number of images in the answer.
    pub images: Option<usize>,
    /// Whether the answer holds speech.
    pub speech: Option<bool>,
    /// Why generation must have stopped.
    pub finish_reason: Option<FinishReason>,
    /// Most generated tokens.
    pub max_new_tokens: Option<usize>,
    /// No malformed-block warnings.
    pub no_warnings: Option<bool>,
    /// At least this many images in the answer.
    pub min_images: Option<usize>,
    /// Files the turn must have written, relative to the output folder (creator modes
    /// export into `turnN/`: `guide.html`, `guide.md`, `before.png`, `after.png`, ...).
    #[serde(default)]
    pub files: Vec<String>,
}

/// One checked expectation.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was expected.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What was found.
    pub found: String,
}

/// What one turn produced.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    /// The user's message.
    pub user: String,
    /// Inputs attached.
    pub images: Vec<PathBuf>,
    /// Audio attached.
    pub audio: Vec<PathBuf>,
    /// Videos attached, and their keyframe files.
    pub videos: Vec<serde_json::Value>,
    /// The answer, in order.
    pub segments: Vec<OutputSegment>,
    /// Files written for the answer's media (speech as WAV), relative to the output folder.
    pub files: Vec<String>,
    /// The answer's text (text segments joined).
    pub text: String,
    /// Malformed-block warnings.
    pub warnings: Vec<String>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Timings.
    pub timings: Timings,
    /// Expectation results.
    pub checks: Vec<Check>,
}

/// The whole replay.
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    /// Script name.
    pub name: String,
    /// Script description.
    pub description: String,
    /// Model folder used.
    pub model: PathBuf,
    /// Mode.
    pub mode: ChatMode,
    /// Turns.
    pub turns: Vec<TurnRecord>,
    /// Number of failed expectations.
    pub failed: usize,
    /// Seconds to load the model.
    pub load_s: f64,
}

/// Reads and checks a script file.
pub fn load_script(path: &Path) -> Result<Script> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the script {}", path.display()))?;
    let script: Script = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a valid replay script", path.display()))?;
    if script.turns.is_empty() {
        bail!("{} has no turns", path.display());
    }
    Ok(script)
}

/// Runs `mio replay`.
pub fn run(script_path: &Path, out: &Path, model: Option<&Path>, json: bool) -> Result<()> {
    let script = load_script(script_path)?;
    let base = script_path.parent().unwrap_or(Path::new("."));
    let model = match (model, &script.model) {
        (Some(m), _) => m.to_path_buf(),
        (None, Some(m)) => base.join(m),
        (None, None) => bail!("{} names no model; pass --model DIR", script_path.display()),
    };
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let transcript = replay(&script, base, &model, out)?;
    let body = serde_json::to_string_pretty(&transcript)?;
    write_atomic(&out.join("transcript.json"), body.as_bytes())?;
    write_atomic(
        &out.join("report.html"),
        crate::report::html(&transcript, base, out).as_bytes(),
    )?;
    if json {
        println!("{body}");
    } else {
        for (i, t) in transcript.turns.iter().enumerate() {
            let ok = t.checks.iter().filter(|c| c.passed).count();
            eprintln!(
                "turn {}: {} / {} expectations hold, {} tokens",
                i + 1,
                ok,
                t.checks.len(),
                t.timings.new_tokens
            );
        }
        eprintln!("report: {}", out.join("report.html").display());
    }
    if transcript.failed > 0 {
        bail!(
            "{} expectation(s) failed in {} (see {})",
            transcript.failed,
            script_path.display(),
            out.join("report.html").display()
        );
    }
    Ok(())
}

fn replay(script: &Script, base: &Path, model: &Path, out: &Path) -> Result<Transcript> {
    let worker = EngineWorker::spawn()?;
    let start = std::time::Instant::now();
    let opts = LoadOptions {
        model_dir: model.to_path_buf(),
        precision: Default::default(),
        lm_file: None,
        skip_lm: false,
        cache_dir: crate::cli::default_cache_dir(),
        ..Default::default()
    };
    worker.load((opts, DeviceKind::Cpu))?;
    let load_s = start.elapsed().as_secs_f64();
    let mut history: Vec<Message> = vec![];
    let mut turns = vec![];
    let mut all_audio: Vec<PathBuf> = vec![];
    let mut all_images: Vec<PathBuf> = vec![];
    for (i, turn) in script.turns.iter().enumerate() {
        let user = place_media(&turn.user, "image", all_images.len(), turn.images.len());
        let user = place_media(&user, "speech", all_audio.len(), turn.audio.len());
        all_audio.extend(turn.audio.iter().map(|p| base.join(p)));
        all_images.extend(turn.images.iter().map(|p| base.join(p)));
        let videos: Vec<PathBuf> = turn.videos.iter().map(|p| base.join(p)).collect();
        let prefix = format!("turn{}_", i + 1);
        let opts = crate::video::KeyframeOptions::default();
        let (frames, counts, video_info) =
            crate::video_cmd::frames_into(&videos, &opts, out, &prefix)?;
        let user = crate::video::place_video_frames(&user, all_images.len(), &counts);
        all_images.extend(frames);
        history.push(Message::new(Role::User, user));
        let conversation = Conversation {
            messages: history.clone(),
            images: all_images.clone(),
            speech: all_audio.clone(),
        };
        let media = load_inputs(&conversation, Path::new("."))?;
        let request = Request::Chat {
            conversation,
            mode: script.mode,
            params: script.params.clone(),
            media,
        };
        let response = worker.run(request)?.wait(|_| {})?;
        let Response::Chat {
            answer_text,
            segments,
            warnings,
            finish_reason,
            timings,
            ..
        } = response
        else {
            bail!("unexpected engine answer");
        };
        history.push(Message::new(Role::Assistant, answer_text));
        let text = text_of(&segments);
        let saved = save_outputs(&segments, out, &format!("turn{}_", i + 1))?;
        let mut files: Vec<String> = saved
            .iter()
            .filter_map(|v| v["file"].as_str().map(str::to_string))
            .collect();
        files.extend(export(script, turn, base, &segments, out, i + 1)?);
        let mut record = TurnRecord {
            user: turn.user.clone(),
            images: turn.images.clone(),
            audio: turn.audio.clone(),
            videos: video_info,
            segments,
            files,
            text,
            warnings,
            finish_reason,
            timings,
            checks: vec![],
        };
        record.checks = check(&turn.expect, &record, out)?;
        turns.push(record);
    }
    let failed = turns
        .iter()
        .flat_map(|t| &t.checks)
        .filter(|c| !c.passed)
        .count();
    Ok(Transcript {
        name: script.name.clone(),
        description: script.description.clone(),
        model: model.to_path_buf(),
        mode: script.mode,
        turns,
        failed,
        load_s,
    })
}

fn text_of(segments: &[OutputSegment]) -> String {
    segments
        .iter()
        .filter_map(|s| match s {
            OutputSegment::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The creator-mode files of turn `n` (guide page, edit pair, video frames) in `out/turnN/`;
/// their paths relative to `out`.
fn export(
    script: &Script,
    turn: &Turn,
    base: &Path,
    segments: &[OutputSegment],
    out: &Path,
    n: usize,
) -> Result<Vec<String>> {
    let sub = format!("turn{n}");
    let dir = out.join(&sub);
    if !matches!(
        script.mode,
        ChatMode::Guide | ChatMode::Edit | ChatMode::Video
    ) {
        return Ok(vec![]);
    }
    std::fs::create_dir_all(&dir)?;
    let original = turn.images.first().map(|p| base.join(p));
    let value =
        crate::creator::export(script.mode, segments, &turn.user, original.as_deref(), &dir)?;
    let mut names = vec![];
    for key in ["html", "markdown", "before", "after", "animation"] {
        if let Some(f) = value[key].as_str() {
            names.push(format!("{sub}/{f}"));
        }
    }
    for list in ["images", "frames"] {
        for f in value[list].as_array().into_iter().flatten() {
            names.extend(f.as_str().map(|f| format!("{sub}/{f}")));
        }
    }
    Ok(names)
}

fn check(e: &Expect, t: &TurnRecord, dir: &Path) -> Result<Vec<Check>> {
    let mut out = vec![];
    let mut add = |what: String, passed: bool, found: String| {
        out.push(Check {
            what,
            passed,
            found,
        })
    };
    for needle in &e.text_contains {
        add(
            format!("text contains {needle:?}"),
            t.text.contains(needle.as_str()),
            t.text.clone(),
        );
    }
    if let Some(pattern) = &e.text_matches {
        let re = regex::Regex::new(pattern)
            .with_context(|| format!("bad text_matches pattern {pattern:?}"))?;
        add(
            format!("text matches /{pattern}/"),
            re.is_match(&t.text),
            t.text.clone(),
        );
    }
    let count = |image: bool| {
        t.segments
            .iter()
            .filter(|s| {
                matches!(s, OutputSegment::Image { .. }) == image
                    && !matches!(s, OutputSegment::Text { .. })
            })
            .count()
    };
    if let Some(n) = e.images {
        add(
            format!("{n} image(s)"),
            count(true) == n,
            count(true).to_string(),
        );
    }
    if let Some(n) = e.min_images {
        add(
            format!("at least {n} image(s)"),
            count(true) >= n,
            count(true).to_string(),
        );
    }
    for f in &e.files {
        let path = dir.join(f);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        add(
            format!("file {f} written"),
            size > 0,
            format!("{size} bytes"),
        );
    }
    if let Some(want) = e.speech {
        let has = count(false) > 0;
        add(
            format!("speech present: {want}"),
            has == want,
            has.to_string(),
        );
    }
    if let Some(reason) = e.finish_reason {
        add(
            format!("finish reason {reason:?}"),
            t.finish_reason == reason,
            format!("{:?}", t.finish_reason),
        );
    }
    if let Some(max) = e.max_new_tokens {
        add(
            format!("at most {max} new tokens"),
            t.timings.new_tokens <= max,
            t.timings.new_tokens.to_string(),
        );
    }
    if e.no_warnings == Some(true) {
        add(
            "no malformed blocks".into(),
            t.warnings.is_empty(),
            t.warnings.join("; "),
        );
    }
    Ok(out)
}
