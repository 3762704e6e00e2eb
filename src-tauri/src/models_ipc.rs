//! The model manager's and settings' part of the IPC contract: load options, folder
//! inspection (sizes and memory estimates), importing a release folder with progress, and
//! generation presets per task. Re-exported by [`crate::ipc`], which generates the
//! TypeScript bindings.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::ipc::Mode;

/// Which implementation runs the LM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The candle port (safetensors, `.bin` or GGUF, any device).
    #[default]
    Candle,
    /// llama.cpp (a GGUF LM; GPU offload by layers).
    Llamacpp,
    /// A server runs the LM (`llama-server` or an OpenAI-compatible one, see `RemoteArgs`);
    /// the media models stay in the app.
    Remote,
}

/// The API a remote LM server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "lowercase")]
pub enum RemoteApiArg {
    /// llama.cpp's `llama-server` (exact top-64 log-probs, tokenizer checked on connect).
    #[default]
    Llamacpp,
    /// The OpenAI completions API with token-id prompts (vLLM, others).
    Openai,
}

/// Where the LM runs when the backend is `remote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
pub struct RemoteArgs {
    /// Base URL, e.g. `http://gpu-box:8080` (plain HTTP).
    pub url: String,
    /// The API it speaks.
    pub api: RemoteApiArg,
    /// Sent as a bearer token when set.
    pub api_key: Option<String>,
    /// The model name to ask for (OpenAI API; `null`: the server's first).
    pub model: Option<String>,
}

/// Float precision of the LM weights (quantized GGUF layers keep their type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionArg {
    /// 32-bit floats (parity with the reference).
    #[default]
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
}

/// Weight format an import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
pub enum Quant {
    /// 4-bit k-quant, medium (smallest; about 4.9 bits per weight).
    #[serde(rename = "q4_k_m")]
    Q4KM,
    /// 8-bit (close to f16 quality).
    #[serde(rename = "q8_0")]
    Q80,
    /// 16-bit floats (no quantization).
    #[serde(rename = "f16")]
    F16,
}

impl Quant {
    /// The name `mio import --quant` takes.
    pub fn name(self) -> &'static str {
        match self {
            Quant::Q4KM => "q4_k_m",
            Quant::Q80 => "q8_0",
            Quant::F16 => "f16",
        }
    }
}

/// Import a release folder as it ships into a ready model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ImportArgs {
    /// The release folder (as downloaded).
    pub release_dir: String,
    /// The new model folder; `None`: `models/<release name>-<quant>` in the app data folder.
    pub out_dir: Option<String>,
    /// Weight format of the LM.
    pub quant: Quant,
}

/// Progress of an import, streamed at most every 100 ms and at the end of each phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImportEvent {
    /// Work done so far.
    Progress {
        /// `verify` (hashing a source), `check` (re-verifying a finished output), `write`.
        stage: String,
        /// The file concerned (relative).
        file: String,
        /// Bytes of work done in this phase.
        #[ts(type = "number")]
        bytes_done: u64,
        /// Bytes of work in this phase.
        #[ts(type = "number")]
        bytes_total: u64,
        /// Throughput so far.
        rate_bytes_per_s: f64,
        /// Seconds left at that rate (`null` before any byte).
        eta_s: Option<f64>,
    },
}

/// Download a MIO release from Hugging Face (resumable; every file verified).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct DownloadArgs {
    /// `owner/name`, e.g. `m-a-p/MIO-7B-Instruct`.
    pub repo: String,
    /// The release folder to fill; `None`: `downloads/<name>` in the app data folder.
    pub out_dir: Option<String>,
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct DownloadResult {
    /// The release folder (import it next).
    pub out_dir: String,
    /// Files present and verified.
    pub files: u32,
    /// Bytes of those files.
    #[ts(type = "number")]
    pub bytes_total: u64,
    /// Bytes fetched by this run (the rest was already there).
    #[ts(type = "number")]
    pub bytes_fetched: u64,
    /// Files skipped (weight variants MIO does not read).
    pub skipped: u32,
    /// Seconds the download took.
    pub seconds: f64,
}

/// Serve the loaded model over the OpenAI API (`mio serve`'s server in the app).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ServeArgs {
    /// Port (0: any free one).
    pub port: u16,
    /// Listen on every interface (needs `api_key`), not only this machine.
    pub lan: bool,
    /// Required bearer key.
    pub api_key: Option<String>,
}

/// The running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ServeStatus {
    /// Base URL clients use, e.g. `http://127.0.0.1:8080/v1`.
    pub url: String,
    /// The model name it answers to.
    pub model: String,
    /// Reachable from the network.
    pub lan: bool,
    /// A key is required.
    pub api_key: bool,
}

