//! Plain-data requests, events and responses of the engine (serde, for the CLI's JSON and
//! the app's IPC).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::text::{ChatMode as TemplateMode, Conversation, Message, Role};

/// Element type to load float weights in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats (exact parity with the reference).
    #[default]
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
}

/// Which implementation runs the LM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LmBackend {
    /// Our candle port (safetensors, `.bin` or GGUF; every device candle supports).
    #[default]
    Candle,
    /// llama.cpp through the runtime (GGUF only; GPU offload by layers).
    #[serde(rename = "llamacpp")]
    LlamaCpp,
}

impl LmBackend {
    /// The name users type (`--backend`).
    pub fn name(self) -> &'static str {
        match self {
            LmBackend::Candle => "candle",
            LmBackend::LlamaCpp => "llamacpp",
        }
    }
}

/// How many LM layers llama.cpp puts on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GpuLayers {
    /// As many as fit into free GPU memory (none without a GPU).
    #[default]
    Auto,
    /// Exactly this many (0 = CPU only).
    Count(u32),
}

/// How to load a model.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LoadOptions {
    /// The release folder.
    pub model_dir: PathBuf,
    /// Float precision of the LM weights (ignored for quantized GGUF layers).
    #[serde(default)]
    pub precision: Precision,
    /// LM weights from this GGUF file instead of the folder's shards.
    #[serde(default)]
    pub lm_file: Option<PathBuf>,
    /// Skip the LM: tokenizer and media codecs only (tokenize, detokenize, template and
    /// media requests).
    #[serde(default)]
    pub skip_lm: bool,
    /// Which implementation runs the LM (llama.cpp needs a GGUF `lm_file`).
    #[serde(default)]
    pub backend: LmBackend,
    /// GPU offload of the llama.cpp backend (the candle backend follows the device).
    #[serde(default)]
    pub gpu_layers: GpuLayers,
    /// Folder for values derived once from the weights and kept across starts (unCLIP's
    /// empty-prompt embedding, keyed by the text encoder's sha256); `None` = recompute.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Run the LM on a server instead of in-process (`None`: in-process, with `backend`).
    /// When set, `backend`, `lm_file`, `precision` and `gpu_layers` are ignored for the LM;
    /// the tokenizer, image and speech codecs still load from `model_dir` and run locally.
    #[serde(default)]
    pub remote_lm: Option<RemoteLm>,
    /// When the media codecs load.
    #[serde(default)]
    pub codecs: CodecLoading,
}

/// When an engine loads its media codecs (SpeechTokenizer, SEED image encoder, unCLIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CodecLoading {
    /// Each the first time a request needs it: memory and start-up time only for what is
    /// used (the first image turn on a CPU then waits for the image encoder to load).
    #[default]
    OnFirstUse,
    /// All with the engine: a bad codec file fails the load.
    AtLoad,
}

/// The API a remote LM server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RemoteLmApi {
    /// llama.cpp's `llama-server` native API (`/completion`, `/tokenize`, `/props`).
    #[default]
    #[serde(rename = "llamacpp")]
    LlamaCpp,
    /// The OpenAI completions API with token-id prompts (`/v1/completions`: vLLM,
    /// llama-server, others that accept a list of ids as `prompt`).
    #[serde(rename = "openai")]
    OpenAi,
}

impl RemoteLmApi {
    /// The name users type (`--lm-api`).
    pub fn name(self) -> &'static str {
        match self {
            RemoteLmApi::LlamaCpp => "llamacpp",
            RemoteLmApi::OpenAi => "openai",
        }
    }
}

/// Where the LM runs when it runs on a server (`mio --lm-url URL --lm-api API`): the app's
/// "remote LM" setting. The server must serve MIO's LM (same vocabulary: checked on load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RemoteLm {
    /// Base URL of the server, e.g. `http://gpu-box:8080` (plain HTTP; no path needed:
    /// `/completion` or `/v1/completions` is appended; a trailing `/v1` is accepted).
    pub url: String,
    /// The API it speaks.
    #[serde(default)]
    pub api: RemoteLmApi,
    /// Sent as `Authorization: Bearer KEY` when set.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The model name to ask for (OpenAI API; `None`: the first one `/v1/models` lists).
    #[serde(default)]
    pub model: Option<String>,
}

/// What the assistant is asked to do in a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChatMode {
    /// Any modality, the model chooses (standard system prompt).
    #[default]
    Chat,
    /// Answers are speech (voice system prompt, speech with timbre).
    Voice,
    /// Draw a picture of the message (image-generation prompt and preset; the answer starts
    /// with `<image>`).
    Image,
    /// A video of the message: a sequence of pictures (frames), video-generation prompt and
    /// preset; the answer starts with `<image>`.
    Video,
    /// Visual guidelines: ordered steps, each text + picture, streamed as
    /// [`Event::GuideStep`] (interleaved-generation prompt and preset).
    Guide,
    /// Edit the message's one image as its text says (image tokens in, image tokens out);
    /// the answer starts with `<image>`.
    Edit,
}

