//! [`Engine`]: owns the tokenizer and the LM, answers [`Request`]s.
//!
//! Image and speech encoders are not part of this build yet: `<image_placeholder_N>` and
//! `<speech_placeholder_N>` stay as text in prompts, and image/speech blocks in the output
//! come back as code segments (the decoders attach to the same segments later).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device};
use serde::Serialize;

use super::media::{Codecs, Needs, Render, SpeechPreview};
use super::timed::Timed;
use super::types::*;
use super::{creator, history};
use crate::generation::{
    generate, CausalLm, Controls, FinishReason as GenFinish, GenerationConfig, GenerationOutput,
    IncrementalDetokenizer, Task, TokenEvent,
};
use crate::image_decoder::DecodeOptions;
use crate::lm::{Config, GenerationConfigFile, LlamaForCausalLm, LmSession};
use crate::text::{DetokEvent, Detokenized, MioVocab, Segment, TextTokenizer};
use crate::{Error, Result};

/// What a loaded engine reports (the ready handshake of the worker).
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// Total vocabulary size.
    pub vocab_size: usize,
    /// Text (sentencepiece) vocabulary size.
    pub text_vocab_size: usize,
    /// LM layers (0 when only the tokenizer is loaded).
    pub layers: usize,
    /// LM hidden size.
    pub hidden_size: usize,
    /// Longest prompt + answer in tokens.
    pub context_length: usize,
    /// Where the LM weights came from.
    pub lm_source: String,
    /// The device, in words.
    pub device: String,
    /// Which implementation runs the LM (`candle` or `llamacpp`).
    pub backend: String,
    /// Things the user should know about the load (e.g. a GPU fallback), one sentence each.
    pub notes: Vec<String>,
}

/// An LM implemented outside this crate (the runtime's llama.cpp backend), with the config
/// read from its weights.
pub struct ExternalLm {
    /// The model with its own cache.
    pub lm: Box<dyn CausalLm>,
    /// Its architecture.
    pub config: Config,
    /// Where the weights came from, in words.
    pub source: String,
    /// Which implementation it is (`llamacpp`).
    pub backend: String,
    /// Load notes for the user.
    pub notes: Vec<String>,
}

/// The loaded model: tokenizer, LM and its KV cache.
pub struct Engine {
    tokenizer: TextTokenizer,
    lm: Option<Box<dyn CausalLm>>,
    lm_config: Option<Config>,
    codecs: Codecs,
    defaults: GenerationConfigFile,
    info: EngineInfo,
}

/// The codecs a request needs before it runs (those of an answer's speech and pictures
/// are prepared as they appear).
fn needs(request: &Request) -> Needs {
    let media = |m: &MediaInputs| Needs {
        speech: !m.speech.is_empty(),
        image_encoder: !m.images.is_empty(),
        image_decoder: false,
    };
    match request {
        Request::SpeechEncode { .. } | Request::SpeechDecode { .. } => Needs {
            speech: true,
            ..Needs::default()
        },
        Request::ImageEncode { .. } => Needs {
            image_encoder: true,
            ..Needs::default()
        },
        Request::ImageDecode { .. } => Needs {
            image_decoder: true,
            ..Needs::default()
        },
        Request::Template { media: m, .. } | Request::Chat { media: m, .. } => media(m),
        &Request::Prepare {
            speech,
            image_encoder,
            image_decoder,
        } => Needs {
            speech,
            image_encoder,
            image_decoder,
        },
        Request::Tokenize { .. } | Request::Detokenize { .. } | Request::Generate { .. } => {
            Needs::default()
        }
    }
}

fn dtype_of(p: Precision) -> DType {
    match p {
        Precision::F32 => DType::F32,
        Precision::F16 => DType::F16,
        Precision::Bf16 => DType::BF16,
    }
}