/// A finished import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ImportResult {
    /// The model folder written (load it with `load_model`).
    pub out_dir: String,
    /// Files written by this run.
    pub written: Vec<String>,
    /// Files an interrupted earlier run had finished (verified, kept).
    pub kept: Vec<String>,
    /// Sources with no published checksum (recorded, not verified).
    pub unverified: Vec<String>,
    /// Seconds the import took.
    pub seconds: f64,
}

/// One component of a model folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ComponentInfo {
    /// `lm`, `tokenizer`, `seed-tokenizer`, `speech-tokenizer`, `unclip`.
    pub name: String,
    /// Storage format (`safetensors`, `pytorch-pickle`, `gguf`, …).
    pub format: String,
    /// Bytes on disk.
    #[ts(type = "number")]
    pub bytes: u64,
    /// Element types found.
    pub dtypes: Vec<String>,
}

/// Memory one way of running the LM needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MemoryOption {
    /// `f32`, `f16`, `q8_0`, `q4_k_m`.
    pub weights: String,
    /// Bytes of weights.
    #[ts(type = "number")]
    pub weight_bytes: u64,
    /// Bytes of a full-context KV cache.
    #[ts(type = "number")]
    pub kv_cache_bytes: u64,
    /// Their sum.
    #[ts(type = "number")]
    pub total_bytes: u64,
}

/// What a model folder holds, found without loading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ModelFolder {
    /// The folder.
    pub model_dir: String,
    /// Components found, with sizes.
    pub components: Vec<ComponentInfo>,
    /// Components missing (each disables a feature).
    pub missing: Vec<String>,
    /// Bytes on disk in all.
    #[ts(type = "number")]
    pub total_bytes: u64,
    /// Memory estimates per weight format.
    pub memory: Vec<MemoryOption>,
    /// GGUF LM files in the folder (the quantized files `lm_file` may name).
    pub lm_files: Vec<String>,
    /// Weight format of an imported folder (from its manifest).
    pub imported_quant: Option<String>,
}

/// Decoding settings of a turn; each `None` keeps the mode's preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, Default)]
pub struct GenOverrides {
    /// Most new tokens.
    pub max_new_tokens: Option<u32>,
    /// Beams (1 = greedy or sampling).
    pub num_beams: Option<u32>,
    /// Sample instead of searching.
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold.
    pub top_p: Option<f64>,
    /// Repetition penalty (1 = off).
    pub repetition_penalty: Option<f64>,
    /// Sampling seed.
    #[ts(type = "number | null")]
    pub seed: Option<u64>,
}

/// The decoding preset the reference `infer.py` gives a mode's task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct ModePreset {
    /// The mode.
    pub mode: Mode,
    /// The `infer.py` task, in words.
    pub task: String,
    /// Most new tokens.
    pub max_new_tokens: u32,
    /// Beams.
    pub num_beams: u32,
    /// Sampling.
    pub do_sample: bool,
    /// Temperature.
    pub temperature: f64,
    /// Top-p.
    pub top_p: f64,
    /// Repetition penalty.
    pub repetition_penalty: f64,
}

/// How the microphone records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MicArgs {
    /// Hands-free (the VAD ends each utterance) instead of push-to-talk.
    pub hands_free: bool,
    /// Hands-free: silence that ends an utterance, in ms (100 to 10000).
    pub silence_ms: u32,
}

/// What the microphone reports while it records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MicEvent {
    /// The level of the last chunk.
    Level {
        /// dBFS.
        db: f64,
        /// Speech is on (hands-free) or recording (push-to-talk).
        speaking: bool,
    },
    /// An utterance, stored as an audio attachment.
    Utterance {
        /// The attachment.
        attachment: crate::ipc::Attachment,
        /// Its length in seconds.
        duration_s: f64,
    },
    /// Recording failed (the device vanished, the disk is full).
    Failed {
        /// The error.
        error: crate::error::AppError,
    },
    /// Recording ended (the last event).
    Stopped,
}

/// A started recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct MicStarted {
    /// The microphone is the file-backed test double (`MIO_TEST_MIC_FILE`).
    pub test_double: bool,
}

/// What the camera reports while it is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CameraEvent {
    /// A live preview frame (small JPEG).
    Frame {
        /// `data:image/jpeg;base64,…`.
        data_url: String,
        /// Camera frame width.
        width: u32,
        /// Camera frame height.
        height: u32,
    },
    /// The camera failed (unplugged, busy).
    Failed {
        /// The error.
        error: crate::error::AppError,
    },
    /// The camera closed (the last event).
    Stopped,
}

/// An opened camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CameraStarted {
    /// The camera is the file-backed test double (`MIO_TEST_CAMERA_FILE`).
    pub test_double: bool,
}
