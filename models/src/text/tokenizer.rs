//! The MIO text tokenizer: transformers 4.34 **slow** `LlamaTokenizer` (`legacy=True`,
//! `add_bos_token=False`, `add_eos_token=False`) as `MIOTokenizer.tokenizer` uses it.
//!
//! Encode (`PreTrainedTokenizer.tokenize`): the text is cut on the added tokens by a trie
//! (earliest, then longest match); an added token with `rstrip` / `lstrip` eats the
//! whitespace (Python `str.isspace`) of its right / left neighbour chunk; the other chunks go
//! through sentencepiece BPE ([`SentencePieceModel::encode`]) without any prefix handling
//! (legacy mode). Tokens map to ids through the added tokens first, then sentencepiece.
//! Decode: see [`super::decode`]. No BOS is added: callers prepend the `<|startoftext|>`
//! string themselves, as the reference does.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::added::{self, AddedToken, SpecialTokens};
use super::decode::DecodeStream;
use super::pystr::{py_lstrip, py_rstrip};
use super::sentencepiece::SentencePieceModel;
use super::trie::Trie;
use super::vocab::MioVocab;
use crate::{Error, Result};

/// Text tokenizer of a MIO model folder.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    sp: SentencePieceModel,
    added: HashMap<u32, AddedToken>,
    added_ids: HashMap<String, u32>,
    trie: Trie,
    special: SpecialTokens,
    all_special: HashSet<String>,
    legacy_added: HashSet<String>,
    vocab: MioVocab,
}

impl TextTokenizer {
    /// Loads `tokenizer.model`, `tokenizer_config.json`, `special_tokens_map.json` and (when
    /// present) `added_tokens.json` from a model folder, and checks the MIO vocabulary layout.
    pub fn load(dir: &Path) -> Result<Self> {
        let sp = SentencePieceModel::load(&dir.join("tokenizer.model"))?;
        let (added, special) = added::load(dir, &sp)?;
        Self::from_parts(sp, added, special)
    }

    /// Builds the tokenizer from an already loaded sentencepiece model and added tokens.
    pub fn from_parts(
        sp: SentencePieceModel,
        added: Vec<AddedToken>,
        special: SpecialTokens,
    ) -> Result<Self> {
        let text_vocab =
            u32::try_from(sp.len()).map_err(|_| Error::Tokenizer("vocabulary too large".into()))?;
        let mut trie = Trie::default();
        let mut added_ids = HashMap::new();
        let mut by_id = HashMap::new();
        for t in added {
            trie.add(&t.content);
            added_ids.insert(t.content.clone(), t.id);
            by_id.insert(t.id, t);
        }
        let all_special: HashSet<String> = special.all().into_iter().collect();
        // `_decode`: added tokens that are not special, plus additional specials above the
        // sentencepiece vocabulary.
        let legacy_added: HashSet<String> = by_id
            .values()
            .filter(|t| {
                !all_special.contains(&t.content)
                    || (special.additional.contains(&t.content) && t.id >= text_vocab)
            })
            .map(|t| t.content.clone())
            .collect();
        let max_added = by_id.keys().copied().max().map_or(0, |m| m + 1);
        let vocab_size = text_vocab.max(max_added);
        let lookup = |t: &str| {
            added_ids
                .get(t)
                .copied()
                .or_else(|| Some(sp.piece_to_id(t)).filter(|id| sp.id_to_piece(*id) == Some(t)))
        };
        let vocab = MioVocab::from_lookup(text_vocab, vocab_size, lookup)?;
        Ok(Self {
            sp,
            added: by_id,
            added_ids,
            trie,
            special,
            all_special,
            legacy_added,
            vocab,
        })
    }

    /// MIO's special and media token ids.
    pub fn vocab(&self) -> &MioVocab {
        &self.vocab
    }

    /// Size of the whole vocabulary (text + added tokens).
    pub fn vocab_size(&self) -> usize {
        self.vocab.vocab_size as usize
    }

    /// The sentencepiece model.
    pub fn sentencepiece(&self) -> &SentencePieceModel {
        &self.sp
    }

