//! Text side of MIO: the sentencepiece tokenizer (slow LlamaTokenizer semantics), MIO's
//! token format (special ids, chat template, media blocks) and the output detokenizer.

mod added;
mod block;
pub(crate) mod decode;
mod pystr;
mod sentencepiece;
mod sp_bpe;
mod sp_proto;
mod tokenizer;
mod trie;
mod vocab;

pub use added::{AddedToken, SpecialTokens};
pub use block::BlockError;
pub use sentencepiece::{
    byte_to_piece, piece_to_byte, PieceDecoder, SentencePieceModel, SPACE_SYMBOL,
};
pub use sp_proto::{ModelProto, ModelType, NormalizerSpec, Piece, PieceType, TrainerSpec};
pub use tokenizer::TextTokenizer;
pub use vocab::{MioVocab, SPEECH_LAYERS};
