//! The numeric parity suites in one test binary, built with `--features cuda` to be run on a
//! GPU machine with `MIO_TEST_DEVICE=cuda` (scripts/build-gpu-check.sh, scripts/gpu-check.sh).
//! The same goldens and tolerances as on the CPU.

#[path = "gpu/device_ops.rs"]
mod device_ops;
#[path = "generation_parity.rs"]
mod generation_parity;
#[path = "image_decode_parity.rs"]
mod image_decode_parity;
#[path = "image_encode_parity.rs"]
mod image_encode_parity;
#[path = "lm_parity.rs"]
mod lm_parity;
#[path = "speech_parity.rs"]
mod speech_parity;
