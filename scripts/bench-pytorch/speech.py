#!/usr/bin/env python3
"""SpeechTokenizer at the real size, PyTorch side of `mio bench speech` (issue 3.7).

    python speech.py write --out DIR      # random seeded weights -> DIR/SpeechTokenizer/
    python speech.py bench --model DIR --threads 2 --seconds 10 --json FILE

`write` builds the `speechtokenizer` package's model (PyPI) with the real hyper-parameters
(n_filters 64, dimension 1024, strides 8*5*4*2, 2 BiLSTM layers, 8 codebooks of 1024),
seeded random weights (codebooks drawn from encoder outputs so that codes spread), and
saves `config.json` + `SpeechTokenizer.pt` (a state dict, weight-norm `weight_g/weight_v`
like the release) into DIR/SpeechTokenizer, and links the tiny LM beside it.

`bench` loads that folder back, encodes a deterministic clip (the same formula as
`mio bench speech`) and decodes its 4-layer codes (what MIO decodes), best of --repeat
after a warm-up; writes timings, peak RSS and the codes / a subsampled waveform, which
`mio bench speech --pytorch FILE` compares with ours.
"""

import importlib.util
import json
import math
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def import_speechtokenizer():
    # The package __init__ also imports its trainer (torchaudio); the model needs none of it.
    spec = importlib.util.find_spec("speechtokenizer")
    pkg = types.ModuleType("speechtokenizer")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["speechtokenizer"] = pkg
    from speechtokenizer.model import SpeechTokenizer

    return SpeechTokenizer


CONFIG = {
    "resblock": "1", "num_gpus": 1, "batch_size": 60, "learning_rate": 0.0001,
    "adam_b1": 0.5, "adam_b2": 0.9, "lr_decay": 0.98, "seed": 1234, "lambda_distill": 0.15,
    "n_filters": 64, "strides": [8, 5, 4, 2], "dimension": 1024, "semantic_dimension": 768,
    "bidirectional": True, "dilation_base": 2, "residual_kernel_size": 3,
    "n_residual_layers": 1, "lstm_layers": 2, "activation": "ELU", "segment_size": 48000,
    "num_mels": 80, "num_freq": 1025, "n_fft": 1024, "hop_size": 240, "win_size": 1024,
    "sampling_rate": 16000, "sample_rate": 16000, "codebook_size": 1024, "n_q": 8,
    "fmin": 0, "fmax": 8000, "fmax_for_loss": None, "num_workers": 12,
}


def clip(seconds, rate=16000):
    """Deterministic test clip, float32 (same formula as runtime/src/bench/speech.rs)."""
    n = int(seconds * rate)
    t = torch.arange(n, dtype=torch.float64) / rate
    x = 0.4 * torch.sin(2 * math.pi * 220.0 * t) + 0.2 * torch.sin(2 * math.pi * 1330.0 * t)
    x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 0.5 * t))
    return x.to(torch.float32).view(1, 1, n)


def write(args):
    SpeechTokenizer = import_speechtokenizer()
    torch.manual_seed(args.seed)
    model = SpeechTokenizer(CONFIG).eval()
    with torch.no_grad():
        # Codebooks: encoder outputs of the clip (plus noise), per layer on the residual.
        e = model.encoder(clip(4.0)).transpose(1, 2).reshape(-1, CONFIG["dimension"])
        for layer in model.quantizer.vq.layers:
            cb = layer._codebook
            idx = torch.randint(0, e.shape[0], (cb.embed.shape[0],))
            cb.embed.copy_(e[idx] + 0.05 * e.std() * torch.randn_like(cb.embed))
            cb.inited.fill_(1)
            e = e - cb.embed[torch.cdist(e, cb.embed).argmin(-1)]
    d = os.path.join(args.out, "SpeechTokenizer")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=4)
    torch.save(model.state_dict(), os.path.join(d, "SpeechTokenizer.pt"))
    common.link_tiny_lm(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {d} ({n / 1e6:.1f} M parameters)")


def bench(args):
    SpeechTokenizer = import_speechtokenizer()
    common.set_threads(args.threads)
    dev = common.set_device(args.device)
    d = os.path.join(args.model, "SpeechTokenizer")
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model = SpeechTokenizer(cfg).eval()
    sd = torch.load(os.path.join(d, "SpeechTokenizer.pt"), map_location="cpu", mmap=True)
    model.load_state_dict(sd)
    del sd
    model = model.to(dev)
    x = clip(args.seconds, cfg["sample_rate"]).to(dev)
    with torch.inference_mode():
        enc_s, codes = common.best_of(args.repeat, lambda: model.encode(x), dev)
        c4 = codes[:4]
        dec_s, wav = common.best_of(args.repeat, lambda: model.decode(c4), dev)
    codes, wav = codes.cpu(), wav.flatten().cpu()
    common.write_json(args.json, {
        "impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(dev),
        "seconds_of_audio": args.seconds, "encode_s": enc_s, "decode_s": dec_s,
        "decode_layers": 4, "encode_rtf": enc_s / args.seconds, "decode_rtf": dec_s / args.seconds,
        "peak_rss_bytes": common.peak_rss_bytes(), "load_average": common.load_average(),
        "codes": codes[:, 0].tolist(), "wave_stride": 16, "wave": wav[::16].tolist(),
        "wave_len": wav.numel(),
    })


def main():
    common.cli(__doc__, write, bench, [("--seconds", float, 10.0), ("--repeat", int, 2)])


if __name__ == "__main__":
    main()
