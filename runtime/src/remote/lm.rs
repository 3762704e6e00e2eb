//! [`RemoteLm`]: an LM behind a llama-server or OpenAI-completions URL as a [`CausalLm`]
//! (see the module docs of `remote` for the design and what is exact).
//!
//! Rows are kept here as plain token lists (left padding dropped: the server positions a
//! row from 0, which is what the attention-mask position ids give locally). `reorder` only
//! permutes those lists; the server's prompt cache finds each row's prefix again.

use mio_models::engine::RemoteLmApi;
use mio_models::generation::CausalLm;
use mio_models::{Error, Result};
use serde_json::{json, Value};

use super::client::Client;

/// Top log-probabilities asked for per step: llama-server takes any count; vLLM's default
/// `--max-logprobs` is 20.
pub(crate) fn top_k_for(api: RemoteLmApi) -> usize {
    match api {
        RemoteLmApi::LlamaCpp => 64,
        RemoteLmApi::OpenAi => 20,
    }
}

/// A MIO LM served over HTTP.
pub struct RemoteLm {
    client: Client,
    model: String,
    n_vocab: usize,
    n_ctx: usize,
    top_k: usize,
    rows: Vec<Vec<u32>>,
    allowed: Option<Vec<Option<Vec<bool>>>>,
}

/// One step's answer: the top tokens with their log-probabilities, best first.
type Top = Vec<(u32, f32)>;

fn bad(msg: impl Into<String>) -> Error {
    Error::RemoteLm(msg.into())
}

impl RemoteLm {
    /// An LM on `client` with `n_vocab` tokens and `n_ctx` positions; `model` is the name
    /// sent on the OpenAI API.
    pub fn new(client: Client, model: String, n_vocab: usize, n_ctx: usize) -> Self {
        let top_k = top_k_for(client.api()).min(n_vocab);
        RemoteLm {
            client,
            model,
            n_vocab,
            n_ctx,
            top_k,
            rows: Vec::new(),
            allowed: None,
        }
    }

    /// The server's top tokens after `ids`; with `ban`, those tokens are excluded from the
    /// server's own (greedy) pick, which is returned first.
    fn step(&self, ids: &[u32], ban: Option<&[u32]>) -> Result<(Option<(u32, f32)>, Top)> {
        match self.client.api() {
            RemoteLmApi::LlamaCpp => self.step_llamacpp(ids, ban),
            RemoteLmApi::OpenAi => self.step_openai(ids, ban),
        }
    }

    fn step_llamacpp(&self, ids: &[u32], ban: Option<&[u32]>) -> Result<(Option<(u32, f32)>, Top)> {
        let mut body = json!({
            "prompt": ids, "n_predict": 1, "n_probs": self.top_k, "temperature": 0.0,
            "cache_prompt": true, "stream": false, "return_tokens": true,
            "post_sampling_probs": false,
        });
        if let Some(ban) = ban {
            body["logit_bias"] = json!(ban.iter().map(|&t| json!([t, false])).collect::<Vec<_>>());
        }
        let v = self.client.post("/completion", &body)?;
        llamacpp_step(&v, ids.len())
    }

    fn step_openai(&self, ids: &[u32], ban: Option<&[u32]>) -> Result<(Option<(u32, f32)>, Top)> {
        let mut body = json!({
            "model": self.model, "prompt": ids, "max_tokens": 1, "logprobs": self.top_k,
            "temperature": 0.0, "stream": false, "return_tokens_as_token_ids": true,
            "skip_special_tokens": false,
        });
        if let Some(ban) = ban {
            let map: serde_json::Map<String, Value> =
                ban.iter().map(|t| (t.to_string(), json!(-100))).collect();
            body["logit_bias"] = Value::Object(map);
        }
        let v = self.client.post("/v1/completions", &body)?;
        let lp = &v["choices"][0]["logprobs"];
        if let Some(content) = lp["content"].get(0) {
            // llama-server's OpenAI answer: ids included.
            let picked = content["id"].as_u64().zip(content["logprob"].as_f64());
            let top = parse_id_list(&content["top_logprobs"])?;
            return Ok((picked.map(|(i, l)| (i as u32, l as f32)), top));
        }
        // The OpenAI legacy shape (vLLM with `return_tokens_as_token_ids`): "token_id:N".
        let top_map = lp["top_logprobs"][0].as_object().ok_or_else(|| {
            bad("the completions answer has no logprobs (does the server accept `logprobs`?)")
        })?;
        let mut top = Vec::with_capacity(top_map.len());
        for (tok, l) in top_map {
            let id = token_id(tok)?;
            top.push((id, l.as_f64().unwrap_or(f64::NEG_INFINITY) as f32));
        }
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let picked = match (lp["tokens"][0].as_str(), lp["token_logprobs"][0].as_f64()) {
            (Some(t), Some(l)) => Some((token_id(t)?, l as f32)),
            _ => None,
        };
        Ok((picked, top))
    }

