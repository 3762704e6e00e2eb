//! Minimal protobuf decoding of a sentencepiece `tokenizer.model` (`ModelProto` of
//! google/sentencepiece `src/sentencepiece_model.proto`).
//!
//! Only the fields that encoding and decoding need are kept: the pieces (text, score, type),
//! the trainer flags (`model_type`, `byte_fallback`, `treat_whitespace_as_suffix`, the
//! special-piece ids, `unk_surface`, and for information `split_digits`,
//! `allow_whitespace_only_pieces`, `split_by_whitespace`) and the normalizer flags
//! (`add_dummy_prefix`, `remove_extra_whitespaces`, `escape_whitespaces`,
//! `precompiled_charsmap`). Unknown fields are skipped; defaults are the proto defaults.
//! Deviation: no generated code, a hand-written wire-format reader.

/// Type of a sentencepiece piece (`ModelProto.SentencePiece.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// An ordinary piece.
    Normal,
    /// The unknown piece (`<unk>`).
    Unknown,
    /// A control piece (bos, eos): decodes to nothing.
    Control,
    /// A user-defined piece: never split, matched before normalisation.
    UserDefined,
    /// A piece kept in the vocabulary but never produced (re-segmented).
    Unused,
    /// A byte-fallback piece `<0xNN>`.
    Byte,
}

impl PieceType {
    fn from_proto(v: u64) -> Option<Self> {
        Some(match v {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => return None,
        })
    }
}

/// One vocabulary entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The piece text (`▁` stands for a space).
    pub piece: String,
    /// Merge priority (higher merges first for BPE).
    pub score: f32,
    /// What kind of piece it is.
    pub kind: PieceType,
}

/// Model algorithm (`TrainerSpec.ModelType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (the proto default).
    Unigram,
    /// Byte-pair encoding (Yi, MIO).
    Bpe,
    /// Whitespace-delimited words.
    Word,
    /// Characters.
    Char,
}

/// The trainer flags that matter at inference time (plus a few informative ones).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    /// Segmentation algorithm.
    pub model_type: ModelType,
    /// Unknown characters become `<0xNN>` byte pieces.
    pub byte_fallback: bool,
    /// Whitespace is a suffix rather than a prefix of pieces.
    pub treat_whitespace_as_suffix: bool,
    /// Training-time only: digits were split (no multi-digit pieces exist).
    pub split_digits: bool,
    /// Training-time only: pieces made of whitespace alone were allowed.
    pub allow_whitespace_only_pieces: bool,
    /// Training-time only: words were split on whitespace.
    pub split_by_whitespace: bool,
    /// Id of `<unk>`.
    pub unk_id: i32,
    /// Id of bos (-1 if none).
    pub bos_id: i32,
    /// Id of eos (-1 if none).
    pub eos_id: i32,
    /// Id of pad (-1 if none).
    pub pad_id: i32,
    /// Text the `<unk>` piece decodes to.
    pub unk_surface: String,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        Self {
            model_type: ModelType::Unigram,
            byte_fallback: false,
            treat_whitespace_as_suffix: false,
            split_digits: false,
            allow_whitespace_only_pieces: false,
            split_by_whitespace: true,
            unk_id: 0,
            bos_id: 1,
            eos_id: 2,
            pad_id: -1,
            unk_surface: " \u{2047} ".to_string(),
        }
    }
}

/// The normalizer flags (`NormalizerSpec`).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    /// Rule name (informative: `identity`, `nmt_nfkc`, ...).
    pub name: String,
    /// Compiled normalisation rules; empty means identity.
    pub precompiled_charsmap: Vec<u8>,
    /// Prepend `▁` to the input.
    pub add_dummy_prefix: bool,
    /// Drop leading/trailing spaces and collapse runs of spaces.
    pub remove_extra_whitespaces: bool,
    /// Replace ' ' with `▁`.
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The decoded `ModelProto`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelProto {
    /// Vocabulary, id = index.
    pub pieces: Vec<Piece>,
    /// Trainer flags.
    pub trainer: TrainerSpec,
    /// Normalizer flags.
    pub normalizer: NormalizerSpec,
    /// Denormalizer flags, when present.
    pub denormalizer: Option<NormalizerSpec>,
}

/// A protobuf wire-format reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A field value as read from the wire.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    Fixed64,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("truncated field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => return Err(format!("unsupported wire type {w} for field {field}")),
        };
        Ok(Some((field, value)))
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not valid UTF-8"))
}

fn as_i32(v: u64) -> i32 {
    // int32 fields are sign-extended to 64 bits on the wire.
    v as i64 as i32
}

