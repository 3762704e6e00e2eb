//! Added and special tokens of a slow `LlamaTokenizer`, read from `tokenizer_config.json`,
//! `added_tokens.json` and `special_tokens_map.json` as transformers 4.34
//! `PreTrainedTokenizerBase._from_pretrained` / `PreTrainedTokenizer._add_tokens` do.
//!
//! * `tokenizer_config.json` → `added_tokens_decoder` present: it is the source of truth
//!   (flags as written); otherwise `added_tokens.json` (`{content: id}`) with
//!   `lstrip = rstrip = true` (4.34's legacy default for slow tokenizers).
//! * bos / eos / unk / pad: the config value, else `special_tokens_map.json` (the map wins in
//!   the legacy case); given as plain strings they get `lstrip = rstrip = false`
//!   (`LlamaTokenizer.__init__`).
//! * Every special token must exist (as an added token or a sentencepiece piece).
//!
//! Deviation: when both added-token sources exist they must agree (checked), and the
//! additional special tokens of `special_tokens_map.json` are merged in either case.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::sentencepiece::SentencePieceModel;
use crate::{Error, Result};

/// One added token with the flags that shape tokenization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    /// The token text.
    pub content: String,
    /// Its id.
    pub id: u32,
    /// Eats the whitespace on its left.
    pub lstrip: bool,
    /// Eats the whitespace on its right.
    pub rstrip: bool,
    /// Only matches whole words.
    pub single_word: bool,
    /// A special token.
    pub special: bool,
}

/// The special-token strings of the tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos: String,
    /// `eos_token`.
    pub eos: String,
    /// `unk_token`.
    pub unk: String,
    /// `pad_token`, if any.
    pub pad: Option<String>,
    /// `additional_special_tokens`.
    pub additional: Vec<String>,
}

