//! Command-line arguments of `mio` (the contract in DESIGN.md).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::device::DeviceKind;
use mio_models::engine::{GpuLayers, LmBackend, RemoteLm, RemoteLmApi};

/// MIO Desktop's headless command line.
#[derive(Debug, Parser)]
#[command(name = "mio", version, about = "Run the MIO any-to-any model locally")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// MIO release folder.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Float precision of the LM weights.
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// LM weights from this GGUF file (everything else from --model).
    #[arg(long, value_name = "FILE.gguf")]
    pub lm: Option<PathBuf>,
    /// Which implementation runs the LM: candle, or llamacpp (GGUF only).
    #[arg(long, value_enum, default_value_t = BackendArg::Candle)]
    pub backend: BackendArg,
    /// LM layers llama.cpp puts on the GPU: a count, or auto (what fits free GPU memory
    /// when --device is a GPU).
    #[arg(long, value_name = "N|auto", default_value = "auto", value_parser = parse_gpu_layers)]
    pub gpu_layers: GpuLayers,
    /// Where values computed once from the weights are kept across runs (unCLIP's
    /// empty-prompt embedding) [default: $MIO_CACHE_DIR, else $XDG_CACHE_HOME/mio, else
    /// ~/.cache/mio].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run the LM on a server at this URL (llama-server or an OpenAI-compatible completions
    /// server serving MIO's LM); tokenizer and media codecs stay local.
    #[arg(long, value_name = "URL")]
    pub lm_url: Option<String>,
    /// The API of --lm-url: llamacpp (llama-server) or openai (/v1/completions, e.g. vLLM).
    #[arg(long, value_enum, default_value_t = LmApiArg::Llamacpp, requires = "lm_url")]
    pub lm_api: LmApiArg,
    /// Bearer key for --lm-url.
    #[arg(long, value_name = "KEY", requires = "lm_url")]
    pub lm_api_key: Option<String>,
    /// Model name to request from an OpenAI-API --lm-url (default: the first it lists).
    #[arg(long, value_name = "NAME", requires = "lm_url")]
    pub lm_model: Option<String>,
}

/// `--lm-api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LmApiArg {
    /// llama.cpp's llama-server.
    Llamacpp,
    /// The OpenAI completions API with token-id prompts.
    Openai,
}

impl Common {
    /// `--cache-dir`, or the default cache folder when one can be named.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(default_cache_dir)
    }

    /// The remote-LM settings of `--lm-url/--lm-api/--lm-api-key/--lm-model`.
    pub fn remote_lm(&self) -> Option<RemoteLm> {
        let url = self.lm_url.clone()?;
        Some(RemoteLm {
            url,
            api: match self.lm_api {
                LmApiArg::Llamacpp => RemoteLmApi::LlamaCpp,
                LmApiArg::Openai => RemoteLmApi::OpenAi,
            },
            api_key: self.lm_api_key.clone(),
            model: self.lm_model.clone(),
        })
    }
}

/// `$MIO_CACHE_DIR`, else `$XDG_CACHE_HOME/mio`, else `$HOME/.cache/mio`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("MIO_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("mio")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("mio")))
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Our candle port.
    Candle,
    /// llama.cpp.
    Llamacpp,
}

impl From<BackendArg> for LmBackend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Candle => LmBackend::Candle,
            BackendArg::Llamacpp => LmBackend::LlamaCpp,
        }
    }
}

/// Parses `--gpu-layers N|auto`.
pub fn parse_gpu_layers(s: &str) -> Result<GpuLayers, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(GpuLayers::Auto);
    }
    s.parse::<u32>()
        .map(GpuLayers::Count)
        .map_err(|_| format!("{s:?} is not a layer count or auto"))
}

/// `--precision`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// float32.
    F32,
    /// float16.
    F16,
    /// bfloat16.
    Bf16,
}

