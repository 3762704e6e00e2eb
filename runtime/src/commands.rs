//! What each `mio` subcommand does.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mio_models::engine::{
    CodecLoading, Conversation, EngineInfo, GenerationParams, LoadOptions, Precision, Request,
    Response, TemplateMode,
};
use serde_json::json;

use crate::cli::TemplateModeArg;
use crate::cli::{BenchCommand, Cli, Command, Common, DecodeArgs, PrecisionArg};
use crate::engine_backend::EngineWorker;
use crate::{bench, info};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { common } => info::run(&common),
        Command::Tokenize { common, text } => {
            let ids = expect_ids(ask(&common, true, Request::Tokenize { text })?)?;
            print(&common, json!({ "ids": ids }), || join(&ids))
        }
        Command::Detokenize { common, ids } => {
            let text = match ask(&common, true, Request::Detokenize { ids })? {
                Response::Text { text } => text,
                other => bail!("unexpected engine answer {other:?}"),
            };
            print(&common, json!({ "text": text }), || text.clone())
        }
        Command::Template {
            common,
            conversation,
            mode,
        } => template(&common, &conversation, mode),
        Command::Generate {
            common,
            ids,
            prompt,
            decode,
        } => generate(&common, ids, prompt, &decode),
        Command::Chat {
            common,
            mode,
            out,
            image,
            audio,
            video,
            frames,
            camera,
            decode,
            text,
        } => {
            let media = crate::chat::ChatMedia {
                images: &image,
                audio: &audio,
                videos: &video,
                frames: &frames,
                camera: &camera,
            };
            crate::chat::run(&common, mode, &out, &media, &decode, text)
        }
        Command::Video { what } => crate::video_cmd::run(what),
        Command::Camera { what } => crate::video_cmd::camera(what),
        Command::Image { what } => crate::chat::image(what),
        Command::Devices => devices(),
        Command::Speech { what } => crate::chat::speech(what),
        Command::Convert {
            model,
            out,
            ty,
            force,
            json,
        } => crate::convert::run(&model, &out, &ty, force, json),
        Command::Import {
            release,
            out,
            quant,
            checksums,
            write_limit,
            json,
        } => crate::import::run_cli(release, out, quant, checksums, write_limit, json),
        Command::Download {
            repo,
            revision,
            out,
            all_files,
            endpoint,
            json,
        } => crate::hub::cli::run(
            crate::hub::DownloadOptions {
                repo,
                revision,
                out,
                all_files,
            },
            endpoint,
            json,
        ),
        Command::Replay {
            script,
            out,
            model,
            json,
        } => crate::replay::run(&script, &out, model.as_deref(), json),
        Command::Serve { common, serve } => crate::serve::run(
            &common,
            &crate::serve::ServeOptions {
                host: serve.host,
                port: serve.port,
                api_key: serve.api_key,
                queue: serve.queue,
                max_body_mb: serve.max_body_mb,
                cors_origin: serve.cors_origin,
                max_tokens: serve.max_tokens,
            },
        ),
        Command::Bench {
            what:
                BenchCommand::Lm {
                    common,
                    prompt_tokens,
                    decode_tokens,
                    repeat,
                    compare,
                    llama_bench,
                },
        } => {
            if compare {
                bench::compare(&bench::CompareArgs {
                    common: &common,
                    prompt_tokens,
                    decode_tokens,
                    repeat,
                    llama_bench,
                })
            } else {
                bench::lm(&common, prompt_tokens, decode_tokens, repeat)
            }
        }
        Command::Bench {
            what:
                BenchCommand::ImageDecode {
                    common,
                    side,
                    steps,
                    repeat,
                    warmup,
                },
        } => {
            bench::ensure_threads(side.threads)?;
            let runs = bench::DecodeRuns {
                steps,
                repeat,
                warmup,
            };
            bench::image_decode(&common, &runs, side.pytorch.as_deref())
        }
        Command::Bench {
            what:
                BenchCommand::Speech {
                    common,
                    side,
                    seconds,
                    repeat,
                },
        } => {
            bench::ensure_threads(side.threads)?;
            bench::speech(&common, seconds, repeat, side.pytorch.as_deref())
        }
        Command::Bench {
            what:
                BenchCommand::ImageEncode {
                    common,
                    side,
                    images,
                    batch,
                    repeat,
                },
        } => {
            bench::ensure_threads(side.threads)?;
            bench::image_encode(&common, &images, batch, repeat, side.pytorch.as_deref())
        }
    }
}

fn devices() -> Result<()> {
    let show = |what: &str, list: Result<Vec<String>>| match list {
        Ok(names) if names.is_empty() => println!("{what}: none"),
        Ok(names) => names.iter().for_each(|n| println!("{what}: {n}")),
        Err(e) => println!("{what}: unavailable ({})", one_sentence(&e)),
    };
    show("input", crate::audio::list_input_devices());
    show("output", crate::audio::list_output_devices());
    Ok(())
}

/// The error as one line: the chain of causes joined with ": ".
///
/// candle embeds a backtrace in its error text when `RUST_BACKTRACE` is set; the user gets
/// the sentence, not the frames.
pub fn one_sentence(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    let mut kept = vec![];
    for line in full.lines() {
        let t = line.trim_start();
        let frame = t
            .split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if frame || t.starts_with("at ") || t == "stack backtrace:" {
            break;
        }
        kept.push(line.trim());
    }
    kept.join(" ").trim().to_string()
}