/// One step of a guide answer: its text and the picture that closes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuideStep {
    /// Position in the guide (0-based).
    pub index: usize,
    /// What to do.
    pub text: String,
    /// The picture's 32 codes (empty for a last step without a picture).
    pub codes: Vec<u32>,
    /// The picture, when the decoder is loaded (not serialised).
    #[serde(skip)]
    pub image: Option<DecodedImage>,
}

/// Decoding parameters; `None` fields take the task preset or the model's generation config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GenerationParams {
    /// Most new tokens.
    pub max_new_tokens: Option<usize>,
    /// Beam count (1 = greedy or sampling).
    pub num_beams: Option<usize>,
    /// Sample instead of searching.
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    pub top_p: Option<f64>,
    /// Top-k sampling (0 = off).
    pub top_k: Option<usize>,
    /// Repetition penalty (1 = off).
    pub repetition_penalty: Option<f64>,
    /// Beam length penalty.
    pub length_penalty: Option<f64>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// End-of-generation ids (default: the model's generation config).
    pub eos_ids: Option<Vec<u32>>,
    /// Enforce well-formed image/speech blocks (default on).
    pub constraints: Option<bool>,
    /// Denoising steps for the pictures of the answer (default 20, as MIO).
    pub image_steps: Option<usize>,
    /// Send an [`Event::ImagePreview`] every this many denoising steps (default: none).
    #[serde(default)]
    pub preview_every: Option<usize>,
    /// Chat: when the conversation and the new tokens do not fit the context, leave out the
    /// oldest turns (and the media only they name) instead of failing, with a warning in the
    /// response (default off: an error, as the OpenAI API answers).
    #[serde(default)]
    pub fit_context: Option<bool>,
}

/// Decoded audio handed to the engine (the runtime decodes files and devices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AudioInput {
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second (resampled to the codec's rate by the engine).
    pub sample_rate: u32,
}

/// An image file's bytes handed to the engine (JPEG, PNG, WebP, GIF, BMP), with a name for
/// error messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageInput {
    /// Where it came from (shown in errors).
    pub name: String,
    /// The encoded file.
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// The media that fill a conversation's placeholders, in placeholder order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MediaInputs {
    /// Images for `<image_placeholder_N>`.
    #[serde(default)]
    pub images: Vec<ImageInput>,
    /// Audio for `<speech_placeholder_N>`.
    #[serde(default)]
    pub speech: Vec<AudioInput>,
}

/// A request to the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// Raw tokenization (no BOS, no template).
    Tokenize {
        /// The text.
        text: String,
    },
    /// Ids back to text.
    Detokenize {
        /// The ids.
        ids: Vec<u32>,
    },
    /// The chat-templated prompt of a conversation.
    Template {
        /// The conversation.
        conversation: Conversation,
        /// Which system prompt.
        mode: TemplateMode,
        /// Media for the placeholders (placeholders without media stay as text).
        #[serde(default)]
        media: MediaInputs,
    },
    /// SpeechTokenizer codes of a clip and its MIO speech string.
    SpeechEncode {
        /// The clip.
        audio: AudioInput,
        /// Include the three timbre layers (MIO's output format) in the string.
        timbre: bool,
    },
    /// SEED codes of images and their MIO image strings.
    ImageEncode {
        /// The images.
        images: Vec<ImageInput>,
    },
    /// The picture of 32 image codes (SEED decode head + unCLIP).
    ImageDecode {
        /// The codes.
        codes: Vec<u32>,
        /// Denoising steps (MIO: 20).
        steps: usize,
        /// Classifier-free guidance (MIO: 10).
        guidance: f64,
        /// Seed of the initial latents.
        seed: u64,
        /// Pinned initial latents: a safetensors file holding one tensor (1 × 4 × h × w),
        /// as the goldens pin them; with `noise`, the seed is not used.
        #[serde(default)]
        latents: Option<PathBuf>,
        /// Pinned noise of the image-embedding noising (1 × D), a one-tensor safetensors.
        #[serde(default)]
        noise: Option<PathBuf>,
        /// Send an [`Event::ImagePreview`] every this many steps (0 = none).
        #[serde(default)]
        preview_every: usize,
    },
    /// Audio of a MIO speech string (`<spch>…</spch>`, 4 layers or content only).
    SpeechDecode {
        /// The string.
        tokens: String,
    },
    /// Continue a prompt.
    Generate {
        /// Prompt ids (used as is).
        ids: Vec<u32>,
        /// Decoding parameters.
        params: GenerationParams,
    },
    /// One assistant turn of a conversation.
    Chat {
        /// The conversation so far, ending with the user's message.
        conversation: Conversation,
        /// The mode.
        mode: ChatMode,
        /// Decoding parameters over the mode's preset.
        params: GenerationParams,
        /// Media for the placeholders.
        #[serde(default)]
        media: MediaInputs,
    },
    /// Load media codecs now (each that the release has and that is not loaded yet, between
    /// two `Progress` events), e.g. while the user writes the message an attached picture
    /// belongs to, so that the turn does not wait for the load.
    Prepare {
        /// The SpeechTokenizer (speech in or out).
        #[serde(default)]
        speech: bool,
        /// The SEED image encoder (pictures, video and camera frames in).
        #[serde(default)]
        image_encoder: bool,
        /// The unCLIP image decoder (pictures out).
        #[serde(default)]
        image_decoder: bool,
    },
}