/// Decoding flags shared by `generate` and `chat`.
#[derive(Debug, Clone, Args, Default)]
pub struct DecodeArgs {
    /// Most new tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Beam count.
    #[arg(long)]
    pub num_beams: Option<usize>,
    /// Beam length penalty.
    #[arg(long)]
    pub length_penalty: Option<f64>,
    /// Repetition penalty.
    #[arg(long)]
    pub repetition_penalty: Option<f64>,
    /// Sampling temperature (turns sampling on).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus sampling (turns sampling on).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Top-k sampling (turns sampling on).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sampling seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// End-of-generation id (default: the model's generation config).
    #[arg(long)]
    pub eos_id: Option<u32>,
    /// Let the model emit malformed image/speech blocks.
    #[arg(long)]
    pub no_constraints: bool,
    /// Denoising steps for pictures in the answer (default 20).
    #[arg(long)]
    pub image_steps: Option<usize>,
    /// Write low-resolution latent previews of the pictures being drawn into this folder
    /// (`image_N.step_SSS.png`).
    #[arg(long, value_name = "DIR")]
    pub previews: Option<PathBuf>,
    /// Denoising steps between previews (default 5 with --previews).
    #[arg(long, value_name = "N")]
    pub preview_every: Option<usize>,
}

/// Template modes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TemplateModeArg {
    /// Standard system prompt.
    Std,
    /// Voice system prompt.
    Voice,
    /// The conversation's own system message.
    Custom,
}

