//! What `mio import` will write, decided (and the release validated) before anything is
//! written: every LM shard opened and checked against the config's shapes, the tokenizer
//! loaded, every pickle indexed by the safe reader. Bad input fails here, so a refused
//! import leaves no trace in MODELDIR.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mio_models::image_decoder::{component_weights, text_encoder_weights, UNCLIP_DIR};
use mio_models::lm::{expected_tensors, find_shards, gguf_data_size, Checkpoint, Config, GgufType};
use mio_models::pickle::PthFile;
use mio_models::text::TextTokenizer;
use mio_models::weights_file::safetensors_size;

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Copy the one source file.
    Copy,
    /// Convert the LM to GGUF (sources: shards, config and tokenizer files).
    Gguf,
    /// Convert the one pickled source to safetensors (stored dtypes kept).
    PthToSafetensors,
    /// Compute unCLIP's empty-prompt embedding (sources: text encoder weights first).
    PromptEmbeds,
}

/// One output file and how it is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Output path relative to MODELDIR (also the step's id).
    pub output: String,
    /// Source paths relative to the release.
    pub sources: Vec<String>,
    /// What is done.
    pub action: Action,
    /// Bytes the output will take (an upper estimate).
    pub out_bytes: u64,
    /// Bytes of work, for the progress bar.
    pub work_bytes: u64,
}

/// Every step of an import, in order (the LM first: it is the biggest).
#[derive(Debug, Clone)]
pub struct ImportPlan {
    /// The release folder.
    pub release: PathBuf,
    /// The LM's GGUF type.
    pub quant: GgufType,
    /// Its name (`q4_k_m`…).
    pub quant_name: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// Every source file (relative), sorted, with its size.
    pub sources: Vec<(String, u64)>,
}

fn rel(release: &Path, path: &Path) -> Result<String> {
    let r = path
        .strip_prefix(release)
        .with_context(|| format!("{} is outside the release folder", path.display()))?;
    Ok(r.to_string_lossy().replace('\\', "/"))
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}

/// Files directly in `dir` (sorted), skipping weights (`.pt`, `.pth`, `.bin`,
/// `.safetensors`, `.ckpt`).
fn small_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let p = entry?.path();
        let weights = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "pt" | "pth" | "bin" | "safetensors" | "ckpt"));
        if p.is_file() && !weights {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

struct Builder<'a> {
    release: &'a Path,
    steps: Vec<Step>,
}

impl Builder<'_> {
    fn copy(&mut self, path: &Path) -> Result<()> {
        let r = rel(self.release, path)?;
        let bytes = size(path)?;
        self.push(r.clone(), vec![r], Action::Copy, bytes, bytes);
        Ok(())
    }

    fn pickle(&mut self, path: &Path) -> Result<()> {
        let pth = PthFile::open(path)?;
        let out_bytes = safetensors_size(&pth)?;
        let r = rel(self.release, path)?;
        let out = Path::new(&r).with_extension("safetensors");
        let out = out.to_string_lossy().into_owned();
        self.push(out, vec![r], Action::PthToSafetensors, out_bytes, out_bytes);
        Ok(())
    }

    fn push(&mut self, output: String, sources: Vec<String>, action: Action, o: u64, w: u64) {
        self.steps.push(Step {
            output,
            sources,
            action,
            out_bytes: o,
            work_bytes: w,
        });
    }
}

const TOP_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.json",
];

