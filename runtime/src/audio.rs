//! Audio in and out at the runtime's edge: file decoding, capture (microphone or file) and
//! playback (speaker or file) behind traits with file-backed doubles, voice activity
//! detection, and rate conversion at the device edge.

mod capture;
mod decode;
mod devices;
mod playback;
mod resample;
mod vad;
mod wav;

pub use capture::{
    AudioSource, ChunkOptions, CpalMicrophone, FileSource, MicrophoneConfig, Pacing,
};
pub use decode::{decode_bytes, decode_file, Clip};
pub use devices::{list_input_devices, list_output_devices, DEVICE_TIMEOUT};
pub use playback::{AudioSink, CpalSpeaker, FileSink, PlayRecord, SpeakerConfig};
pub use resample::{downmix, resample_linear, LinearResampler};
pub use vad::{frame_db, PushToTalk, Utterance, Vad, VadConfig};
pub use wav::write_wav;
