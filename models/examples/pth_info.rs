//! Lists the tensors of `torch.save` checkpoints with the safe reader, without loading data;
//! `--tensor NAME` loads one tensor and prints its first values.
//!
//! ```text
//! cargo run -p mio-models --example pth_info -- tests/fixtures/model/seed-tokenizer-2/eva_vit_g.pth
//! cargo run -p mio-models --example pth_info -- tests/fixtures/pickle/layouts.pt --tensor model.w_t
//! ```

use candle_core::{DType, Device};
use mio_models::pickle::PthFile;

fn list(pth: &PthFile) {
    println!("{}: {} tensors", pth.path().display(), pth.len());
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

fn show(pth: &PthFile, name: &str) -> mio_models::Result<()> {
    let t = pth.tensor(name, &Device::Cpu)?;
    let flat = t.flatten_all()?;
    let n = flat.dim(0)?.min(8);
    let head = flat
        .narrow(0, 0, n)?
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    println!(
        "{name}: {:?} {:?} first values {head:?}",
        t.dtype(),
        t.dims()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (paths, tensor) = match args.iter().position(|a| a == "--tensor") {
        Some(i) => (&args[..i], args.get(i + 1)),
        None => (&args[..], None),
    };
    if paths.is_empty() {
        eprintln!("usage: pth_info CHECKPOINT... [--tensor NAME]");
        std::process::exit(2);
    }
    let mut failed = false;
    for path in paths {
        let result = PthFile::open(path).and_then(|pth| match tensor {
            Some(name) => show(&pth, name),
            None => {
                list(&pth);
                Ok(())
            }
        });
        if let Err(e) = result {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