impl Engine {
    /// Loads the tokenizer, the media codecs and (unless `skip_lm`) the LM of
    /// `opts.model_dir` on `dev` with the candle backend.
    pub fn load(opts: &LoadOptions, dev: &Device) -> Result<Self> {
        if opts.skip_lm {
            return Self::assemble(opts, dev, None);
        }
        if opts.backend != LmBackend::Candle {
            return Err(Error::Unsupported(format!(
                "the {} LM backend is provided by the runtime, not by Engine::load",
                opts.backend.name()
            )));
        }
        let dir = opts.model_dir.as_path();
        if !dir.is_dir() {
            return Err(Error::MissingFile(dir.to_path_buf()));
        }
        let (model, source) = load_lm(dir, opts, dev)?;
        let config = model.config().clone();
        let lm = ExternalLm {
            lm: Box::new(LmSession::new(Arc::new(model))),
            config,
            source,
            backend: LmBackend::Candle.name().to_string(),
            notes: vec![],
        };
        Self::assemble(opts, dev, Some(lm))
    }

    /// Loads the tokenizer and media codecs of `opts.model_dir` on `dev` around an LM
    /// loaded elsewhere.
    pub fn load_with_lm(opts: &LoadOptions, dev: &Device, lm: ExternalLm) -> Result<Self> {
        Self::assemble(opts, dev, Some(lm))
    }

