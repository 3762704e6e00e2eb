# Usage: python fuzz_detokenize.py MODEL_DIR N SEED PATH/TO/tokenize_jsonl (see fuzz_text_tokenizer.py).
# Compares the Rust detokenizer with the string-level logic of the reference
# MIOTokenizer.detokenize (tokenization_mio.py), media decoding left out.
import json, random, re, subprocess, sys
from transformers import LlamaTokenizer
model_dir, n, seed, exe = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(seed)
tok = LlamaTokenizer.from_pretrained(model_dir)
def ref(ids, extract):
    seq = tok.batch_decode([ids], skip_special_tokens=False)[0]
    if extract:
        seq = seq.split("<|im_start|>assistant\n")[-1].replace("<|im_end|>", "").replace("<unk>", "").strip()
    text = seq
    imgs = re.findall(r"(<image>\s*(?:<img\d+>(?:\s*<img\d+>)*)\s*</image>)", text)
    for i, p in enumerate(imgs): text = text.replace(p, f"<image_placeholder_{i}>", 1)
    sps = re.findall(r"(<spch>\s*(?:<spch\d+>(?:\s*<spch\d+>)*)\s*</spch>)", text)
    for i, p in enumerate(sps): text = text.replace(p, f"<speech_placeholder_{i}>", 1)
    return {"text": text, "images": imgs, "speech": sps}
prompt = tok("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
def text_ids():
    k = rng.choice([0, 1, 2, 5])
    pool = [lambda: rng.randrange(3, 1000), lambda: rng.choice([903, 922, 265, 18]), lambda: rng.randrange(9, 265), lambda: rng.choice([6, 7]), lambda: rng.choice([0, 1, 2])]
    return [rng.choice(pool)() for _ in range(k)]
def ws():
    return rng.choice([[], [], [], [903], [922], [265, 922]])
def block():
    if rng.random() < 0.5:
        out = [1005]
        for _ in range(32): out += [1006 + rng.randrange(8192)] + ws()
        return out + [1004]
    t = rng.randrange(1, 5); out = [1003]
    for k in range(4):
        for _ in range(t): out += [9198 + 1024 * k + rng.randrange(1024)] + ws()
    return out + [1001]
cases = []
for i in range(n):
    ids = list(prompt) if rng.random() < 0.5 else []
    for _ in range(rng.randrange(0, 6)):
        ids += text_ids() + (block() if rng.random() < 0.6 else [])
    if rng.random() < 0.3: ids += [7, 0, 0]
    cases.append({"detok": ids, "extract": rng.random() < 0.5})
inp = "".join(json.dumps(c) + "\n" for c in cases)
res = subprocess.run([exe, model_dir], input=inp.encode(), capture_output=True)
if res.returncode: print(res.stderr.decode()); sys.exit(1)
outs = [json.loads(l) for l in res.stdout.decode().split("\n") if l]
bad = skipped = 0
for c, o in zip(cases, outs):
    if o["warnings"]:
        skipped += 1; continue
    exp = ref(c["detok"], c["extract"])
    o = {k: o[k] for k in ("text", "images", "speech")}
    # The reference's regex keeps the decode's own whitespace inside blocks; ours is canonical.
    canon = lambda s: re.sub(r"\s+", " ", s)
    exp["images"] = [canon(s) for s in exp["images"]]; exp["speech"] = [canon(s) for s in exp["speech"]]
    if exp != o:
        bad += 1
        if bad <= 5: print("MISMATCH", c); print("  py:", json.dumps(exp)[:600]); print("  rs:", json.dumps(o)[:600])
print(f"{len(cases)} cases, {skipped} with warnings skipped, {bad} mismatches")