/// A streamed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A new token, with the text it finalised (may be empty inside a block or a
    /// multi-byte character).
    Token {
        /// The token id.
        id: u32,
        /// Newly finalised text.
        text: String,
    },
    /// A finished output segment.
    Segment(OutputSegment),
    /// Progressive speech: the content layer of speech block `index` is complete and
    /// decoded alone (lower quality); the full audio follows in its `Segment` once the
    /// timbre layers are done.
    SpeechPreview {
        /// Which speech block of the answer (0-based).
        index: usize,
        /// Samples per second.
        sample_rate: u32,
        /// Mono samples (not serialised; the runtime plays or writes them).
        #[serde(skip)]
        samples: Vec<f32>,
    },
    /// Guide mode: a step is complete (its picture is drawn).
    GuideStep(GuideStep),
    /// A low-resolution preview of the picture being drawn (latent resolution, a linear
    /// latent → RGB map, see `image_decoder::latent_preview`), every few denoising steps and
    /// at the last one. Pictures are drawn one at a time: previews before an image
    /// `Segment` belong to it.
    ImagePreview {
        /// Denoising steps done.
        step: usize,
        /// Steps in all.
        total: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Interleaved RGB bytes (not serialised).
        #[serde(skip)]
        rgb: Vec<u8>,
    },
    /// Progress of a long step (image denoising: `stage` = "image", steps of the UNet).
    Progress {
        /// What is progressing.
        stage: String,
        /// Steps done.
        step: usize,
        /// Steps in all.
        total: usize,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token.
    Eos,
    /// A stop sequence.
    Stop,
    /// `max_new_tokens` reached.
    Length,
    /// Cancelled by the caller.
    Cancelled,
}

/// One ordered piece of the assistant's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputSegment {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image block: 32 SEED codes.
    Image {
        /// Codes 0..8191.
        codes: Vec<u32>,
        /// The picture unCLIP drew from them, when the decoder is loaded. Not serialised:
        /// the runtime writes it to a file.
        #[serde(skip)]
        image: Option<DecodedImage>,
    },
    /// A speech block: content codes and, when present, the three timbre layers.
    Speech {
        /// Layer-0 codes 0..1023.
        content: Vec<u32>,
        /// Layers 1..3 codes 0..1023 each, when complete.
        timbre: Option<[Vec<u32>; 3]>,
        /// The decoded waveform (mono, [`SPEECH_SAMPLE_RATE`]), when the codec is loaded.
        /// Not serialised: the runtime writes it to a file.
        #[serde(skip)]
        audio: Option<Vec<f32>>,
    },
}

/// An 8-bit RGB picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Interleaved RGB bytes, rows top to bottom.
    #[serde(skip)]
    pub rgb: Vec<u8>,
}

/// Sample rate of decoded speech (SpeechTokenizer's).
pub const SPEECH_SAMPLE_RATE: u32 = 16_000;

/// Time spent, for benchmarks and the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Timings {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub new_tokens: usize,
    /// Seconds for the prompt (prefill).
    pub prefill_s: f64,
    /// Seconds for the generated tokens (decode).
    pub decode_s: f64,
}

/// The final answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Response {
    /// Token ids.
    Ids {
        /// The ids.
        ids: Vec<u32>,
    },
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A templated prompt.
    Template {
        /// The resolved prompt string.
        text: String,
        /// Its ids, `<|startoftext|>` first.
        ids: Vec<u32>,
    },
    /// Generated ids.
    Generated {
        /// New ids (prompt excluded, padding removed).
        new_ids: Vec<u32>,
        /// Why it stopped.
        finish_reason: FinishReason,
        /// Timings.
        timings: Timings,
    },
    /// Speech codes.
    SpeechCodes {
        /// `n_q × frames` RVQ codes.
        codes: Vec<Vec<u32>>,
        /// The MIO speech string.
        tokens: String,
    },
    /// Image codes, one entry per image.
    ImageCodes {
        /// 32 codes per image.
        codes: Vec<Vec<u32>>,
        /// `<image>…</image>` per image.
        tokens: Vec<String>,
    },
    /// A decoded picture.
    Image(DecodedImage),
    /// Decoded audio.
    Audio {
        /// Mono samples.
        samples: Vec<f32>,
        /// Samples per second.
        sample_rate: u32,
    },
    /// The codecs of a `Prepare` request are loaded.
    Prepared,
    /// An assistant turn.
    Chat {
        /// The answer as the model wrote it (text with its media blocks as token strings):
        /// the assistant message to put in the conversation for the next turn.
        answer_text: String,
        /// The prompt ids the model saw.
        prompt_ids: Vec<u32>,
        /// New ids.
        new_ids: Vec<u32>,
        /// The answer, in order.
        segments: Vec<OutputSegment>,
        /// Problems with malformed blocks (the usable part is kept).
        warnings: Vec<String>,
        /// Why it stopped.
        finish_reason: FinishReason,
        /// Timings.
        timings: Timings,
    },
}