    fn assemble(opts: &LoadOptions, dev: &Device, lm: Option<ExternalLm>) -> Result<Self> {
        let dir = opts.model_dir.as_path();
        if !dir.is_dir() {
            return Err(Error::MissingFile(dir.to_path_buf()));
        }
        let tokenizer = TextTokenizer::load(dir)?;
        let defaults = GenerationConfigFile::from_dir(dir)?;
        let codecs = Codecs::load(dir, dev, opts.cache_dir.as_deref(), opts.codecs)?;
        let vocab = tokenizer.vocab();
        if let Some(lm) = &lm {
            check_vocab(&lm.config, vocab)?;
        }
        let cfg = lm.as_ref().map(|l| &l.config);
        let info = EngineInfo {
            vocab_size: vocab.vocab_size as usize,
            text_vocab_size: vocab.text_vocab_size as usize,
            layers: cfg.map_or(0, |c| c.num_hidden_layers),
            hidden_size: cfg.map_or(0, |c| c.hidden_size),
            context_length: lm.as_ref().map_or(0, |l| {
                l.lm.max_context().min(l.config.max_position_embeddings)
            }),
            lm_source: lm
                .as_ref()
                .map_or_else(|| "not loaded".to_string(), |l| l.source.clone()),
            device: format!("{dev:?}"),
            backend: lm
                .as_ref()
                .map_or_else(|| "none".to_string(), |l| l.backend.clone()),
            notes: lm.as_ref().map(|l| l.notes.clone()).unwrap_or_default(),
        };
        let (lm, lm_config) = match lm {
            Some(l) => (Some(l.lm), Some(l.config)),
            None => (None, None),
        };
        Ok(Self {
            tokenizer,
            lm,
            lm_config,
            codecs,
            defaults,
            info,
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Ids of MIO's special and media tokens.
    pub fn vocab(&self) -> &MioVocab {
        self.tokenizer.vocab()
    }

    /// Answers one request, streaming [`Event`]s; `cancel` is checked between decode steps.
    pub fn run(
        &mut self,
        request: Request,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Response> {
        self.codecs.prepare(needs(&request), emit)?;
        match request {
            Request::Tokenize { text } => Ok(Response::Ids {
                ids: self.tokenizer.encode(&text)?,
            }),
            Request::Detokenize { ids } => Ok(Response::Text {
                text: self.tokenizer.decode(&ids)?,
            }),
            Request::Template {
                conversation,
                mode,
                media,
            } => {
                let (text, ids) = self.template(&conversation, mode, &media)?;
                Ok(Response::Template { text, ids })
            }
            Request::SpeechEncode { audio, timbre } => {
                let codes = self.codecs.encode_speech(&audio)?;
                let tokens = crate::speech_codec::speech_string(self.vocab(), &codes, timbre)?;
                Ok(Response::SpeechCodes { codes, tokens })
            }
            Request::ImageEncode { images } => {
                let codes = images
                    .iter()
                    .map(|img| self.codecs.encode_image(img))
                    .collect::<Result<Vec<_>>>()?;
                let tokens = codes
                    .iter()
                    .map(|c| crate::text::image_block(self.vocab(), c))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Response::ImageCodes { codes, tokens })
            }
            Request::ImageDecode {
                codes,
                steps,
                guidance,
                seed,
                latents,
                noise,
                preview_every,
            } => {
                let render = Render {
                    opts: DecodeOptions {
                        steps,
                        guidance,
                        seed,
                        preview_every,
                    },
                    cancel,
                };
                let image = match (latents, noise) {
                    (None, None) => self.codecs.decode_image(&codes, &render, emit)?,
                    (Some(l), Some(n)) => self
                        .codecs
                        .decode_image_pinned(&codes, &l, &n, &render, emit)?,
                    _ => {
                        return Err(Error::InvalidArgument(
                            "pin both the latents and the noise, or neither".into(),
                        ))
                    }
                };
                Ok(Response::Image(image))
            }
            Request::SpeechDecode { tokens } => {
                let samples = self.codecs.decode_speech_string(&tokens)?;
                Ok(Response::Audio {
                    samples,
                    sample_rate: SPEECH_SAMPLE_RATE,
                })
            }
            Request::Generate { ids, params } => {
                let cfg = self.generation_config(&params, None)?;
                let (out, timings, _) = self.generate(&ids, &cfg, cancel, emit, None)?;
                let new_ids = out.new_tokens.into_iter().next().unwrap_or_default();
                let finish_reason = finish(out.finish_reasons.first().copied());
                Ok(Response::Generated {
                    new_ids,
                    finish_reason,
                    timings,
                })
            }
            Request::Chat {
                conversation,
                mode,
                params,
                media,
            } => self.chat(&conversation, mode, &params, &media, cancel, emit),
            // Loaded by `prepare` above.
            Request::Prepare { .. } => Ok(Response::Prepared),
        }
    }

    /// The resolved prompt string and its ids (`<|startoftext|>` first), as the reference's
    /// `apply_chat_template` + `__call__`: images and speech are encoded (speech with timbre
    /// in voice mode, as the reference's `add_timbre`); placeholders without media stay as
    /// text.
    fn template(
        &self,
        conversation: &Conversation,
        mode: TemplateMode,
        media: &MediaInputs,
    ) -> Result<(String, Vec<u32>)> {
        let (images, speech) = self.media_strings(mode, media)?;
        self.template_with(conversation, mode, &images, &speech)
    }

    /// The token strings of `media` (speech with timbre in voice mode).
    fn media_strings(
        &self,
        mode: TemplateMode,
        media: &MediaInputs,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let timbre = mode == TemplateMode::Voice;
        let speech = self
            .codecs
            .speech_strings(self.vocab(), &media.speech, timbre)?;
        let images = self.codecs.image_strings(self.vocab(), &media.images)?;
        Ok((images, speech))
    }

    /// [`Self::template`] with the media already encoded.
    fn template_with(
        &self,
        conversation: &Conversation,
        mode: TemplateMode,
        images: &[String],
        speech: &[String],
    ) -> Result<(String, Vec<u32>)> {
        let tpl = self
            .tokenizer
            .apply_chat_template(&conversation.messages, mode, true)?;
        let text = self.tokenizer.resolve_prompt(&tpl, images, speech, true);
        let ids = self.tokenizer.encode(&text)?;
        Ok((text, ids))
    }

    /// The chat prompt's ids; with `fit`, the oldest turns are left out until the prompt and
    /// `max_new` tokens fit the context. Returns the ids and how many messages were left out.
    fn fitted_prompt(
        &self,
        conversation: &Conversation,
        mode: ChatMode,
        plan: &creator::ModePlan,
        media: &MediaInputs,
        max_new: usize,
        fit: bool,
    ) -> Result<(Vec<u32>, usize)> {
        let (template, primed) = (plan.template, &plan.primed);
        let (mut images, mut speech) = self.media_strings(template, media)?;
        let mut current = std::borrow::Cow::Borrowed(conversation);
        let mut dropped = 0;
        let max = self.info.context_length;
        loop {
            let rewritten = creator::rewrite(&current, mode)?;
            let (_, mut ids) = self.template_with(&rewritten, template, &images, &speech)?;
            ids.extend(primed);
            if !fit || max == 0 || ids.len() + max_new <= max {
                return Ok((ids, dropped));
            }
            let Some(s) = history::drop_oldest_turn(&current) else {
                return Ok((ids, dropped));
            };
            images = s.images.iter().map(|&i| images[i].clone()).collect();
            speech = s.speech.iter().map(|&i| speech[i].clone()).collect();
            dropped += s.dropped;
            current = std::borrow::Cow::Owned(s.conversation);
        }
    }

    fn chat(
        &mut self,
        conversation: &Conversation,
        mode: ChatMode,
        params: &GenerationParams,
        media: &MediaInputs,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Response> {
        if conversation.messages.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        super::media::check_media(conversation, media)?;
        // Creator modes wrap the message in their prompt; voice, image, video and edit prime
        // the answer with `<spch>` / `<image>` (the constraints then keep the block well
        // formed).
        let plan = creator::plan(mode, self.vocab());
        let cfg = self.generation_config(params, Some(plan.task))?;
        creator::check_budget(&plan.primed, self.vocab(), cfg.max_new_tokens)?;
        let (prompt_ids, left_out) = self.fitted_prompt(
            conversation,
            mode,
            &plan,
            media,
            cfg.max_new_tokens,
            params.fit_context.unwrap_or(false),
        )?;
        let primed = plan.primed;
        let guide =
            std::cell::RefCell::new((mode == ChatMode::Guide).then(creator::GuideStream::default));
        let mut emit_all = |e: Event| {
            let step = guide.borrow_mut().as_mut().and_then(|g| g.observe(&e));
            emit(e);
            if let Some(step) = step {
                emit(Event::GuideStep(step));
            }
        };
        let emit: &mut dyn FnMut(Event) = &mut emit_all;
        let render = Render {
            opts: DecodeOptions {
                steps: params.image_steps.unwrap_or(20),
                guidance: 10.0,
                seed: params.seed.unwrap_or(0),
                preview_every: params.preview_every.unwrap_or(0),
            },
            cancel,
        };
        let stream = Stream {
            answer_start: &primed,
            render: &render,
        };
        let (out, timings, early) = self.generate(&prompt_ids, &cfg, cancel, emit, Some(stream))?;
        let new_ids = out.new_tokens.into_iter().next().unwrap_or_default();
        let finish_reason = finish(out.finish_reasons.first().copied());
        let answer: Vec<u32> = primed
            .iter()
            .chain(strip_stop(&new_ids, &cfg))
            .copied()
            .collect();
        let answer_text = self.tokenizer.decode(&answer)?;
        let detok: Detokenized = self.tokenizer.detokenize(&answer, false)?;
        let segments = detok.segments.into_iter().map(OutputSegment::from);
        let segments = self.finish_segments(segments, early, &render, emit)?;
        let last_step = guide.borrow_mut().as_mut().and_then(|g| g.close(None));
        if let Some(step) = last_step {
            emit(Event::GuideStep(step));
        }
        let mut warnings: Vec<String> = detok.warnings.iter().map(|w| w.to_string()).collect();
        if left_out > 0 {
            warnings.insert(
                0,
                format!(
                    "the {left_out} oldest messages were left out: the whole conversation does not fit the model's context ({} tokens)",
                    self.info.context_length
                ),
            );
        }
        Ok(Response::Chat {
            answer_text,
            prompt_ids,
            new_ids,
            segments,
            warnings,
            finish_reason,
            timings,
        })
    }

    /// The answer's segments with their media rendered: blocks rendered and sent as they
    /// closed during streaming (`early`, same token stream, same order) are reused; the rest
    /// are rendered and sent now.
    fn finish_segments(
        &self,
        segments: impl Iterator<Item = OutputSegment>,
        early: Vec<OutputSegment>,
        render: &Render<'_>,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Vec<OutputSegment>> {
        let mut early = early.into_iter().peekable();
        let mut out = vec![];
        for mut seg in segments {
            if early.peek().is_some_and(|e| same_block(e, &seg)) {
                if let Some(done) = early.next() {
                    out.push(done);
                    continue;
                }
            }
            self.codecs
                .render(std::slice::from_mut(&mut seg), render, emit)?;
            emit(Event::Segment(seg.clone()));
            out.push(seg);
        }
        Ok(out)
    }

    /// Runs generation. With `answer_start` (the answer's tokens already at the end of the
    /// prompt, possibly none), streamed tokens carry their text and speech blocks get
    /// progressive previews; without it only ids are streamed.
    /// Media blocks that close while streaming are rendered (speech decoded, pictures drawn)
    /// and sent at once; they are returned in order.
    fn generate(
        &mut self,
        prompt: &[u32],
        cfg: &GenerationConfig,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event),
        stream: Option<Stream<'_>>,
    ) -> Result<(GenerationOutput, Timings, Vec<OutputSegment>)> {
        let stream_text = stream.is_some();
        let answer_start = stream.as_ref().map(|s| s.answer_start);
        let vocab = self.tokenizer.vocab().clone();
        let Some(session) = self.lm.as_mut() else {
            return Err(Error::InvalidArgument(
                "the LM is not loaded (text-only engine)".into(),
            ));
        };
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let tokenizer = &self.tokenizer;
        let codecs = &self.codecs;
        let mut incremental = IncrementalDetokenizer::new(tokenizer);
        let mut preview = SpeechPreview::default();
        for &t in answer_start.unwrap_or_default() {
            incremental.push(t)?;
            preview.push(&vocab, t);
        }
        let mut stream_error = None;
        let mut early: Vec<OutputSegment> = vec![];
        let mut on_token = |ev: &TokenEvent| {
            if stream_text {
                if let Some((index, content)) = preview.push(&vocab, ev.token) {
                    let speech = Needs {
                        speech: true,
                        ..Needs::default()
                    };
                    let decoded = codecs
                        .prepare(speech, emit)
                        .and_then(|()| codecs.decode_speech_layers(&[content]));
                    match decoded {
                        Ok(samples) => emit(Event::SpeechPreview {
                            index,
                            sample_rate: SPEECH_SAMPLE_RATE,
                            samples,
                        }),
                        Err(e) => {
                            stream_error = Some(e);
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            let mut text = String::new();
            if let (Some(st), false) = (stream.as_ref(), cfg.is_eos(ev.token)) {
                let events = match incremental.push(ev.token) {
                    Ok(events) => events,
                    Err(e) => {
                        stream_error = Some(e);
                        return ControlFlow::Break(());
                    }
                };
                let mut closed = vec![];
                for e in events {
                    match e {
                        DetokEvent::Text(t) => text.push_str(&t),
                        DetokEvent::BlockEnd(Some(seg)) => closed.push(OutputSegment::from(seg)),
                        _ => {}
                    }
                }
                emit(Event::Token {
                    id: ev.token,
                    text: std::mem::take(&mut text),
                });
                for mut seg in closed {
                    if let Err(e) = codecs.render(std::slice::from_mut(&mut seg), st.render, emit) {
                        stream_error = Some(e);
                        return ControlFlow::Break(());
                    }
                    emit(Event::Segment(seg.clone()));
                    early.push(seg);
                }
                return ControlFlow::Continue(());
            }
            emit(Event::Token { id: ev.token, text });
            ControlFlow::Continue(())
        };
        let mut timed = Timed::new(session.as_mut());
        let controls = Controls::none()
            .with_cancel(cancel)
            .with_callback(&mut on_token);
        let out = generate(&mut timed, &[prompt.to_vec()], cfg, Some(&vocab), controls)?;
        if let Some(e) = stream_error {
            return Err(e);
        }
        let (prefill_s, decode_s, _, _) = timed.totals();
        let new_tokens = out.new_tokens.first().map_or(0, Vec::len);
        let timings = Timings {
            prompt_tokens: prompt.len(),
            new_tokens,
            prefill_s,
            decode_s,
        };
        Ok((out, timings, early))
    }

    /// The generation config of a request: the task preset (or plain greedy), then the
    /// model's generation config for eos/pad, then the caller's overrides.
    fn generation_config(
        &self,
        p: &GenerationParams,
        task: Option<Task>,
    ) -> Result<GenerationConfig> {
        let vocab = self.tokenizer.vocab();
        let mut cfg = match task {
            Some(task) => GenerationConfig::preset(task, vocab),
            None => GenerationConfig {
                eos_token_ids: self
                    .defaults
                    .eos_token_id
                    .as_ref()
                    .map(|e| e.to_vec())
                    .unwrap_or_default(),
                pad_token_id: self.defaults.pad_token_id.unwrap_or(vocab.unk),
                constraints: true,
                ..GenerationConfig::default()
            },
        };
        let sampling = p.temperature.is_some() || p.top_p.is_some() || p.top_k.is_some();
        if let Some(n) = p.max_new_tokens {
            cfg.max_new_tokens = n;
        }
        if let Some(n) = p.num_beams {
            cfg.num_beams = n;
        }
        cfg.do_sample = p.do_sample.unwrap_or(cfg.do_sample || sampling);
        if let Some(t) = p.temperature {
            cfg.temperature = t as f32;
        }
        if let Some(t) = p.top_p {
            cfg.top_p = t;
        }
        if let Some(k) = p.top_k {
            cfg.top_k = k;
        }
        if let Some(r) = p.repetition_penalty {
            cfg.repetition_penalty = r as f32;
        }
        if let Some(l) = p.length_penalty {
            cfg.length_penalty = l;
        }
        if let Some(s) = p.seed {
            cfg.seed = s;
        }
        if let Some(eos) = &p.eos_ids {
            cfg.eos_token_ids = eos.clone();
        }
        if let Some(c) = p.constraints {
            cfg.constraints = c;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The LM config, when the LM is loaded.
    pub fn lm_config(&self) -> Option<&Config> {
        self.lm_config.as_ref()
    }
}

fn load_lm(dir: &Path, opts: &LoadOptions, dev: &Device) -> Result<(LlamaForCausalLm, String)> {
    // An explicit GGUF first, then the LM an imported folder's manifest names.
    let gguf = match &opts.lm_file {
        Some(file) => Some(file.clone()),
        None => crate::imported::imported_lm(dir)?,
    };
    match gguf {
        Some(gguf) => {
            let model = LlamaForCausalLm::load_gguf(&gguf, dev)?;
            Ok((model, gguf.display().to_string()))
        }
        None => {
            let model = LlamaForCausalLm::load(dir, dtype_of(opts.precision), dev)?;
            Ok((model, dir.display().to_string()))
        }
    }
}

/// What streaming needs: the answer's primed tokens and how to render media blocks.
struct Stream<'a> {
    answer_start: &'a [u32],
    render: &'a Render<'a>,
}

/// Whether a block rendered while streaming is the same block as `seg` of the final
/// detokenization (same kind and codes).
fn same_block(early: &OutputSegment, seg: &OutputSegment) -> bool {
    match (early, seg) {
        (OutputSegment::Image { codes: a, .. }, OutputSegment::Image { codes: b, .. }) => a == b,
        (
            OutputSegment::Speech {
                content: a,
                timbre: ta,
                ..
            },
            OutputSegment::Speech {
                content: b,
                timbre: tb,
                ..
            },
        ) => a == b && ta == tb,
        _ => false,
    }
}

fn check_vocab(config: &Config, vocab: &MioVocab) -> Result<()> {
    let lm = config.vocab_size;
    if lm != vocab.vocab_size as usize {
        return Err(Error::InvalidArgument(format!(
            "the LM has {lm} output tokens but the tokenizer has {}: they are not from the same release",
            vocab.vocab_size
        )));
    }
    Ok(())
}

/// The answer without its final end-of-turn token.
fn strip_stop<'a>(ids: &'a [u32], cfg: &GenerationConfig) -> &'a [u32] {
    match ids.split_last() {
        Some((last, rest)) if cfg.is_eos(*last) => rest,
        _ => ids,
    }
}

fn finish(reason: Option<GenFinish>) -> FinishReason {
    match reason {
        Some(GenFinish::Eos) => FinishReason::Eos,
        Some(GenFinish::Stop) => FinishReason::Stop,
        Some(GenFinish::Cancelled) => FinishReason::Cancelled,
        Some(GenFinish::Length) | None => FinishReason::Length,
    }
}

impl From<Segment> for OutputSegment {
    fn from(s: Segment) -> Self {
        match s {
            Segment::Text(text) => OutputSegment::Text { text },
            Segment::Image { codes } => OutputSegment::Image { codes, image: None },
            Segment::Speech { content, timbre } => OutputSegment::Speech {
                content,
                timbre,
                audio: None,
            },
        }
    }
}
