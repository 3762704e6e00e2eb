//! Text side of MIO: the sentencepiece tokenizer (slow LlamaTokenizer semantics), MIO's
//! token format (special ids, chat template, media blocks) and the output detokenizer.

mod added;
mod block;
pub(crate) mod block_parser;
pub(crate) mod decode;
mod detokenize;
mod gguf_vocab;
mod media;
mod pystr;
mod sentencepiece;
mod sp_bpe;
mod sp_proto;
mod template;
mod tokenizer;
mod trie;
mod vocab;

pub use added::{AddedToken, SpecialTokens};
pub use block::BlockError;
pub use detokenize::{BlockKind, DetokEvent, Detokenized, Segment};
pub use gguf_vocab::gguf_tokenizer_metadata;
pub use media::{image_block, image_block_ids, speech_block, speech_block_ids};
pub use sentencepiece::{
    byte_to_piece, piece_to_byte, PieceDecoder, SentencePieceModel, SPACE_SYMBOL,
};
pub use sp_proto::{ModelProto, ModelType, NormalizerSpec, Piece, PieceType, TrainerSpec};
pub use template::{
    render_chat, resolve_placeholders, ChatMode, Conversation, Message, PaddedBatch, Role,
    ASSISTANT_STARTER, MIO_STD_MODE_SYSTEM, MIO_VOICE_MODE_SYSTEM, STOP_WORD, USER_STARTER,
};
pub use tokenizer::TextTokenizer;
#[cfg(test)]
pub(crate) use vocab::tiny_vocab;
pub use vocab::{MioVocab, SPEECH_LAYERS};
