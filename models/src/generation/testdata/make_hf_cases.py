"""Expected outputs of transformers 4.34 `generate` on a fake LM, for the unit tests of
`models/src/generation/` (read by `hf_cases_tests.rs`; the tests themselves need no Python).

The fake LM's logits are a pure function of the row's real tokens (attention mask 1),
identical to `hf_logits` in `hf_cases_tests.rs`. No KV cache: every step sees the whole row.

Run (transformers==4.34.0, torch==2.1.2):
    python make_hf_cases.py > hf_cases.json
"""
import json

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast


def fake_logits(real, vocab, salt, boost):
    a = real[-1] if real else 0
    b = real[-2] if len(real) > 1 else 0
    n = len(real)
    out = []
    for t in range(vocab):
        x = a * 2654435761 + b * 40503 + n * 97 + t * 7919 + salt * 1000003
        h = (x ^ (x >> 13)) % 97
        v = h * 0.25 + t * 0.001
        if t in boost and n % 4 == 0:
            v += 3.0
        out.append(v)
    return out


class FakeConfig(PretrainedConfig):
    model_type = "fake"

    def __init__(self, vocab=50, salt=0, boost=(), **kw):
        super().__init__(**kw)
        self.vocab = vocab
        self.salt = salt
        self.boost = list(boost)


class FakeModel(PreTrainedModel):
    config_class = FakeConfig

    def __init__(self, config):
        super().__init__(config)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kw):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids, attention_mask=None, **kw):
        c = self.config
        rows = []
        for r in range(input_ids.shape[0]):
            ids = input_ids[r].tolist()
            mask = attention_mask[r].tolist()
            real = [t for t, m in zip(ids, mask) if m == 1]
            rows.append(fake_logits(real, c.vocab, c.salt, c.boost))
        logits = torch.tensor(rows, dtype=torch.float32)[:, None, :]
        return CausalLMOutputWithPast(logits=logits)


CASES = [
    ("greedy", 50, 1, [5], [[3, 8, 11]], dict(num_beams=1, eos_token_id=[5], max_new_tokens=12)),
    ("greedy_batch_rep", 50, 2, [5], [[3, 8, 11], [7, 1, 4, 9, 12, 2]],
     dict(num_beams=1, eos_token_id=[5], max_new_tokens=12, repetition_penalty=1.3)),
    ("beam3", 50, 3, [5], [[3, 8, 11]], dict(num_beams=3, eos_token_id=[5], max_new_tokens=10)),
    ("beam4_batch_two_eos", 60, 4, [5, 9], [[3, 8, 11], [7, 1, 4, 9, 12, 2]],
     dict(num_beams=4, eos_token_id=[5, 9], max_new_tokens=10, repetition_penalty=1.15,
          length_penalty=0.7)),
    ("beam3_early_true", 50, 5, [5], [[13, 2, 2, 40]],
     dict(num_beams=3, eos_token_id=[5], max_new_tokens=12, early_stopping=True, length_penalty=1.5)),
    ("beam3_never", 50, 6, [5], [[13, 2, 2, 40]],
     dict(num_beams=3, eos_token_id=[5], max_new_tokens=12, early_stopping="never", length_penalty=1.5)),
    ("beam5_batch3", 40, 7, [5], [[1, 2], [9, 9, 9, 9, 9], [30]],
     dict(num_beams=5, eos_token_id=[5], max_new_tokens=15, repetition_penalty=2.0)),
    ("beam2_negative_lp", 30, 8, [5], [[4, 6, 8]],
     dict(num_beams=2, eos_token_id=[5], max_new_tokens=8, length_penalty=-0.5)),
    # Sampling: only the warped scores of the first step are compared (torch's RNG is not
    # reproduced), so one new token.
    ("sample_warpers", 50, 9, [5], [[3, 8, 11, 3]],
     dict(num_beams=1, do_sample=True, eos_token_id=[5], max_new_tokens=1, temperature=2.5, top_k=20,
          top_p=0.9, repetition_penalty=1.2)),
    ("beam_sample_warpers", 50, 10, [5], [[3, 8, 11, 3]],
     dict(num_beams=3, do_sample=True, eos_token_id=[5], max_new_tokens=1, temperature=3.0, top_k=0,
          top_p=0.9)),
]


def main():
    out = []
    for name, vocab, salt, boost, prompts, kwargs in CASES:
        model = FakeModel(FakeConfig(vocab=vocab, salt=salt, boost=boost)).eval()
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        torch.manual_seed(0)
        kwargs = dict(kwargs)
        kwargs.setdefault("do_sample", False)
        res = model.generate(input_ids=ids, attention_mask=mask, pad_token_id=0, output_scores=True,
                             return_dict_in_generate=True, **kwargs)
        case = dict(name=name, vocab=vocab, salt=salt, boost=boost, prompts=prompts,
                    kwargs=kwargs, sequences=res.sequences.tolist(), sampled=kwargs["do_sample"])
        if getattr(res, "sequences_scores", None) is not None:
            case["sequences_scores"] = res.sequences_scores.tolist()
        # JSON has no infinities: filtered tokens (-inf) are written as null.
        case["scores_step0_row0"] = [None if x == float("-inf") else x for x in res.scores[0][0].tolist()]
        out.append(case)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