    /// One step after `ids` (a connection check).
    pub(crate) fn probe(&self, ids: &[u32]) -> Result<()> {
        let (_, top) = self.step(ids, None)?;
        filled(&top, self.n_vocab).map(|_| ())
    }

    /// The logit row of one sequence (see the module docs).
    fn row_logits(&self, ids: &[u32], allowed: Option<&[bool]>) -> Result<Vec<f32>> {
        let (_, top) = self.step(ids, None)?;
        if top.is_empty() {
            return Err(bad("the server returned no log-probabilities"));
        }
        let mut row = filled(&top, self.n_vocab)?;
        let Some(mask) = allowed else { return Ok(row) };
        if top
            .iter()
            .any(|(id, _)| mask.get(*id as usize).copied().unwrap_or(false))
        {
            return Ok(row);
        }
        let ban: Vec<u32> = (0..self.n_vocab as u32)
            .filter(|&t| !mask.get(t as usize).copied().unwrap_or(false))
            .collect();
        let (picked, _) = self.step(ids, Some(&ban))?;
        let (id, lp) = picked.ok_or_else(|| bad("the server returned no token"))?;
        if !mask.get(id as usize).copied().unwrap_or(false) {
            return Err(bad(format!(
                "the server ignored logit_bias: it picked the forbidden token {id}"
            )));
        }
        let floor = row.iter().copied().fold(f32::INFINITY, f32::min);
        let lowest_top = top.iter().map(|t| t.1).fold(f32::INFINITY, f32::min);
        row[id as usize] = if lp.is_finite() && lp > floor && lp <= lowest_top {
            lp
        } else {
            floor + (lowest_top - floor).max(1e-3) * 0.5
        };
        Ok(row)
    }
}

/// One `/completion` answer of llama-server: the picked token and the top list. A token
/// that is an incomplete UTF-8 sequence (a byte-fallback token) comes back without
/// probabilities (the server holds back text and probabilities until the character is
/// complete); then only the pick is known, and it is returned alone (exact for greedy; beam
/// and sampling see no alternatives at that step).
fn llamacpp_step(v: &Value, prompt_len: usize) -> Result<(Option<(u32, f32)>, Top)> {
    let Some(probs) = v["completion_probabilities"].get(0) else {
        if let Some(id) = v["tokens"].get(0).and_then(Value::as_u64) {
            let id = id as u32;
            return Ok((Some((id, 0.0)), vec![(id, 0.0)]));
        }
        let mut answer = v.to_string();
        answer.truncate(300);
        return Err(bad(format!(
            "the llama-server answer to a {prompt_len}-token prompt has neither probabilities nor a token: {answer}"
        )));
    };
    let picked = match (probs["id"].as_u64(), probs["logprob"].as_f64()) {
        (Some(id), Some(lp)) => Some((id as u32, lp as f32)),
        _ => None,
    };
    let top = parse_id_list(&probs["top_logprobs"])?;
    Ok((picked, top))
}

/// `[{id, logprob}, …]`, best first.
fn parse_id_list(v: &Value) -> Result<Top> {
    let list = v
        .as_array()
        .ok_or_else(|| bad("the answer has no top_logprobs list"))?;
    let mut top = Vec::with_capacity(list.len());
    for e in list {
        let id = e["id"]
            .as_u64()
            .ok_or_else(|| bad("a top_logprobs entry has no id"))?;
        let lp = e["logprob"].as_f64().unwrap_or(f64::NEG_INFINITY);
        top.push((id as u32, lp as f32));
    }
    Ok(top)
}

/// The id in vLLM's `token_id:N` token strings.
fn token_id(tok: &str) -> Result<u32> {
    tok.strip_prefix("token_id:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            bad(format!(
                "the server returned the token {tok:?} as text: it must return ids \
                 (vLLM: `return_tokens_as_token_ids`)"
            ))
        })
}

