//! A sentencepiece BPE processor (google/sentencepiece `SentencePieceProcessor`:
//! `normalizer.cc`, `model_interface.cc`, `bpe_model.cc`, `Encode` / `Decode` of
//! `sentencepiece_processor.cc`) over a `tokenizer.model` read by [`super::sp_proto`].
//!
//! Encode = normalise (identity rules; `escape_whitespaces`, `add_dummy_prefix`,
//! `remove_extra_whitespaces` honoured) → BPE ([`super::sp_bpe`]) → unknown pieces become
//! `<0xNN>` byte pieces (byte fallback) or are merged. Decode of pieces = control pieces
//! vanish, `▁` → space, runs of byte pieces are decoded as UTF-8 with one U+FFFD per invalid
//! byte. Deviations: only BPE models and identity normalisation (empty
//! `precompiled_charsmap`) are supported; anything else is refused at load.

use std::collections::HashMap;
use std::path::Path;

use super::sp_proto::{ModelProto, ModelType, PieceType};
use crate::{Error, Result};

/// The whitespace symbol of sentencepiece (U+2581).
pub const SPACE_SYMBOL: &str = "\u{2581}";

/// A loaded sentencepiece BPE model.
#[derive(Debug, Clone)]
pub struct SentencePieceModel {
    proto: ModelProto,
    /// NORMAL, USER_DEFINED and UNUSED pieces (the ones BPE may produce).
    pieces: HashMap<String, u32>,
    /// CONTROL, UNKNOWN and BYTE pieces.
    reserved: HashMap<String, u32>,
    unk_id: u32,
    /// User-defined pieces, grouped by first char, longest first.
    user_defined: HashMap<char, Vec<String>>,
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::TokenizerFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

impl SentencePieceModel {
    /// Reads `tokenizer.model`.
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile(path.to_path_buf()));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::TokenizerFile { message, .. } => invalid(path, message),
            other => other,
        })
    }

    /// Parses a serialized model; errors name the file as `tokenizer.model`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let path = Path::new("tokenizer.model");
        let proto = ModelProto::parse(bytes)
            .map_err(|m| invalid(path, format!("not a sentencepiece model ({m})")))?;
        Self::from_proto(proto).map_err(|m| invalid(path, m))
    }

    fn from_proto(proto: ModelProto) -> std::result::Result<Self, String> {
        if proto.pieces.is_empty() {
            return Err("not a sentencepiece model (no pieces)".into());
        }
        if proto.trainer.model_type != ModelType::Bpe {
            return Err(format!(
                "model type {:?} is not supported (only BPE)",
                proto.trainer.model_type
            ));
        }
        if !proto.normalizer.precompiled_charsmap.is_empty() {
            return Err(format!(
                "normalizer '{}' is not supported (only identity)",
                proto.normalizer.name
            ));
        }
        if proto
            .denormalizer
            .as_ref()
            .is_some_and(|d| !d.precompiled_charsmap.is_empty())
        {
            return Err("a denormalizer is not supported".into());
        }
        let mut pieces = HashMap::new();
        let mut reserved = HashMap::new();
        let mut unk_id = None;
        let mut user_defined: HashMap<char, Vec<String>> = HashMap::new();
        let mut bytes_found = [false; 256];
        for (i, p) in proto.pieces.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| "too many pieces")?;
            let Some(first) = p.piece.chars().next() else {
                return Err(format!("piece {id} is empty"));
            };
            let normal = matches!(
                p.kind,
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            );
            let map = if normal { &mut pieces } else { &mut reserved };
            if map.insert(p.piece.clone(), id).is_some() {
                return Err(format!("piece {:?} is defined twice", p.piece));
            }
            match p.kind {
                PieceType::UserDefined => {
                    user_defined.entry(first).or_default().push(p.piece.clone())
                }
                PieceType::Unknown if unk_id.is_some() => return Err("two unknown pieces".into()),
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Byte => {
                    if !proto.trainer.byte_fallback {
                        return Err(format!("byte piece {} without byte_fallback", p.piece));
                    }
                    let b =
                        piece_to_byte(&p.piece).ok_or(format!("invalid byte piece {}", p.piece))?;
                    bytes_found[usize::from(b)] = true;
                }
                _ => {}
            }
        }
        let unk_id = unk_id.ok_or("no unknown piece")?;
        if proto.trainer.byte_fallback && bytes_found.iter().any(|f| !f) {
            return Err("byte_fallback is set but not all 256 byte pieces exist".into());
        }
        for list in user_defined.values_mut() {
            list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        Ok(Self {
            proto,
            pieces,
            reserved,
            unk_id,
            user_defined,
        })
    }

    /// The decoded model file.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// Number of pieces (the text vocabulary size).
    pub fn len(&self) -> usize {
        self.proto.pieces.len()
    }

    /// Whether the model has no pieces (never true for a loaded model).
    pub fn is_empty(&self) -> bool {
        self.proto.pieces.is_empty()
    }

    /// Id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// The piece of `id`.
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.proto.pieces.get(id as usize).map(|p| p.piece.as_str())
    }

    /// `PieceToId`: reserved pieces first, then ordinary ones, else the unknown id.
    pub fn piece_to_id(&self, piece: &str) -> u32 {
        self.reserved
            .get(piece)
            .or_else(|| self.pieces.get(piece))
            .copied()
            .unwrap_or(self.unk_id)
    }

    /// Id of an ordinary (NORMAL / USER_DEFINED / UNUSED) piece.
    pub(crate) fn normal_piece_id(&self, piece: &str) -> Option<u32> {
        self.pieces.get(piece).copied()
    }

    fn kind(&self, id: u32) -> Option<PieceType> {
        self.proto.pieces.get(id as usize).map(|p| p.kind)
    }

    pub(crate) fn score(&self, id: u32) -> f32 {
        self.proto.pieces.get(id as usize).map_or(0.0, |p| p.score)
    }

    pub(crate) fn is_unused(&self, id: u32) -> bool {
        self.kind(id) == Some(PieceType::Unused)
    }

    /// Whether `id` is a byte-fallback piece.
    pub fn is_byte(&self, id: u32) -> bool {
        self.kind(id) == Some(PieceType::Byte)
    }

    /// Whether `id` is a control piece (bos, eos).
    pub fn is_control(&self, id: u32) -> bool {
        self.kind(id) == Some(PieceType::Control)
    }

    /// Byte length of the longest user-defined piece starting `s`, or of its first char,
    /// and whether a user-defined piece matched (`PrefixMatcher::PrefixMatch`).
    pub(crate) fn prefix_match(&self, s: &str) -> (usize, bool) {
        let first = s.chars().next();
        if let Some(list) = first.and_then(|c| self.user_defined.get(&c)) {
            if let Some(p) = list.iter().find(|p| s.starts_with(p.as_str())) {
                return (p.len(), true);
            }
        }
        (first.map_or(0, char::len_utf8), false)
    }

    /// `Normalizer::Normalize` with identity rules.
    pub fn normalize(&self, input: &str) -> String {
        let spec = &self.proto.normalizer;
        let mut input = input;
        if spec.remove_extra_whitespaces {
            while input.starts_with(' ') && !self.prefix_match(input).1 {
                input = &input[1..];
            }
        }
        if input.is_empty() {
            return String::new();
        }
        let ws = if spec.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        let suffix = self.proto.trainer.treat_whitespace_as_suffix;
        let mut out = String::with_capacity(input.len() * 3);
        if !suffix && spec.add_dummy_prefix {
            out.push_str(ws);
        }
        let mut is_prev_space = spec.remove_extra_whitespaces;
        while !input.is_empty() {
            let (len, _) = self.prefix_match(input);
            let mut unit = &input[..len];
            while is_prev_space && unit.starts_with(' ') {
                unit = &unit[1..];
            }
            if !unit.is_empty() {
                for ch in unit.chars() {
                    match ch {
                        ' ' if spec.escape_whitespaces => out.push_str(SPACE_SYMBOL),
                        c => out.push(c),
                    }
                }
                is_prev_space = unit.ends_with(' ');
            }
            input = &input[len..];
            if !spec.remove_extra_whitespaces {
                is_prev_space = false;
            }
        }
        if spec.remove_extra_whitespaces {
            while out.ends_with(ws) {
                out.truncate(out.len() - ws.len());
            }
        }
        if suffix && spec.add_dummy_prefix {
            out.push_str(ws);
        }
        out
    }

    /// `SentencePieceProcessor::Encode`: `(piece, id)` of `text`.
    pub fn encode(&self, text: &str) -> Vec<(String, u32)> {
        let normalized = self.normalize(text);
        let byte_fallback = self.proto.trainer.byte_fallback;
        let mut out: Vec<(String, u32)> = Vec::new();
        let mut prev_unk = false;
        for (w, id) in super::sp_bpe::encode(self, &normalized) {
            let is_unk = self.kind(id) == Some(PieceType::Unknown);
            if is_unk && byte_fallback {
                for b in w.bytes() {
                    let piece = byte_to_piece(b);
                    let id = self.piece_to_id(&piece);
                    out.push((piece, id));
                }
            } else if is_unk && prev_unk {
                if let Some(last) = out.last_mut() {
                    last.0.push_str(w);
                }
            } else {
                out.push((w.to_string(), id));
            }
            prev_unk = is_unk;
        }
        out
    }

    /// `DecodeSentencePiece`: the text of one non-byte piece, and whether a leading
    /// whitespace was consumed.
    fn decode_piece(&self, piece: &str, id: u32, is_bos_ws: bool) -> (String, bool) {
        match self.kind(id) {
            Some(PieceType::Control) => return (String::new(), false),
            Some(PieceType::Unknown) => {
                let surface = if self.id_to_piece(id) == Some(piece) {
                    &self.proto.trainer.unk_surface
                } else {
                    piece
                };
                return (surface.to_string(), false);
            }
            _ => {}
        }
        let spec = &self.proto.normalizer;
        let mut piece = piece;
        let mut has_bos_ws = false;
        if is_bos_ws && (spec.add_dummy_prefix || spec.remove_extra_whitespaces) {
            if let Some(rest) = piece.strip_prefix(SPACE_SYMBOL) {
                piece = rest;
                has_bos_ws = !spec.remove_extra_whitespaces;
            }
        }
        (piece.replace(SPACE_SYMBOL, " "), has_bos_ws)
    }

    /// `SentencePieceProcessor::DecodePieces`.
    pub fn decode_pieces<S: AsRef<str>>(&self, pieces: &[S]) -> String {
        let mut out = String::new();
        let mut dec = PieceDecoder::default();
        for p in pieces {
            dec.push(self, p.as_ref(), &mut out);
        }
        dec.finish(&mut out);
        out
    }
}

