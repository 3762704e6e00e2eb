#!/usr/bin/env python3
"""Writes a random-weight MIO release with MIO-7B's exact LM tensor shapes but only N layers,
as float32 `pytorch_model-0000K-of-0000M.bin` zip-pickles without an index, the way the real
release ships (for measuring `mio import`; not run in CI, never commit its output).

    python3 -m venv ~/venvs/imp && ~/venvs/imp/bin/pip install numpy sentencepiece protobuf
    ~/venvs/imp/bin/python scripts/make-random-release.py --layers 2 --out /tmp/rel2

`--format safetensors-f16` writes float16 `model-0000K-of-0000M.safetensors` shards with an
index instead (the layout `mio import` produces; half the bytes, loads without conversion:
for timing the whole 32-layer LM, e.g. on a GPU machine). `--fast` repeats one random block
of 16M values through every matrix instead of drawing each value (the write is then bound by
the disk; for timing only, the values do not matter).

Shapes (DESIGN.md, Yi-6B): hidden 4096, intermediate 11008, 32 heads, 4 KV heads (k/v
rows 512), vocab 64000 text + 6 specials + 8192 image + 4096 speech = 76294, untied
lm_head. The tokenizer is the tiny model's (tests/fixtures/release-layout) widened to that
vocabulary: its sentencepiece model padded with unused pieces to 64000, its added tokens
moved up by 63000. The codec/unCLIP sub-folders are linked from the tiny model (the import
measures the LM; the codecs are small next to it).

The pickles are written without torch: stand-in `torch` modules make the standard pickler
emit exactly torch.save's globals and persistent ids (protocol 2), and the zip is laid out as
torch.save lays it out (`archive/data.pkl`, `archive/byteorder`, `archive/data/<key>`,
`archive/version`, entries stored). Shards are split at ~10 GB like the release.
"""

import argparse
import collections
import json
import os
import pickle
import sys
import types
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "tests", "fixtures", "release-layout")
H, I, HEADS, KV, TEXT = 4096, 11008, 32, 4, 64000
SHIFT = TEXT - 1000  # tiny text vocabulary is 1000
VOCAB = TEXT + 6 + 8192 + 4096

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks):
    raise RuntimeError("stand-in")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
torch.FloatStorage = FloatStorage


class Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce_ex__(self, protocol):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        args = (self.storage, 0, tuple(self.shape), tuple(stride), False,
                collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


def tensors(layers):
    q, kv = H, KV * (H // HEADS)
    out = [("model.embed_tokens.weight", [VOCAB, H])]
    for l in range(layers):
        p = f"model.layers.{l}"
        out += [
            (f"{p}.self_attn.q_proj.weight", [q, H]),
            (f"{p}.self_attn.k_proj.weight", [kv, H]),
            (f"{p}.self_attn.v_proj.weight", [kv, H]),
            (f"{p}.self_attn.o_proj.weight", [H, q]),
            (f"{p}.mlp.gate_proj.weight", [I, H]),
            (f"{p}.mlp.up_proj.weight", [I, H]),
            (f"{p}.mlp.down_proj.weight", [H, I]),
            (f"{p}.input_layernorm.weight", [H]),
            (f"{p}.post_attention_layernorm.weight", [H]),
        ]
    out += [("model.norm.weight", [H]), ("lm_head.weight", [VOCAB, H])]
    return out


def write_shard(path, items, rng):
    state = collections.OrderedDict()
    for key, (name, shape) in enumerate(items):
        state[name] = Tensor(Storage(str(key), int(np.prod(shape))), shape)
    import io
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, (name, shape) in enumerate(items):
            n = int(np.prod(shape))
            with z.open(f"archive/data/{key}", "w", force_zip64=True) as f:
                done = 0
                while done < n:
                    m = min(n - done, 1 << 24)
                    if len(shape) == 1:
                        chunk = np.ones(m, dtype="<f4")
                    else:
                        chunk = (rng.standard_normal(m, dtype=np.float32) * 0.02).astype("<f4")
                    f.write(chunk.tobytes())
                    done += m
        z.writestr("archive/version", "3\n")


def write_safetensors(path, items, rng, fast_block):
    """One float16 safetensors file: 8-byte header length, JSON header, raw data."""
    header, offset = {}, 0
    for name, shape in items:
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for name, shape in items:
            n = int(np.prod(shape))
            done = 0
            while done < n:
                m = min(n - done, 1 << 24)
                if len(shape) == 1:
                    chunk = np.ones(m, dtype="<f2")
                elif fast_block is not None:
                    chunk = fast_block[:m]
                else:
                    chunk = (rng.standard_normal(m, dtype=np.float32) * 0.02).astype("<f2")
                f.write(chunk.tobytes())
                done += m


def shards(items, limit=10 << 30, width=4):
    groups, cur, size = [], [], 0
    for name, shape in items:
        b = width * int(np.prod(shape))
        if cur and size + b > limit:
            groups.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += b
    groups.append(cur)
    return groups


def tokenizer(out):
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    with open(os.path.join(TINY, "tokenizer.model"), "rb") as f:
        m.ParseFromString(f.read())
    for i in range(len(m.pieces), TEXT):
        p = m.pieces.add()
        p.piece, p.score, p.type = f"<unused{i}>", -1e9, pb.ModelProto.SentencePiece.USER_DEFINED
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(m.SerializeToString())
    with open(os.path.join(TINY, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    cfg["added_tokens_decoder"] = {
        str(int(k) + (SHIFT if int(k) >= 1000 else 0)): v
        for k, v in cfg["added_tokens_decoder"].items()
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def config(out, layers):
    with open(os.path.join(TINY, "config.json")) as f:
        cfg = json.load(f)
    for k in ["image_bos_id", "image_eos_id", "image_newline_id", "image_placeholder_id",
              "speech_bos_id", "speech_eos_id", "speech_placeholder_id"]:
        cfg[k] += SHIFT
    cfg.update(hidden_size=H, intermediate_size=I, num_attention_heads=HEADS,
               num_key_value_heads=KV, num_hidden_layers=layers, text_vocab_size=TEXT,
               vocab_size=VOCAB, _name_or_path=f"MIO-7B-shapes-random-{layers}-layers")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["bin", "safetensors-f16"], default="bin")
    ap.add_argument("--fast", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    if a.format == "bin":
        groups = shards(tensors(a.layers))
        for k, items in enumerate(groups, 1):
            path = os.path.join(a.out, f"pytorch_model-{k:05d}-of-{len(groups):05d}.bin")
            write_shard(path, items, rng)
            print(path, os.path.getsize(path) / 2**30, "GiB", flush=True)
    else:
        block = None
        if a.fast:
            block = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02).astype("<f2")
        groups = shards(tensors(a.layers), limit=5 << 30, width=2)
        weight_map = {}
        for k, items in enumerate(groups, 1):
            name = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
            write_safetensors(os.path.join(a.out, name), items, rng, block)
            weight_map.update({t: name for t, _ in items})
            print(name, os.path.getsize(os.path.join(a.out, name)) / 2**30, "GiB", flush=True)
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1)
    config(a.out, a.layers)
    tokenizer(a.out)
    for name in ["generation_config.json", "special_tokens_map.json"]:
        with open(os.path.join(TINY, name)) as src, open(os.path.join(a.out, name), "w") as dst:
            dst.write(src.read())
    for sub in ["SpeechTokenizer", "seed-tokenizer-2", "stable-diffusion-2-1-unclip"]:
        link = os.path.join(a.out, sub)
        if not os.path.exists(link):
            os.symlink(os.path.realpath(os.path.join(TINY, sub)), link)


if __name__ == "__main__":
    main()