impl ImportPlan {
    /// Validates `release` and plans its import as `quant`.
    pub fn new(release: &Path, quant: &str) -> Result<Self> {
        let quant_name = quant.to_ascii_lowercase();
        let ty: GgufType = quant_name.parse()?;
        if !release.is_dir() {
            bail!("{} is not a folder", release.display());
        }
        let mut b = Builder {
            release,
            steps: vec![],
        };
        b.steps.push(lm_step(release, ty, &quant_name)?);
        for name in TOP_FILES {
            let p = release.join(name);
            if p.is_file() {
                b.copy(&p)?;
            }
        }
        seed_steps(&mut b)?;
        speech_steps(&mut b)?;
        unclip_steps(&mut b)?;
        let mut sources: Vec<String> = b.steps.iter().flat_map(|s| s.sources.clone()).collect();
        sources.sort();
        sources.dedup();
        let sources = sources
            .into_iter()
            .map(|r| Ok((r.clone(), size(&release.join(&r))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            release: release.to_path_buf(),
            quant: ty,
            quant_name,
            steps: b.steps,
            sources,
        })
    }

    /// The LM file's name inside MODELDIR.
    pub fn lm_file(&self) -> String {
        lm_name(&self.quant_name)
    }
}

fn lm_name(quant: &str) -> String {
    format!("model-{quant}.gguf")
}

/// Opens every shard, checks names and shapes and the tokenizer's size: the LM step.
fn lm_step(release: &Path, ty: GgufType, quant: &str) -> Result<Step> {
    let tok = TextTokenizer::load(release)?;
    let cfg = Config::from_dir(release)?;
    if cfg.vocab_size != tok.vocab_size() {
        bail!(
            "config.json has a vocabulary of {} but the tokenizer has {} tokens",
            cfg.vocab_size,
            tok.vocab_size()
        );
    }
    let shards = find_shards(release)?;
    let ckpt = Checkpoint::open(release)?;
    ckpt.check_shapes(&expected_tensors(&cfg))?;
    let mut sources = vec![];
    let mut in_bytes = 0;
    for f in &shards.files {
        sources.push(rel(release, f)?);
        in_bytes += size(f)?;
    }
    let mut meta_bytes = 1 << 20;
    for name in TOP_FILES {
        let p = release.join(name);
        if p.is_file() {
            sources.push(name.to_string());
            meta_bytes += size(&p)?;
        }
    }
    let out_bytes = gguf_data_size(&cfg, ty)? + 2 * meta_bytes;
    Ok(Step {
        output: lm_name(quant),
        sources,
        action: Action::Gguf,
        out_bytes,
        work_bytes: in_bytes.max(out_bytes),
    })
}

fn seed_steps(b: &mut Builder) -> Result<()> {
    let dir = b.release.join("seed-tokenizer-2");
    if !dir.is_dir() {
        return Ok(());
    }
    for f in small_files(&dir)? {
        b.copy(&f)?;
    }
    for name in ["eva_vit_g.pth", "seed_quantizer.pt"] {
        let p = dir.join(name);
        if !p.is_file() {
            bail!("the release lacks seed-tokenizer-2/{name}");
        }
        b.pickle(&p)?;
    }
    Ok(())
}

fn speech_steps(b: &mut Builder) -> Result<()> {
    let dir = b.release.join("SpeechTokenizer");
    if !dir.is_dir() {
        return Ok(());
    }
    for f in small_files(&dir)? {
        b.copy(&f)?;
    }
    let p = dir.join("SpeechTokenizer.pt");
    if !p.is_file() {
        bail!("the release lacks SpeechTokenizer/SpeechTokenizer.pt");
    }
    b.pickle(&p)
}

/// The components the decoder reads, in their preferred form; the text encoder is replaced
/// by its cached empty-prompt embedding.
fn unclip_steps(b: &mut Builder) -> Result<()> {
    let sd = b.release.join(UNCLIP_DIR);
    if !sd.is_dir() {
        return Ok(());
    }
    let index = sd.join("model_index.json");
    if index.is_file() {
        b.copy(&index)?;
    }
    for sub in ["scheduler", "image_noising_scheduler", "tokenizer"] {
        for f in small_files(&sd.join(sub))? {
            b.copy(&f)?;
        }
    }
    for sub in ["unet", "vae", "image_normalizer"] {
        let dir = sd.join(sub);
        for f in small_files(&dir)? {
            b.copy(&f)?;
        }
        let w = component_weights(&dir)?;
        if w.extension().is_some_and(|e| e == "safetensors") {
            b.copy(&w)?;
        } else {
            b.pickle(&w)?;
        }
    }
    let embeds = format!("{UNCLIP_DIR}/empty_prompt_embeds.safetensors");
    match text_encoder_weights(&sd) {
        Ok(w) => {
            let mut sources = vec![rel(b.release, &w)?];
            for f in small_files(&sd.join("text_encoder"))? {
                sources.push(rel(b.release, &f)?);
            }
            let work = size(&w)?;
            b.push(embeds, sources, Action::PromptEmbeds, 4 << 20, work);
        }
        Err(_) if b.release.join(&embeds).is_file() => b.copy(&b.release.join(&embeds))?,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
