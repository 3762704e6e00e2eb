"""Shared helpers of the PyTorch benchmark scripts (see README.md beside this file)."""

import json
import argparse
import os
import resource
import sys
import time

import torch


def peak_rss_bytes():
    """Peak resident memory of this process (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def set_threads(n):
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def sync(device):
    """Waits for the GPU's queued work (timings on `cuda` must include it)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def set_device(device):
    """float32 stays float32 on a GPU too (no TF32 in matrix products or cuDNN
    convolutions), as candle computes it, so both sides do the same arithmetic."""
    if str(device).startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch.device(device)


def best_of(repeat, fn, device="cpu"):
    """Best wall time of `repeat` calls after one warm-up, and the last result."""
    out = fn()
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def write_json(path, value):
    text = json.dumps(value, indent=1)
    if path in (None, "-"):
        sys.stdout.write(text + "\n")
    else:
        with open(path, "w") as f:
            f.write(text)


def load_average():
    return os.getloadavg()


def link_tiny_lm(out):
    """Links the tiny fixture LM and tokenizer files into `out`, so that `out` is a whole
    release folder (the benchmarks measure the codec / image components beside it)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tiny = os.path.join(root, "tests", "fixtures", "release-layout")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(tiny):
        src = os.path.realpath(os.path.join(tiny, name))
        dst = os.path.join(out, name)
        if os.path.isfile(src) and not os.path.lexists(dst):
            os.symlink(src, dst)
    return tiny


def cli(doc, write, bench, bench_args):
    """The scripts' command line: `write --out DIR [--seed N]` and `bench --model DIR
    [--threads N] [--json FILE] ...` with `bench_args` = [(flag, type, default)]."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--out", required=True)
    w.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    for flag, ty, default in bench_args:
        b.add_argument(flag, type=ty, default=default)
    b.add_argument("--json", default="-")
    args = p.parse_args()
    {"write": write, "bench": bench}[args.cmd](args)