/// Incremental `DecodePieces`: text is appended as soon as it is final; a trailing
/// incomplete UTF-8 sequence of byte pieces waits for more bytes or [`PieceDecoder::finish`].
#[derive(Debug, Clone)]
pub struct PieceDecoder {
    bytes: Vec<u8>,
    is_bos_ws: bool,
    bos_ws_seen: bool,
    produced: bool,
}

impl Default for PieceDecoder {
    fn default() -> Self {
        Self {
            bytes: Vec::new(),
            is_bos_ws: true,
            bos_ws_seen: false,
            produced: false,
        }
    }
}

impl PieceDecoder {
    /// Decodes one more piece (given as text, looked up with `PieceToId`).
    pub fn push(&mut self, model: &SentencePieceModel, piece: &str, out: &mut String) {
        let id = model.piece_to_id(piece);
        if model.is_byte(id) {
            if let Some(b) = piece_to_byte(piece) {
                self.bytes.push(b);
            }
            self.drain(false, out);
            return;
        }
        self.drain(true, out);
        if self.bos_ws_seen || self.produced {
            self.is_bos_ws = false;
        }
        let (text, seen) = model.decode_piece(piece, id, self.is_bos_ws);
        self.bos_ws_seen = seen;
        self.append(&text, out);
    }

