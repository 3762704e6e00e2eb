//! Encodes images with the SEED tokenizer: 32 codes and the MIO image block per image.
//!
//! ```text
//! cargo run -p mio-models --example image_encode -- tests/fixtures/model \
//!     tests/fixtures/golden/inputs/test_image_0.jpg tests/fixtures/golden/inputs/synthetic_0.png
//! ```

use std::path::PathBuf;

use candle_core::Device;
use mio_models::image_tokenizer::SeedImageEncoder;
use mio_models::text::{image_block, TextTokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [model, images @ ..] = args.as_slice() else {
        return Err("usage: image_encode MODEL_DIR IMAGE...".into());
    };
    if images.is_empty() {
        return Err("usage: image_encode MODEL_DIR IMAGE...".into());
    }
    let dev = Device::Cpu;
    let encoder = SeedImageEncoder::load(model, &dev)?;
    let tokenizer = TextTokenizer::load(model)?;
    for path in images {
        let start = std::time::Instant::now();
        let codes = encoder.encode_file(path)?;
        let block = image_block(tokenizer.vocab(), &codes)?;
        println!("{}: {:?}", path.display(), codes);
        println!("{block}");
        eprintln!("encoded in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}
