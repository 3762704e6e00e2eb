//! Lists the tensors of `torch.save` checkpoints with the safe reader, without loading data.
//!
//! ```text
//! cargo run -p mio-models --example pth_info -- tests/fixtures/model/seed-tokenizer-2/eva_vit_g.pth
//! ```

use mio_models::pickle::PthFile;

fn main() {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: pth_info CHECKPOINT...");
        std::process::exit(2);
    }
    let mut failed = false;
    for path in paths {
        match PthFile::open(&path) {
            Ok(pth) => {
                println!("{path}: {} tensors", pth.len());
                for name in pth.names() {
                    if let Some(info) = pth.info(name) {
                        let layout = if info.is_contiguous() {
                            ""
                        } else {
                            " (strided)"
                        };
                        println!("  {name}: {:?} {:?}{layout}", info.dtype, info.shape);
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
