//! [`connect_remote_lm`]: checks on connect that the server serves MIO's LM (vocabulary
//! size, special-token ids, id range) and wraps it as an [`ExternalLm`].

use std::path::Path;

use mio_models::engine::{ExternalLm, RemoteLm as RemoteLmOptions, RemoteLmApi};
use mio_models::lm::Config;
use mio_models::text::TextTokenizer;
use mio_models::{Error, Result};
use serde_json::{json, Value};

use super::client::Client;
use super::lm::RemoteLm;

fn bad(msg: impl Into<String>) -> Error {
    Error::RemoteLm(msg.into())
}

/// Connects to the LM server of `opts`, checks that it serves the LM of the release in
/// `model_dir` (whose `tokenizer` is given), and returns it as an [`ExternalLm`].
pub fn connect_remote_lm(
    opts: &RemoteLmOptions,
    model_dir: &Path,
    tokenizer: &TextTokenizer,
) -> Result<ExternalLm> {
    let client = Client::new(opts)?;
    let vocab = tokenizer.vocab().vocab_size as usize;
    let mut config = Config::from_dir(model_dir).unwrap_or_else(|_| Config::mio_7b());
    config.vocab_size = vocab;
    let models = client.get("/v1/models")?;
    let first = models["data"].get(0).cloned().unwrap_or(Value::Null);
    let model = match &opts.model {
        Some(m) => m.clone(),
        None => first["id"].as_str().unwrap_or_default().to_string(),
    };
    let meta = &first["meta"];
    if let Some(n) = meta["n_vocab"].as_u64() {
        if n as usize != vocab {
            return Err(foreign(&client, &format!("{n} tokens"), vocab));
        }
    }
    let n_ctx = meta["n_ctx"]
        .as_u64()
        .or_else(|| first["max_model_len"].as_u64())
        .map_or(config.max_position_embeddings, |n| n as usize);
    let notes = match client.api() {
        RemoteLmApi::LlamaCpp => {
            check_special_tokens(&client, tokenizer)?;
            vec![]
        }
        RemoteLmApi::OpenAi => {
            vec![
                "the OpenAI API cannot show the server's vocabulary: only its size is checked \
                  (MIO's last token id must be accepted)"
                    .to_string(),
            ]
        }
    };
    let lm = RemoteLm::new(client, model.clone(), vocab, n_ctx);
    if opts.api == RemoteLmApi::OpenAi {
        probe_last_id(&lm, vocab)?;
    }
    Ok(ExternalLm {
        lm: Box::new(lm),
        config,
        source: format!("{} ({model})", opts.url),
        backend: format!("remote-{}", opts.api.name()),
        notes,
    })
}

fn foreign(client: &Client, what: &str, vocab: usize) -> Error {
    bad(format!(
        "{} serves an LM with {what}, not MIO's {vocab}-token vocabulary: start it with the \
         GGUF `mio convert` made from this release",
        client.base()
    ))
}

/// llama-server's `/tokenize` must map MIO's special tokens to MIO's ids.
fn check_special_tokens(client: &Client, tokenizer: &TextTokenizer) -> Result<()> {
    let v = tokenizer.vocab();
    let ids = [
        v.im_start,
        v.im_end,
        v.image_start,
        v.image_end,
        v.speech_start,
        v.speech_end,
    ];
    let text: String = ids
        .iter()
        .filter_map(|&id| tokenizer.id_to_token(id))
        .collect();
    let body = json!({"content": text, "add_special": false, "parse_special": true});
    let got = client.post("/tokenize", &body)?;
    let got: Vec<u64> = got["tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let want: Vec<u64> = ids.iter().map(|&i| u64::from(i)).collect();
    if got != want {
        return Err(foreign(
            client,
            &format!("other special tokens ({text} → {got:?}, MIO has {want:?})"),
            v.vocab_size as usize,
        ));
    }
    Ok(())
}

/// One step on MIO's last token id: a server with a smaller vocabulary refuses it.
fn probe_last_id(lm: &RemoteLm, vocab: usize) -> Result<()> {
    let last = vocab.saturating_sub(1) as u32;
    lm.probe(&[1, last]).map_err(|e| {
        bad(format!(
            "the server refused MIO's last token id {last} ({e}): it does not serve MIO's LM"
        ))
    })
}
