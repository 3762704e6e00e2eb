# Fuzzes the Rust text tokenizer (models/examples/tokenize_jsonl.rs) against the reference slow
# LlamaTokenizer of transformers 4.34.0 (pip install transformers==4.34.0 sentencepiece protobuf).
# Usage: python fuzz_text_tokenizer.py MODEL_DIR N SEED PATH/TO/tokenize_jsonl
# Not used by the test suite (tests never need Python); kept to re-check parity.
import json, random, subprocess, sys
from transformers import LlamaTokenizer
model_dir = sys.argv[1]; n = int(sys.argv[2]); seed = int(sys.argv[3])
rng = random.Random(seed)
tok = LlamaTokenizer.from_pretrained(model_dir)
atoms = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}<>|/\\-_+=*&^%$#@~`") \
  + [" ", "  ", "   ", "\t", "\n", "\n\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\xa0", "\u3000", "\u2028", "\u2581", "\u2581\u2581"] \
  + ["é", "ï", "日本語", "🙂", "🇫🇷", "e\u0301", "ß", "Ω", "—", "…", "’", "“", "\u200b", "\ufeff", "\x00", "\x7f", "\U0010ffff", "\ufffd"] \
  + ["<image>", "</image>", "<img0>", "<img12>", "<img8191>", "<img1>", "<img10>", "<spch>", "</spch>", "<spch5>", "<spch4095>",
     "[IMG]", "[SPCH]", "<|startoftext|>", "<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>", "<|im_sep|>", "<|Human|>",
     "<im", "<img", "<spch", "<|", "|>", "<0x41>", "the", " the", " and", "Hello", " world", "picture", " description", "user\n", "assistant\n"]
def rand_text():
    k = rng.choice([0, 1, 2, 3, 5, 8, 13, 30])
    return "".join(rng.choice(atoms) for _ in range(k))
V = len(tok)
def rand_ids():
    k = rng.choice([0, 1, 2, 3, 5, 8, 20])
    pools = [lambda: rng.randrange(0, 9), lambda: rng.randrange(9, 265), lambda: rng.randrange(265, 1000),
             lambda: rng.randrange(1000, 1006), lambda: rng.randrange(1006, V), lambda: rng.choice([0, 1, 2, 6, 7, 903, 922])]
    ids = [rng.choice(pools)() for _ in range(k)]
    if rng.random() < 0.02: ids.append(V + rng.randrange(0, 5))
    return ids
cases = []
for i in range(n):
    if i % 3 == 2:
        cases.append({"ids": rand_ids()})
    else:
        cases.append({"text": rand_text()})
inp = "".join(json.dumps(c) + "\n" for c in cases)
res = subprocess.run([sys.argv[4], model_dir], input=inp.encode(), capture_output=True)
if res.returncode != 0:
    print(res.stderr.decode()); sys.exit(1)
outs = [json.loads(l) for l in res.stdout.decode().split("\n") if l]
bad = 0
for c, o in zip(cases, outs):
    if "text" in c:
        t = c["text"]
        exp = {"tokens": tok.tokenize(t), "ids": tok(t)["input_ids"]}
        exp["decoded"] = tok.decode(exp["ids"])
    else:
        try:
            exp = {"decoded": tok.decode(c["ids"])}
        except Exception as e:
            exp = {"error": True}
        if "error" in o: o = {"error": True}
    if exp != o:
        bad += 1
        if bad <= 8:
            print("MISMATCH", json.dumps(c, ensure_ascii=False)); print("  py:", json.dumps(exp, ensure_ascii=False)); print("  rs:", json.dumps(o, ensure_ascii=False))
print(f"{len(cases)} cases, {bad} mismatches")