/// A vocabulary-wide row: `top`'s log-probabilities, every other token the even share of
/// the remaining probability mass (always below the lowest top value).
fn filled(top: &Top, n_vocab: usize) -> Result<Vec<f32>> {
    let rest = n_vocab.saturating_sub(top.len());
    let mass: f64 = top.iter().map(|t| f64::from(t.1).exp()).sum();
    let lowest = top.iter().map(|t| t.1).fold(f32::INFINITY, f32::min);
    let share = ((1.0 - mass).max(1e-30) / rest.max(1) as f64).ln() as f32;
    let mut row = vec![share.min(lowest - 1e-3).min(-1e-3); n_vocab];
    for &(id, lp) in top {
        let slot = row.get_mut(id as usize).ok_or_else(|| {
            bad(format!(
                "the server returned token {id}, outside MIO's {n_vocab}-token vocabulary"
            ))
        })?;
        *slot = lp;
    }
    Ok(row)
}

impl CausalLm for RemoteLm {
    fn vocab_size(&self) -> usize {
        self.n_vocab
    }

    fn max_context(&self) -> usize {
        self.n_ctx
    }

    fn reset(&mut self) {
        self.rows.clear();
        self.allowed = None;
    }

    fn forward(
        &mut self,
        tokens: &[Vec<u32>],
        attention_mask: &[Vec<u8>],
    ) -> Result<Vec<Vec<f32>>> {
        if self.rows.is_empty() {
            self.rows = vec![Vec::new(); tokens.len()];
        }
        if tokens.len() != self.rows.len() || attention_mask.len() != tokens.len() {
            return Err(Error::Generation(format!(
                "{} token rows and {} masks for {} cached rows",
                tokens.len(),
                attention_mask.len(),
                self.rows.len()
            )));
        }
        for ((row, new), mask) in self.rows.iter_mut().zip(tokens).zip(attention_mask) {
            let new_mask = &mask[mask.len().saturating_sub(new.len())..];
            row.extend(
                new.iter()
                    .zip(new_mask)
                    .filter(|(_, m)| **m != 0)
                    .map(|(t, _)| *t),
            );
        }
        let allowed = self.allowed.take();
        let mut out = Vec::with_capacity(self.rows.len());
        for (r, ids) in self.rows.iter().enumerate() {
            let mask = allowed
                .as_ref()
                .and_then(|a| a.get(r))
                .and_then(Option::as_deref);
            out.push(self.row_logits(ids, mask)?);
        }
        Ok(out)
    }

    fn reorder(&mut self, rows: &[usize]) -> Result<()> {
        let mut next = Vec::with_capacity(rows.len());
        for &r in rows {
            let row = self.rows.get(r).ok_or_else(|| {
                Error::Generation(format!("reorder to row {r} of {}", self.rows.len()))
            })?;
            next.push(row.clone());
        }
        self.rows = next;
        Ok(())
    }

    fn wants_allowed(&self) -> bool {
        true
    }

    fn set_allowed(&mut self, allowed: Vec<Option<Vec<bool>>>) {
        self.allowed = Some(allowed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filled_row_keeps_top_and_normalises() {
        let top = vec![(2, -0.5f32), (0, -1.5)];
        let row = filled(&top, 5).unwrap();
        assert_eq!(row[2], -0.5);
        assert_eq!(row[0], -1.5);
        let total: f64 = row.iter().map(|l| f64::from(*l).exp()).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(row[1] < -1.5);
        assert!(filled(&vec![(9, -0.1)], 5).is_err());
    }

    #[test]
    fn a_byte_fallback_token_without_probabilities_is_the_pick_alone() {
        // What llama-server answers for a token that is half a UTF-8 character.
        let v = json!({"content": "\u{fffd}", "tokens": [231], "completion_probabilities": []});
        assert_eq!(
            llamacpp_step(&v, 9).unwrap(),
            (Some((231, 0.0)), vec![(231, 0.0)])
        );
        let v = json!({"content": "a", "tokens": [97],
            "completion_probabilities": [{"id": 97, "logprob": -0.2,
                "top_logprobs": [{"id": 97, "logprob": -0.2}, {"id": 5, "logprob": -2.0}]}]});
        assert_eq!(
            llamacpp_step(&v, 9).unwrap(),
            (Some((97, -0.2)), vec![(97, -0.2), (5, -2.0)])
        );
        let e = llamacpp_step(&json!({"content": ""}), 9).unwrap_err();
        assert!(e.to_string().contains("9-token prompt"), "{e}");
    }

    #[test]
    fn token_ids_from_vllm_strings() {
        assert_eq!(token_id("token_id:42").unwrap(), 42);
        assert!(token_id("hello").is_err());
    }
}
