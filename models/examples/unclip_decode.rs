//! Decodes 32 SEED image codes into an image with the unCLIP decoder; writes a binary PPM.
//!
//! ```text
//! cargo run -p mio-models --example unclip_decode -- tests/fixtures/model /tmp/out.ppm 3 10 0 \
//!     $(seq -s, 0 31)
//! ```
//! Arguments: release folder, output `.ppm`, steps, guidance, seed, comma-separated codes.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use mio_models::image_decoder::{DecodeOptions, UnclipDecoder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out, steps, guidance, seed, codes] = args.as_slice() else {
        return Err("usage: unclip_decode MODEL_DIR OUT.ppm STEPS GUIDANCE SEED CODES".into());
    };
    let codes = codes
        .split(',')
        .map(|c| c.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()?;
    let opts = DecodeOptions {
        steps: steps.parse()?,
        guidance: guidance.parse()?,
        seed: seed.parse()?,
        preview_every: 0,
    };
    let dec = UnclipDecoder::load(Path::new(model), &Device::Cpu)?;
    let start = std::time::Instant::now();
    let img = dec.decode(
        &codes,
        &opts,
        &mut |s| eprintln!("step {}/{} (t = {})", s.step, s.total, s.timestep),
        &AtomicBool::new(false),
    )?;
    eprintln!("decoded in {:.2?}", start.elapsed());
    let mut file = std::fs::File::create(out)?;
    write!(file, "P6\n{} {}\n255\n", img.width, img.height)?;
    file.write_all(&img.data)?;
    Ok(())
}
