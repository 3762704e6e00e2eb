//! SpeechTokenizer (`speech_tokenizer/` of the MIO reference): SEANet encoder with a
//! BiLSTM, 8-layer residual VQ (codebooks of 1024, 50 frames/s at 16 kHz), SEANet decoder;
//! plus the audio front end (WAV reading as `torchaudio.load`, `torchaudio` resampling) and
//! the MIO speech strings.

mod checkpoint;
mod config;
mod conv;
mod lstm;
mod model;
mod quantization;
mod resample;
mod seanet;
mod stream;
mod tokens;
mod wav;

pub use config::{Config, SpeechTokenizerConfig};
pub use conv::{SConv1d, SConv1dState, SConvTranspose1d, SConvTranspose1dState};
pub use lstm::{SLSTMState, SLSTM};
pub use model::{
    codes_tensor, is_training_buffer, prepare_input, SpeechDecodeState, SpeechTokenizer,
    CHECKPOINT_FILE, CONFIG_FILE,
};
pub use quantization::{EuclideanCodebook, ResidualVectorQuantizer, VectorQuantization};
pub use resample::{
    resample, sinc_resample_kernel, ResampleKernel, LOWPASS_FILTER_WIDTH, MAX_KERNEL_TAPS, ROLLOFF,
};
pub use seanet::{SEANetDecoder, SEANetDecoderState, SEANetEncoder, SEANetResnetBlock};
pub use tokens::{
    speech_ids, speech_layers_from_numbers, speech_layers_from_string, speech_string,
};
pub use wav::{parse_wav, read_wav, wav_bytes, write_wav, WavAudio, WavEncoding};
