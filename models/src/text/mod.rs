//! Text side of MIO: the sentencepiece tokenizer (slow LlamaTokenizer semantics), MIO's
//! token format (special ids, chat template, media blocks) and the output detokenizer.

mod block;
mod vocab;

pub use block::BlockError;
pub use vocab::MioVocab;