/// Chat modes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChatModeArg {
    /// Any modality.
    Chat,
    /// Answer with speech.
    Voice,
    /// Draw a picture of the message (image.png).
    Image,
    /// A video of the message: frames/frame_NNN.png and video.gif.
    Video,
    /// Step-by-step visual guide: guide.html (self-contained), guide.md + step_N.png.
    Guide,
    /// Edit the --image as the message says: before.png and after.png.
    Edit,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Components found, sizes, dtypes, memory estimate.
    Info {
        #[command(flatten)]
        common: Common,
    },
    /// Text to ids (raw tokenizer, no BOS).
    Tokenize {
        #[command(flatten)]
        common: Common,
        /// The text.
        #[arg(long)]
        text: String,
    },
    /// Ids to text.
    Detokenize {
        #[command(flatten)]
        common: Common,
        /// Comma-separated ids.
        #[arg(long, value_delimiter = ',')]
        ids: Vec<u32>,
    },
    /// The chat-templated prompt of a conversation file.
    Template {
        #[command(flatten)]
        common: Common,
        /// `{"messages": [...], "images": [...], "speech": [...]}`.
        #[arg(long, value_name = "FILE.json")]
        conversation: PathBuf,
        /// System prompt.
        #[arg(long, value_enum, default_value_t = TemplateModeArg::Std)]
        mode: TemplateModeArg,
    },
    /// Continue a prompt; prints the new ids.
    Generate {
        #[command(flatten)]
        common: Common,
        /// Prompt ids.
        #[arg(long, value_delimiter = ',', conflicts_with = "prompt")]
        ids: Option<Vec<u32>>,
        /// Prompt text (tokenized raw, with `<|startoftext|>` first).
        #[arg(long)]
        prompt: Option<String>,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// One chat turn; writes transcript.json into --out.
    Chat {
        #[command(flatten)]
        common: Common,
        /// Mode.
        #[arg(long, value_enum, default_value_t = ChatModeArg::Chat)]
        mode: ChatModeArg,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Image input (JPEG, PNG, WebP, GIF, BMP); repeatable. Placed where the message says
        /// `<image_placeholder_N>`, else after the text.
        #[arg(long = "image", value_name = "FILE")]
        image: Vec<PathBuf>,
        /// Audio input (wav, flac, mp3, ogg); repeatable. Placed where the message says
        /// `<speech_placeholder_N>`, else after the text.
        #[arg(long = "audio", value_name = "FILE")]
        audio: Vec<PathBuf>,
        /// Video input (mp4, webm, avi, mkv, mov); repeatable. Its keyframes become
        /// consecutive images, placed where the message says `<video_placeholder_N>`, else
        /// after the text; the frames are written into --out.
        #[arg(long = "video", value_name = "FILE")]
        video: Vec<PathBuf>,
        #[command(flatten)]
        frames: FrameArgs,
        #[command(flatten)]
        camera: ChatCameraArgs,
        #[command(flatten)]
        decode: DecodeArgs,
        /// The user's message.
        text: String,
    },
    /// Image codes and pictures.
    Image {
        /// encode or decode.
        #[command(subcommand)]
        what: ImageCommand,
    },
    /// Input and output sound devices.
    Devices,
    /// Webcams: list, snapshot, record keyframes.
    Camera {
        /// list, snapshot or record.
        #[command(subcommand)]
        what: CameraCommand,
    },
    /// Video keyframes.
    Video {
        /// keyframes.
        #[command(subcommand)]
        what: VideoCommand,
    },
    /// Speech codes and MIO speech strings.
    Speech {
        /// encode or decode.
        #[command(subcommand)]
        what: SpeechCommand,
    },
    /// Replay a scripted conversation; writes transcript.json and report.html, fails when an
    /// expectation fails.
    Replay {
        /// The script (YAML).
        script: PathBuf,
        /// Output folder.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Model folder (overrides the script's `model`).
        #[arg(long, value_name = "DIR")]
        model: Option<PathBuf>,
        /// Print the transcript as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert the LM to a GGUF file (llama.cpp and candle load it).
    Convert {
        /// MIO release folder.
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// The GGUF file to write.
        #[arg(long, value_name = "FILE.gguf")]
        out: PathBuf,
        /// f32, f16, q8_0, q5_k_m or q4_k_m.
        #[arg(long = "type", default_value = "q8_0")]
        ty: String,
        /// Replace FILE.gguf if it exists.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a release folder as it ships into a ready model folder (GGUF LM, safetensors
    /// codecs, cached unCLIP prompt embedding, manifest.json); resumable.
    Import {
        /// The release folder (e.g. a Hugging Face snapshot of MIO-7B-Instruct).
        #[arg(long, value_name = "DIR")]
        release: PathBuf,
        /// The model folder to write (new or empty; or an interrupted import, to resume).
        #[arg(long, value_name = "MODELDIR")]
        out: PathBuf,
        /// The LM's GGUF type: q4_k_m, q5_k_m, q8_0, f16 or f32.
        #[arg(long, default_value = "q4_k_m")]
        quant: String,
        /// Expected sha256s, `sha256sum` format, paths relative to the release.
        #[arg(long, value_name = "FILE")]
        checksums: Option<PathBuf>,
        /// Test hook: fail like a full disk after this many bytes are written.
        #[arg(long, hide = true)]
        write_limit: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download a MIO release from the Hugging Face Hub: resumable, every file checked
    /// against the hub's sha256 / git id, only the files MIO reads.
    Download {
        /// The repo, e.g. m-a-p/MIO-7B-Instruct or m-a-p/MIO-7B-Base.
        #[arg(long, default_value = "m-a-p/MIO-7B-Instruct")]
        repo: String,
        /// Branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
        /// The folder to fill (an interrupted download there is resumed).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also fetch the weight variants MIO never reads (fp16 and .bin duplicates of the
        /// unCLIP components, the unCLIP image encoder).
        #[arg(long)]
        all_files: bool,
        /// Hub endpoint [default: $HF_ENDPOINT, else https://huggingface.co]; the token is
        /// $HF_TOKEN.
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// OpenAI-compatible HTTP server (chat completions, transcriptions, speech).
    Serve {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Benchmarks.
    Bench {
        /// What to measure.
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// `mio image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Images to 32 SEED codes each and their `<image>…</image>` strings.
    Encode {
        #[command(flatten)]
        common: Common,
        /// Image files.
        images: Vec<PathBuf>,
    },
    /// 32 codes to a picture (SEED decode head + unCLIP), written as PNG.
    Decode {
        #[command(flatten)]
        common: Common,
        /// Comma-separated codes (32).
        #[arg(long, value_delimiter = ',')]
        codes: Vec<u32>,
        /// Denoising steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Classifier-free guidance.
        #[arg(long, default_value_t = 10.0)]
        guidance: f64,
        /// Seed of the initial latents.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Pinned initial latents (a safetensors file holding one tensor); needs --noise.
        #[arg(long, value_name = "FILE", requires = "noise")]
        latents: Option<PathBuf>,
        /// Pinned embedding noise (a safetensors file holding one tensor); needs --latents.
        #[arg(long, value_name = "FILE", requires = "latents")]
        noise: Option<PathBuf>,
        /// The PNG to write.
        #[arg(long, value_name = "PNG")]
        out: PathBuf,
        /// Write low-resolution latent previews into this folder (`image_0.step_SSS.png`).
        #[arg(long, value_name = "DIR")]
        previews: Option<PathBuf>,
        /// Steps between previews (default 5 with --previews).
        #[arg(long, value_name = "N")]
        preview_every: Option<usize>,
    },
}

/// How video keyframes are chosen (`mio chat --video`, `mio video keyframes`).
#[derive(Debug, Clone, Args)]
pub struct FrameArgs {
    /// Most keyframes per video (0: no cap); more are thinned evenly.
    #[arg(long, default_value_t = mio_models::video::DEFAULT_MAX_FRAMES)]
    pub max_frames: usize,
    /// About 10 evenly spaced frames instead of one per scene.
    #[arg(long)]
    pub uniform_frames: bool,
}

/// Which camera (`mio camera …`).
#[derive(Debug, Clone, Args)]
pub struct CameraArgs {
    /// Camera id or name from `mio camera list` (default: the first).
    #[arg(long)]
    pub device: Option<String>,
    /// Wanted resolution, WIDTHxHEIGHT (the closest the camera offers).
    #[arg(long, value_parser = parse_resolution)]
    pub resolution: Option<(u32, u32)>,
    /// Play this video or image file as the camera instead (the file-backed double).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Frame rate of --file.
    #[arg(long, default_value_t = 30.0)]
    pub file_fps: f64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s} is not a resolution like 640x480");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    match (w.trim().parse::<u32>(), h.trim().parse::<u32>()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(bad()),
    }
}

/// `mio camera …`.
#[derive(Debug, Subcommand)]
pub enum CameraCommand {
    /// The cameras this machine has.
    List {
        #[command(flatten)]
        camera: CameraArgs,
    },
    /// One frame, written as PNG.
    Snapshot {
        #[command(flatten)]
        camera: CameraArgs,
        /// The PNG to write.
        #[arg(long, value_name = "PNG")]
        out: PathBuf,
    },
    /// A short clip, reduced to keyframes as a video file is; written as PNGs.
    Record {
        #[command(flatten)]
        camera: CameraArgs,
        /// Clip length in seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[command(flatten)]
        frames: FrameArgs,
        /// Folder for `frame_N.png`.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Webcam input of `mio chat`.
#[derive(Debug, Clone, Args, Default)]
pub struct ChatCameraArgs {
    /// Add a webcam snapshot as an image (after the --image files).
    #[arg(long)]
    pub camera: bool,
    /// Add a webcam clip of this many seconds, reduced to keyframes like a video.
    #[arg(long, value_name = "SECONDS")]
    pub camera_clip: Option<f64>,
    /// Camera id or name from `mio camera list` (default: the first).
    #[arg(long)]
    pub camera_device: Option<String>,
    /// Play this video or image file as the camera (the file-backed double).
    #[arg(long, value_name = "FILE")]
    pub camera_file: Option<PathBuf>,
}

/// `mio video …`.
#[derive(Debug, Subcommand)]
pub enum VideoCommand {
    /// The frames a video turn would use: one per scene (scene-change detection), else ~10
    /// evenly spaced; written as PNGs into --out.
    Keyframes {
        /// The video file.
        video: PathBuf,
        /// Folder for `frame_N.png` (nothing written without it).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        #[command(flatten)]
        frames: FrameArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `mio speech …`.
#[derive(Debug, Subcommand)]
pub enum SpeechCommand {
    /// Audio file to RVQ codes (n_q × frames) and the MIO speech string.
    Encode {
        #[command(flatten)]
        common: Common,
        /// The audio file (wav, flac, mp3, ogg).
        audio: PathBuf,
        /// Put the three timbre layers in the string (MIO's output format).
        #[arg(long)]
        timbre: bool,
    },
    /// A MIO speech string to a WAV file.
    Decode {
        #[command(flatten)]
        common: Common,
        /// `<spch>…</spch>` (4 layers, or the content layer alone).
        #[arg(long)]
        tokens: String,
        /// The WAV file to write.
        #[arg(long, value_name = "WAV")]
        out: PathBuf,
    },
}

/// `mio bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// LM prefill and decode speed, peak memory.
    Lm {
        #[command(flatten)]
        common: Common,
        /// Prompt length in tokens.
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        /// Tokens to decode.
        #[arg(long, default_value_t = 64)]
        decode_tokens: usize,
        /// Repetitions (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Run the --lm GGUF on the llama.cpp backend, the candle backend and (with
        /// --llama-bench) llama.cpp's own llama-bench, and print them side by side.
        #[arg(long)]
        compare: bool,
        /// llama.cpp's `llama-bench` (scripts/build-llama-tools.sh builds it).
        #[arg(long, value_name = "PATH")]
        llama_bench: Option<PathBuf>,
    },
    /// unCLIP image decode: seconds per denoising step, VAE time, peak memory.
    ImageDecode {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        side: SideBySide,
        /// Denoising steps (MIO: 20).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Timed repetitions after the warm-up (the best is reported).
        #[arg(long, default_value_t = 2)]
        repeat: usize,
        /// Untimed warm-up decodes first (steps are timed between progress events, so
        /// the first call's set-up is left out even without one).
        #[arg(long, default_value_t = 1)]
        warmup: usize,
    },
    /// SpeechTokenizer encode / decode real-time factor and peak memory.
    Speech {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        side: SideBySide,
        /// Length of the synthetic clip in seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Timed repetitions after one warm-up (the best is reported).
        #[arg(long, default_value_t = 2)]
        repeat: usize,
    },
    /// SEED image encoding speed (images per second) and peak memory.
    ImageEncode {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        side: SideBySide,
        /// Images to encode (default: synthetic 640×480 pictures).
        images: Vec<PathBuf>,
        /// Images per request when none are given.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Repetitions (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

/// Flags of the benchmarks compared with PyTorch (`scripts/bench-pytorch/`).
#[derive(Debug, Clone, Args)]
pub struct SideBySide {
    /// Compute threads (the PyTorch script's `--threads`; default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// The JSON a `scripts/bench-pytorch/*.py bench` run wrote for the same --model folder:
    /// printed beside ours with the ratio.
    #[arg(long, value_name = "FILE.json")]
    pub pytorch: Option<PathBuf>,
}

/// Flags of `mio serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY`.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Requests that may wait behind the running one; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub queue: usize,
    /// Largest request body in MB (413 above).
    #[arg(long, value_name = "M", default_value_t = 32)]
    pub max_body_mb: usize,
    /// Send CORS headers for this origin (`*`: any); off by default.
    #[arg(long, value_name = "ORIGIN")]
    pub cors_origin: Option<String>,
    /// Cap on new tokens per answer (default: the mode's preset).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
}