    /// The special-token strings (bos, eos, unk, pad, additional).
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The `bos_token` string (`<|startoftext|>`).
    pub fn bos_token(&self) -> &str {
        &self.special.bos
    }

    /// Id used for left padding (`pad_token`, else `unk_token`).
    pub fn pad_id(&self) -> u32 {
        let pad = self.special.pad.as_deref().unwrap_or(&self.special.unk);
        self.token_to_id(pad).unwrap_or(self.vocab.unk)
    }

    /// The added token with id `id`.
    pub fn added_token(&self, id: u32) -> Option<&AddedToken> {
        self.added.get(&id)
    }

    /// The token text of `id` (added token or sentencepiece piece).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self.added.get(&id) {
            Some(t) => Some(&t.content),
            None => self.sp.id_to_piece(id),
        }
    }

    pub(crate) fn id_to_token_checked(&self, id: u32) -> Result<&str> {
        self.id_to_token(id).ok_or(Error::UnknownTokenId {
            id,
            vocab_size: self.vocab_size(),
        })
    }

    /// The id of a token text, if it is an added token or a sentencepiece piece.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_ids.get(token).copied().or_else(|| {
            let id = self.sp.piece_to_id(token);
            (self.sp.id_to_piece(id) == Some(token)).then_some(id)
        })
    }

    /// `_convert_token_to_id_with_added_voc`: unknown strings map to `<unk>`.
    fn convert_token(&self, token: &str) -> u32 {
        self.added_ids
            .get(token)
            .copied()
            .unwrap_or_else(|| self.sp.piece_to_id(token))
    }

    pub(crate) fn is_legacy_added(&self, token: &str) -> bool {
        self.legacy_added.contains(token)
    }

    pub(crate) fn is_special(&self, token: &str) -> bool {
        self.all_special.contains(token)
    }

    /// `tokenizer.tokenize(text)`: the token strings.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut chunks = self.trie.split(text);
        self.strip_around_added(&mut chunks);
        let mut out = Vec::new();
        for chunk in chunks {
            if chunk.is_empty() {
                continue;
            }
            if self.added_ids.contains_key(&chunk) {
                out.push(chunk);
            } else {
                out.extend(self.sp.encode(&chunk).into_iter().map(|(piece, _)| piece));
            }
        }
        out
    }

    /// `tokenizer(text).input_ids`: ids without BOS.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokens(text)
            .iter()
            .map(|t| self.convert_token(t))
            .collect())
    }

    /// `tokenizer.decode(ids)` (spaces between added tokens, no clean-up); an id outside the
    /// vocabulary is an [`Error::UnknownTokenId`].
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut stream = DecodeStream::default();
        for &id in ids {
            stream.push(self, id)?;
        }
        stream.finish();
        Ok(stream.text())
    }

    /// The whitespace eating and `single_word` rules of `PreTrainedTokenizer.tokenize`.
    fn strip_around_added(&self, chunks: &mut [String]) {
        for i in 0..chunks.len() {
            let Some(t) = self
                .added_ids
                .get(&chunks[i])
                .and_then(|id| self.added.get(id))
            else {
                continue;
            };
            let token = chunks[i].clone();
            let left = i
                .checked_sub(1)
                .map(|j| chunks[j].clone())
                .filter(|s| !s.is_empty());
            let right = chunks.get(i + 1).cloned().filter(|s| !s.is_empty());
            if let (true, Some(r)) = (t.rstrip, &right) {
                chunks[i + 1] = py_lstrip(r).to_string();
            }
            if let (true, Some(l)) = (t.lstrip, &left) {
                chunks[i - 1] = py_rstrip(l).to_string();
            }
            if t.single_word && left.as_ref().is_some_and(|l| !l.ends_with(' ')) {
                chunks[i - 1].push_str(&token);
                chunks[i].clear();
            } else if t.single_word && right.as_ref().is_some_and(|r| !r.starts_with(' ')) {
                chunks[i + 1] = format!("{token}{}", chunks[i + 1]);
                chunks[i].clear();
            }
        }
    }
}
