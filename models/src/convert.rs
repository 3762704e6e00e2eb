//! `mio convert`: a release folder's LM (safetensors or the release's `.bin` pickles) to one
//! GGUF file that llama.cpp and our candle loader both read: weights (streamed tensor by
//! tensor, see [`crate::lm::write_gguf_from`]), llama metadata, MIO's extra config and the
//! whole tokenizer with its special ids.

use std::path::Path;

use crate::lm::{
    write_gguf_from, Checkpoint, Config, GenerationConfigFile, GgufProgress, GgufType,
};
use crate::text::{gguf_tokenizer_metadata, TextTokenizer};
use crate::{Error, Result};

/// Converts the LM of `model_dir` to `out`. Refuses to replace an existing file unless
/// `overwrite`; never leaves a partial file behind (it writes `<out>.partial` and renames).
pub fn convert_release(
    model_dir: &Path,
    out: &Path,
    ty: GgufType,
    overwrite: bool,
    progress: &mut dyn FnMut(&GgufProgress) -> Result<()>,
) -> Result<()> {
    if out.exists() && !overwrite {
        return Err(Error::InvalidArgument(format!(
            "{} already exists (pass --force to replace it)",
            out.display()
        )));
    }
    if !model_dir.is_dir() {
        return Err(Error::MissingFile(model_dir.to_path_buf()));
    }
    let tok = TextTokenizer::load(model_dir)?;
    let cfg = Config::from_dir(model_dir)?;
    if cfg.vocab_size != tok.vocab_size() {
        return Err(Error::InvalidConfig(format!(
            "config.json has a vocabulary of {} but the tokenizer has {} tokens",
            cfg.vocab_size,
            tok.vocab_size()
        )));
    }
    let generation = GenerationConfigFile::from_dir(model_dir)?;
    let eos = generation
        .eos_token_id
        .as_ref()
        .and_then(|e| e.to_vec().first().copied())
        .unwrap_or(tok.vocab().eos);
    let metadata = gguf_tokenizer_metadata(&tok, eos, tok.vocab().im_end)?;
    let mut ckpt = Checkpoint::open(model_dir)?;
    write_gguf_from(&cfg, &mut ckpt, out, ty, &metadata, progress)
}