fn parse_piece(buf: &[u8]) -> Result<Piece, String> {
    let mut piece = Piece {
        piece: String::new(),
        score: 0.0,
        kind: PieceType::Normal,
    };
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => piece.piece = utf8(b, "piece")?,
            (2, Value::Fixed32(bits)) => piece.score = f32::from_bits(bits),
            (3, Value::Varint(v)) => {
                piece.kind = PieceType::from_proto(v).ok_or(format!("unknown piece type {v}"))?
            }
            (1..=3, _) => return Err(format!("piece field {field} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(piece)
}

fn parse_trainer(buf: &[u8]) -> Result<TrainerSpec, String> {
    let mut t = TrainerSpec::default();
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (3, Value::Varint(v)) => {
                t.model_type = match v {
                    1 => ModelType::Unigram,
                    2 => ModelType::Bpe,
                    3 => ModelType::Word,
                    4 => ModelType::Char,
                    _ => return Err(format!("unknown model_type {v}")),
                }
            }
            (22, Value::Varint(v)) => t.split_by_whitespace = v != 0,
            (24, Value::Varint(v)) => t.treat_whitespace_as_suffix = v != 0,
            (25, Value::Varint(v)) => t.split_digits = v != 0,
            (26, Value::Varint(v)) => t.allow_whitespace_only_pieces = v != 0,
            (35, Value::Varint(v)) => t.byte_fallback = v != 0,
            (40, Value::Varint(v)) => t.unk_id = as_i32(v),
            (41, Value::Varint(v)) => t.bos_id = as_i32(v),
            (42, Value::Varint(v)) => t.eos_id = as_i32(v),
            (43, Value::Varint(v)) => t.pad_id = as_i32(v),
            (44, Value::Bytes(b)) => t.unk_surface = utf8(b, "unk_surface")?,
            _ => {}
        }
    }
    Ok(t)
}

fn parse_normalizer(buf: &[u8]) -> Result<NormalizerSpec, String> {
    let mut n = NormalizerSpec::default();
    let mut r = Reader::new(buf);
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Value::Bytes(b)) => n.name = utf8(b, "normalizer name")?,
            (2, Value::Bytes(b)) => n.precompiled_charsmap = b.to_vec(),
            (3, Value::Varint(v)) => n.add_dummy_prefix = v != 0,
            (4, Value::Varint(v)) => n.remove_extra_whitespaces = v != 0,
            (5, Value::Varint(v)) => n.escape_whitespaces = v != 0,
            _ => {}
        }
    }
    Ok(n)
}

impl ModelProto {
    /// Decodes a serialized `ModelProto`; the error says what is malformed.
    pub fn parse(buf: &[u8]) -> Result<Self, String> {
        let mut m = ModelProto::default();
        let mut r = Reader::new(buf);
        while let Some((field, value)) = r.next()? {
            match (field, value) {
                (1, Value::Bytes(b)) => m.pieces.push(parse_piece(b)?),
                (2, Value::Bytes(b)) => m.trainer = parse_trainer(b)?,
                (3, Value::Bytes(b)) => m.normalizer = parse_normalizer(b)?,
                (5, Value::Bytes(b)) => m.denormalizer = Some(parse_normalizer(b)?),
                (1..=5, Value::Varint(_) | Value::Fixed32(_) | Value::Fixed64) => {
                    return Err(format!(
                        "field {field} of ModelProto has the wrong wire type"
                    ))
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
        varint(field << 3 | 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    #[test]
    fn parses_hand_built_model() {
        let mut piece = Vec::new();
        bytes_field(1, "▁a".as_bytes(), &mut piece);
        piece.push(2 << 3 | 5);
        piece.extend_from_slice(&(-1.5f32).to_le_bytes());
        varint(3 << 3, &mut piece);
        varint(4, &mut piece);
        let mut trainer = Vec::new();
        varint(3 << 3, &mut trainer);
        varint(2, &mut trainer);
        varint(35 << 3, &mut trainer);
        varint(1, &mut trainer);
        varint(43 << 3, &mut trainer);
        varint(u64::MAX, &mut trainer); // -1 as int32
        let mut norm = Vec::new();
        varint(3 << 3, &mut norm);
        varint(0, &mut norm);
        let mut model = Vec::new();
        bytes_field(1, &piece, &mut model);
        bytes_field(2, &trainer, &mut model);
        bytes_field(3, &norm, &mut model);
        bytes_field(99, b"ignored", &mut model);
        let m = ModelProto::parse(&model).unwrap();
        assert_eq!(
            m.pieces,
            vec![Piece {
                piece: "▁a".into(),
                score: -1.5,
                kind: PieceType::UserDefined
            }]
        );
        assert_eq!(m.trainer.model_type, ModelType::Bpe);
        assert!(m.trainer.byte_fallback);
        assert_eq!(m.trainer.pad_id, -1);
        assert!(!m.normalizer.add_dummy_prefix);
        assert!(m.normalizer.remove_extra_whitespaces);
    }

    #[test]
    fn rejects_truncated_input() {
        let mut model = Vec::new();
        bytes_field(1, b"\x0a\x05abc", &mut model);
        assert!(ModelProto::parse(&model).is_err());
        assert!(ModelProto::parse(&[0x0a, 0x80]).is_err());
        assert!(ModelProto::parse(&[0x0b]).is_err());
    }
}
