//! Remote LM engines: the LM runs behind a URL (`mio --lm-url URL --lm-api llamacpp|openai`)
//! while the tokenizer, the image and speech codecs and the generation loop stay local.
//!
//! Design: [`RemoteLm`] implements [`mio_models::generation::CausalLm`], so greedy search,
//! sampling, beam search, the modality constraints, stop sequences, streaming and cancel
//! are the same code as with the in-process backends. Each decoding step is one request
//! per row: the row's token ids (never text) with one new token to predict and the
//! server's top-`k` log-probabilities (`n_probs` on llama-server, `logprobs` on the OpenAI
//! API); the server's prompt cache (`cache_prompt`, vLLM's prefix caching) keeps the prefix
//! from being recomputed. The answer becomes a logit row: exact log-probabilities for the
//! top `k`, the remaining probability mass spread evenly over the other tokens (so the row's
//! log-soft-max is the identity on the top `k`, as beam search needs). When the modality
//! constraints allow none of the top `k`, one more request bans the forbidden tokens with
//! `logit_bias` and takes the server's greedy pick: the best allowed token, exactly.
//!
//! What is exact: greedy ids; beam search while each beam's best 2×beams candidates are in
//! the top `k`; sampling with `top_k` ≤ `k` or a `top_p` nucleus inside the top `k`.
//! What differs: the repetition penalty of greedy/sampling acts on log-probabilities, not
//! logits (beam search penalises log-probabilities in the reference too); inside a media
//! block whose allowed tokens are all outside the top `k` only the best allowed token is
//! scored. One request per token costs a round trip per token (see the README figures).

mod client;
mod connect;
mod lm;

pub use client::Client;
pub use connect::connect_remote_lm;
pub use lm::RemoteLm;
