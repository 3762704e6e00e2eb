//! Converts a release folder's LM to GGUF and checks the result against the original.
//!
//! ```text
//! cargo run -p mio-models --example lm_to_gguf -- tests/fixtures/model /tmp/mio.gguf q8_0
//! ```

use std::path::PathBuf;

use candle_core::{DType, Device};
use mio_models::lm::{write_gguf, GgufType, LlamaForCausalLm};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out, ty] = args.as_slice() else {
        return Err("usage: lm_to_gguf MODEL_DIR OUT.gguf f32|f16|q8_0".into());
    };
    let ty = match ty.as_str() {
        "f32" => GgufType::F32,
        "f16" => GgufType::F16,
        "q8_0" => GgufType::Q8_0,
        other => return Err(format!("unknown type {other}").into()),
    };
    let (model, out) = (PathBuf::from(model), PathBuf::from(out));
    write_gguf(&model, &out, ty, &mut |p| {
        eprintln!(
            "[{}/{}] {} ({} / {} bytes)",
            p.done, p.total, p.tensor, p.bytes_done, p.bytes_total
        );
        Ok(())
    })?;
    let dev = Device::Cpu;
    let reference = LlamaForCausalLm::load(&model, DType::F32, &dev)?;
    let converted = LlamaForCausalLm::load_gguf(&out, &dev)?;
    let prompt = vec![vec![1u32, 6, 7]];
    let a = reference.forward_last(&prompt, None, &mut reference.new_cache())?;
    let b = converted.forward_last(&prompt, None, &mut converted.new_cache())?;
    let err = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    println!(
        "wrote {}; max |Δlogit| on a 3-token prompt: {err:e}",
        out.display()
    );
    Ok(())
}