/// Starts the worker and loads the model of `common` (media codecs on first use).
pub(crate) fn start(common: &Common, skip_lm: bool) -> Result<(EngineWorker, EngineInfo)> {
    start_with(common, skip_lm, CodecLoading::OnFirstUse)
}

/// [`start`], the media codecs loaded as `codecs` says.
pub(crate) fn start_with(
    common: &Common,
    skip_lm: bool,
    codecs: CodecLoading,
) -> Result<(EngineWorker, EngineInfo)> {
    let worker = EngineWorker::spawn()?;
    let precision = match common.precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F16 => Precision::F16,
        PrecisionArg::Bf16 => Precision::Bf16,
    };
    let opts = LoadOptions {
        model_dir: common.model.clone(),
        precision,
        lm_file: common.lm.clone(),
        skip_lm,
        backend: common.backend.into(),
        gpu_layers: common.gpu_layers,
        cache_dir: common.cache_dir(),
        remote_lm: common.remote_lm(),
        codecs,
    };
    let info = worker.load((opts, common.device))?;
    for note in &info.notes {
        eprintln!("note: {note}");
    }
    Ok((worker, info))
}

fn ask(common: &Common, skip_lm: bool, request: Request) -> Result<Response> {
    start(common, skip_lm)?.0.run(request)?.wait(|_| {})
}

fn expect_ids(r: Response) -> Result<Vec<u32>> {
    match r {
        Response::Ids { ids } => Ok(ids),
        other => bail!("unexpected engine answer {other:?}"),
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Prints `value` as JSON with `--json`, else the human form.
pub(crate) fn print(
    common: &Common,
    value: serde_json::Value,
    human: impl FnOnce() -> String,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if common.json {
        writeln!(out, "{}", serde_json::to_string(&value)?)?;
    } else {
        writeln!(out, "{}", human())?;
    }
    Ok(())
}

fn template(common: &Common, file: &Path, mode: TemplateModeArg) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the conversation file {}", file.display()))?;
    let mut conversation: Conversation = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a conversation (expected {{\"messages\": [...]}})",
            file.display()
        )
    })?;
    let mode = match mode {
        TemplateModeArg::Std => TemplateMode::Std,
        TemplateModeArg::Voice => TemplateMode::Voice,
        TemplateModeArg::Custom => TemplateMode::Custom,
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let mut media = crate::media::load_inputs(&conversation, base)?;
    crate::video_cmd::conversation_videos(&text, base, &mut conversation, &mut media)?;
    let request = Request::Template {
        conversation,
        mode,
        media,
    };
    match ask(common, true, request)? {
        Response::Template { text, ids } => {
            print(common, json!({ "text": text, "ids": ids }), || text.clone())
        }
        other => bail!("unexpected engine answer {other:?}"),
    }
}

/// Steps between latent previews: `every` (default 5) when a previews folder is given, else
/// none.
pub(crate) fn preview_every(dir: Option<&Path>, every: Option<usize>) -> Option<usize> {
    dir.map(|_| every.unwrap_or(5).max(1))
}

pub(crate) fn params(d: &DecodeArgs) -> GenerationParams {
    GenerationParams {
        max_new_tokens: d.max_new_tokens,
        num_beams: d.num_beams,
        do_sample: None,
        temperature: d.temperature,
        top_p: d.top_p,
        top_k: d.top_k,
        repetition_penalty: d.repetition_penalty,
        length_penalty: d.length_penalty,
        seed: d.seed,
        eos_ids: d.eos_id.map(|e| vec![e]),
        constraints: d.no_constraints.then_some(false),
        image_steps: d.image_steps,
        preview_every: preview_every(d.previews.as_deref(), d.preview_every),
        fit_context: None,
    }
}

fn generate(
    common: &Common,
    ids: Option<Vec<u32>>,
    prompt: Option<String>,
    d: &DecodeArgs,
) -> Result<()> {
    let (worker, _) = start(common, false)?;
    let ids = match (ids, prompt) {
        (Some(ids), _) => ids,
        (None, Some(text)) => {
            let text = format!("<|startoftext|>{text}");
            expect_ids(worker.run(Request::Tokenize { text })?.wait(|_| {})?)?
        }
        (None, None) => bail!("give the prompt with --ids or --prompt"),
    };
    if ids.is_empty() {
        bail!("the prompt is empty");
    }
    let request = Request::Generate {
        ids,
        params: params(d),
    };
    match worker.run(request)?.wait(|_| {})? {
        Response::Generated { new_ids, .. } => {
            print(common, json!({ "new_ids": new_ids }), || join(&new_ids))
        }
        other => bail!("unexpected engine answer {other:?}"),
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash never leaves
/// a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::one_sentence;

    #[test]
    fn errors_are_one_line_without_backtrace_frames() {
        let e = anyhow::anyhow!("unexpected rank, expected: 4, got: 2\n   0: candle_core::error::Error::bt\n             at /x.rs:1:2\n   1: more")
            .context("cannot decode");
        assert_eq!(
            one_sentence(&e),
            "cannot decode: unexpected rank, expected: 4, got: 2"
        );
        let e = anyhow::anyhow!("first line\nsecond line");
        assert_eq!(one_sentence(&e), "first line second line");
    }
}
