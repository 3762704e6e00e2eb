//! Which files of a MIO repo a download needs.
//!
//! The release's `stable-diffusion-2-1-unclip/` carries each component's weights up to four
//! times (`.safetensors`, `.bin`, and `fp16` variants of both) plus a CLIP image encoder that
//! MIO never runs (it hands the decoder image embeddings directly). Only the variant our
//! loaders pick (`mio_models::image_decoder::component_weights`, and the text encoder's
//! order: full precision first, safetensors before `.bin`) is kept, which saves several GB;
//! `--all-files` keeps everything. Repo metadata (`.gitattributes`, `README.md`) is skipped.

use std::collections::HashMap;

use super::api::RepoFile;

/// Weight-file stems that come in variants (diffusers and transformers names).
const STEMS: [&str; 3] = ["diffusion_pytorch_model", "model", "pytorch_model"];

/// Folders inside the repo that MIO never reads.
const UNUSED_DIRS: [&str; 1] = ["stable-diffusion-2-1-unclip/image_encoder/"];

/// Rank of a weight variant (lower is preferred), or None when `name` is not one.
fn variant_rank(name: &str) -> Option<u8> {
    let (stem, ext) = name.rsplit_once('.')?;
    let ext_rank = match ext {
        "safetensors" => 0,
        "bin" => 1,
        _ => return None,
    };
    let (stem, fp16) = match stem.strip_suffix(".fp16") {
        Some(s) => (s, 2),
        None => (stem, 0),
    };
    STEMS.contains(&stem).then_some(fp16 + ext_rank)
}

/// Splits `files` into (kept, skipped) as the module header says.
pub fn select(files: Vec<RepoFile>, all_files: bool) -> (Vec<RepoFile>, Vec<RepoFile>) {
    if all_files {
        return (files, vec![]);
    }
    // Best variant per folder (only inside sub-folders: the LM shards at the root are
    // `pytorch_model-0000N-of-0000M.bin` and never variants of each other).
    let mut best: HashMap<&str, (u8, &str)> = HashMap::new();
    for f in &files {
        let Some((dir, name)) = f.path.rsplit_once('/') else {
            continue;
        };
        if let Some(rank) = variant_rank(name) {
            let e = best.entry(dir).or_insert((rank, &f.path));
            if rank < e.0 {
                *e = (rank, &f.path);
            }
        }
    }
    let keep: Vec<bool> = files
        .iter()
        .map(|f| {
            let meta = matches!(f.path.as_str(), ".gitattributes" | "README.md");
            let unused = UNUSED_DIRS.iter().any(|d| f.path.starts_with(d));
            let variant_lost = f.path.rsplit_once('/').is_some_and(|(dir, name)| {
                variant_rank(name).is_some() && best.get(dir).is_some_and(|b| b.1 != f.path)
            });
            !(meta || unused || variant_lost)
        })
        .collect();
    let mut kept = vec![];
    let mut skipped = vec![];
    for (f, k) in files.into_iter().zip(keep) {
        if k {
            kept.push(f);
        } else {
            skipped.push(f);
        }
    }
    (kept, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str) -> RepoFile {
        RepoFile {
            path: path.into(),
            size: 1,
            git_oid: String::new(),
            sha256: None,
        }
    }

    #[test]
    fn keeps_the_variant_the_loaders_read() {
        let names = [
            ".gitattributes",
            "config.json",
            "pytorch_model-00001-of-00006.bin",
            "pytorch_model-00002-of-00006.bin",
            "seed-tokenizer-2/seed_quantizer.pt",
            "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.fp16.safetensors",
            "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.bin",
            "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.safetensors",
            "stable-diffusion-2-1-unclip/unet/config.json",
            "stable-diffusion-2-1-unclip/vae/diffusion_pytorch_model.fp16.bin",
            "stable-diffusion-2-1-unclip/vae/diffusion_pytorch_model.bin",
            "stable-diffusion-2-1-unclip/text_encoder/model.fp16.safetensors",
            "stable-diffusion-2-1-unclip/text_encoder/pytorch_model.bin",
            "stable-diffusion-2-1-unclip/image_encoder/model.safetensors",
        ];
        let (kept, skipped) = select(names.iter().map(|n| f(n)).collect(), false);
        let kept: Vec<&str> = kept.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            kept,
            [
                "config.json",
                "pytorch_model-00001-of-00006.bin",
                "pytorch_model-00002-of-00006.bin",
                "seed-tokenizer-2/seed_quantizer.pt",
                "stable-diffusion-2-1-unclip/unet/diffusion_pytorch_model.safetensors",
                "stable-diffusion-2-1-unclip/unet/config.json",
                "stable-diffusion-2-1-unclip/vae/diffusion_pytorch_model.bin",
                "stable-diffusion-2-1-unclip/text_encoder/pytorch_model.bin",
            ]
        );
        assert_eq!(skipped.len(), 6);
        let (all, none) = select(names.iter().map(|n| f(n)).collect(), true);
        assert_eq!((all.len(), none.len()), (names.len(), 0));
    }
}