    /// Flushes pending bytes (incomplete sequences become U+FFFD, one per byte).
    pub fn finish(&mut self, out: &mut String) {
        self.drain(true, out);
    }

    /// Whether bytes are waiting for the rest of a UTF-8 sequence.
    pub fn has_pending(&self) -> bool {
        !self.bytes.is_empty()
    }

    fn append(&mut self, text: &str, out: &mut String) {
        if !text.is_empty() {
            self.produced = true;
            out.push_str(text);
        }
    }

    fn drain(&mut self, all: bool, out: &mut String) {
        let mut off = 0;
        let mut text = String::new();
        while off < self.bytes.len() {
            let rest = &self.bytes[off..];
            if !all && rest.len() < utf8_needed(rest[0]) {
                break;
            }
            match decode_utf8(rest) {
                Some((c, n)) => {
                    text.push(c);
                    off += n;
                }
                None => {
                    text.push('\u{FFFD}');
                    off += 1;
                }
            }
        }
        self.bytes.drain(..off);
        self.append(&text, out);
    }
}

/// Bytes the UTF-8 sequence led by `b` needs before sentencepiece can judge it.
fn utf8_needed(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// `string_util::DecodeUTF8`: the char at the start of `b` and its length, or `None`
/// when the first byte does not start a valid sequence.
fn decode_utf8(b: &[u8]) -> Option<(char, usize)> {
    let n = utf8_needed(b[0]);
    if b[0] >= 0x80 && n == 1 {
        return None;
    }
    let seq = b.get(..n)?;
    std::str::from_utf8(seq)
        .ok()
        .and_then(|s| s.chars().next())
        .map(|c| (c, n))
}

/// `<0xNN>` of a byte.
pub fn byte_to_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// The byte of a `<0xNN>` piece (upper-case hex, as sentencepiece writes them).
pub fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || hex.chars().any(|c| c.is_ascii_lowercase()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn byte_pieces_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(piece_to_byte(&byte_to_piece(b)), Some(b));
        }
        assert_eq!(piece_to_byte("<0xa9>"), None);
        assert_eq!(piece_to_byte("<0x123>"), None);
    }

    #[test]
    fn utf8_judgement_matches_sentencepiece() {
        assert_eq!(decode_utf8(&[0x41]), Some(('A', 1)));
        assert_eq!(decode_utf8(&[0xC3, 0xA9]), Some(('é', 2)));
        assert_eq!(decode_utf8(&[0xC0, 0x80]), None); // overlong
        assert_eq!(decode_utf8(&[0xED, 0xA0, 0x80]), None); // surrogate
        assert_eq!(decode_utf8(&[0xE6, 0x97]), None); // truncated
        assert_eq!(decode_utf8(&[0x80]), None);
        assert_eq!(decode_utf8(&[0xF0, 0x9F, 0x99, 0x82]), Some(('🙂', 4)));
    }
}