impl SpecialTokens {
    /// `all_special_tokens`: bos, eos, unk, pad, then the additional ones, without repeats.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let named = [
            Some(&self.bos),
            Some(&self.eos),
            Some(&self.unk),
            self.pad.as_ref(),
        ];
        for t in named.into_iter().flatten().chain(self.additional.iter()) {
            if !all.contains(t) {
                all.push(t.clone());
            }
        }
        all
    }
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Json {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::TokenizerFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A token given as `"text"` or `{"content": "text", "lstrip": .., ...}`; flags are
/// `None` for a plain string.
fn token_spec(v: &Value) -> Option<(String, Option<&serde_json::Map<String, Value>>)> {
    match v {
        Value::String(s) => Some((s.clone(), None)),
        Value::Object(o) => o
            .get("content")
            .and_then(Value::as_str)
            .map(|s| (s.to_string(), Some(o))),
        _ => None,
    }
}

fn flag(o: &serde_json::Map<String, Value>, key: &str) -> bool {
    o.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn from_decoder(path: &Path, decoder: &serde_json::Map<String, Value>) -> Result<Vec<AddedToken>> {
    let mut out = Vec::with_capacity(decoder.len());
    for (key, v) in decoder {
        let id = key
            .parse::<u32>()
            .map_err(|_| bad(path, format!("added token id {key:?} is not a number")))?;
        let Some((content, Some(o))) = token_spec(v) else {
            return Err(bad(
                path,
                format!("added token {id} is not an object with a content"),
            ));
        };
        let (lstrip, rstrip) = (flag(o, "lstrip"), flag(o, "rstrip"));
        let (single_word, special) = (flag(o, "single_word"), flag(o, "special"));
        out.push(AddedToken {
            content,
            id,
            lstrip,
            rstrip,
            single_word,
            special,
        });
    }
    Ok(out)
}

fn from_added_json(path: &Path, v: &Value) -> Result<Vec<AddedToken>> {
    let map = v
        .as_object()
        .ok_or_else(|| bad(path, "expected an object {token: id}"))?;
    let mut out = Vec::with_capacity(map.len());
    for (content, id) in map {
        let id = id
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| bad(path, format!("id of {content:?} is not a token id")))?;
        let content = content.clone();
        out.push(AddedToken {
            content,
            id,
            lstrip: true,
            rstrip: true,
            single_word: false,
            special: false,
        });
    }
    Ok(out)
}

/// Checks that `added_tokens.json` agrees with `added_tokens_decoder`.
fn check_agree(path: &Path, decoder: &[AddedToken], legacy: &[AddedToken]) -> Result<()> {
    let by_content: HashMap<&str, u32> =
        decoder.iter().map(|t| (t.content.as_str(), t.id)).collect();
    for t in legacy {
        if by_content.get(t.content.as_str()) != Some(&t.id) {
            return Err(bad(
                path,
                format!(
                    "{:?} = {} disagrees with tokenizer_config.json",
                    t.content, t.id
                ),
            ));
        }
    }
    Ok(())
}

/// The raw tokenizer files of a model folder.
struct Files {
    config: Value,
    special_map: Value,
    /// `added_tokens_decoder` was present (non-legacy save).
    modern: bool,
    added: Vec<AddedToken>,
}

fn read_files(dir: &Path) -> Result<Files> {
    let config_path = dir.join("tokenizer_config.json");
    let config = read_json(&config_path)?.ok_or_else(|| Error::MissingFile(config_path.clone()))?;
    let special_map = read_json(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
    let added_path = dir.join("added_tokens.json");
    let legacy = match read_json(&added_path)? {
        Some(v) => Some(from_added_json(&added_path, &v)?),
        None => None,
    };
    let (modern, added) = match config.get("added_tokens_decoder") {
        Some(Value::Object(decoder)) => {
            let added = from_decoder(&config_path, decoder)?;
            if let Some(legacy) = &legacy {
                check_agree(&added_path, &added, legacy)?;
            }
            (true, added)
        }
        Some(_) => return Err(bad(&config_path, "added_tokens_decoder is not an object")),
        None => (false, legacy.unwrap_or_default()),
    };
    Ok(Files {
        config,
        special_map,
        modern,
        added,
    })
}

/// bos/eos/unk/pad: `(content, flags)`, the config first unless a legacy save.
fn named_special<'a>(
    f: &'a Files,
    key: &str,
) -> Option<(String, Option<&'a serde_json::Map<String, Value>>)> {
    let cfg = f.config.get(key).and_then(token_spec);
    let map = f.special_map.get(key).and_then(token_spec);
    if f.modern {
        cfg.or(map)
    } else {
        map.or(cfg)
    }
}

/// The special tokens, and the `(content, lstrip, rstrip)` that `LlamaTokenizer.__init__`
/// imposes on bos / eos / unk / pad (false for plain strings, the given flags for objects).
fn specials(f: &Files) -> (SpecialTokens, Vec<(String, bool, bool)>) {
    let mut forced: Vec<(String, bool, bool)> = Vec::new();
    let mut named = |key: &str, default: Option<&str>| -> Option<String> {
        let (content, flags) =
            named_special(f, key).or_else(|| default.map(|d| (d.to_string(), None)))?;
        let (l, r) = flags.map_or((false, false), |o| (flag(o, "lstrip"), flag(o, "rstrip")));
        forced.push((content.clone(), l, r));
        Some(content)
    };
    let unk = named("unk_token", Some("<unk>")).unwrap_or_default();
    let bos = named("bos_token", Some("<s>")).unwrap_or_default();
    let eos = named("eos_token", Some("</s>")).unwrap_or_default();
    let pad = named("pad_token", None);
    let mut additional: Vec<String> = Vec::new();
    let lists = [
        f.config.get("additional_special_tokens"),
        f.special_map.get("additional_special_tokens"),
    ];
    let listed = lists
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(token_spec);
    let mut decoder_special: Vec<&AddedToken> =
        f.added.iter().filter(|t| f.modern && t.special).collect();
    decoder_special.sort_by_key(|t| t.id);
    let from_decoder = decoder_special.into_iter().map(|t| t.content.clone());
    for content in listed.map(|(c, _)| c).chain(from_decoder) {
        if !additional.contains(&content) {
            additional.push(content);
        }
    }
    (
        SpecialTokens {
            bos,
            eos,
            unk,
            pad,
            additional,
        },
        forced,
    )
}

/// Reads the added and special tokens of `dir`; special tokens missing from the added
/// tokens are registered at their sentencepiece id (as `_add_tokens` does).
pub fn load(dir: &Path, sp: &SentencePieceModel) -> Result<(Vec<AddedToken>, SpecialTokens)> {
    let mut files = read_files(dir)?;
    let (special, strip) = specials(&files);
    let mut by_content: HashMap<String, usize> = HashMap::new();
    for (i, t) in files.added.iter().enumerate() {
        if by_content.insert(t.content.clone(), i).is_some() {
            return Err(Error::Tokenizer(format!(
                "added token {:?} is defined twice",
                t.content
            )));
        }
    }
    let all = special.all();
    for content in &all {
        let index = match by_content.get(content) {
            Some(&i) => i,
            None => {
                let id = sp.piece_to_id(content);
                if sp.id_to_piece(id) != Some(content.as_str()) {
                    return Err(Error::Tokenizer(format!(
                        "special token {content:?} is not in the vocabulary"
                    )));
                }
                let t = AddedToken {
                    content: content.clone(),
                    id,
                    lstrip: true,
                    rstrip: true,
                    single_word: false,
                    special: true,
                };
                files.added.push(t);
                by_content.insert(content.clone(), files.added.len() - 1);
                files.added.len() - 1
            }
        };
        let token = &mut files.added[index];
        token.special = true;
        // bos / eos / unk / pad are re-added by `_add_tokens` with the init's flags; the
        // last mention wins.
        if let Some((_, l, r)) = strip.iter().rev().find(|(c, _, _)| c == content) {
            token.lstrip = *l;
            token.rstrip = *r;
        }
    }
    files.added.sort_by_key(|t| t.id);
    if let Some(w) = files.added.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(Error::Tokenizer(format!(
            "tokens {:?} and {:?} share id {}",
            w[0].content, w[1].content, w[0].id
        )));
    }
    Ok((files.added, special))
}
