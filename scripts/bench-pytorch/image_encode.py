#!/usr/bin/env python3
"""SEED image encoder at the real size, PyTorch side of `mio bench image-encode` (issue 4.7).

    python image_encode.py write --out DIR    # random seeded weights -> DIR/seed-tokenizer-2/
    python image_encode.py bench --model DIR --threads 2 --batch 2 --json FILE

`write` builds EVA ViT-g as the reference builds it (39 blocks, width 1408, 16 heads, MLP
6144 = int(1408 * 4.3637), patch 14, 224 px, q/v biases, no final norm) with timm's `Eva`
(the same compute and the same tensor names as `eva_vit.py`), seeded random weights, and
saves it as `eva_vit_g.pth` (float16, un-prefixed keys, as the release). The quantizer
checkpoint `seed_quantizer.pt` is written with the release's tensor names at the real sizes
(Q-Former of BERT-base size: 12 layers of 768, 12 heads, 3072, cross-attention every 2nd
layer to the 1408-wide ViT, 32 queries; encode_task_layer; 8192 x 32 codebook; and the
decoder head of `mio bench image-decode`: 4 blocks of 768, image_down 256/128/32,
distill_image_proj 1024 -> 1024), random N(0, 0.02) weights, LayerNorms at 1/0.

`bench` loads both files back and runs the reference path of `get_codebook_indices` in
PyTorch: timm's ViT blocks (scaled_dot_product_attention), ln_vision, the causal Q-Former
(written out here after `qformer_causual.py`: additive -10000 causal mask over the 32
queries, erf GELU, post-LayerNorm), encode_task_layer, nearest codebook row. The input is
the same synthetic 640x480 pictures as `mio bench image-encode`, resized with PIL bilinear
(the reference transform), so the codes can be compared with ours.
"""

import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

WIDTH, DEPTH, HEADS, MLP = 1408, 39, 16, 6144
H, LAYERS, QHEADS, INTER, QUERIES, CODE_DIM, N_EMBED = 768, 12, 12, 3072, 32, 32, 8192
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def vit():
    from timm.models.eva import Eva

    return Eva(img_size=224, patch_size=14, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS,
               mlp_ratio=4.3637, qkv_bias=True, qkv_fused=True, num_classes=0,
               global_pool="", use_rot_pos_emb=False, use_abs_pos_emb=True)


def quantizer_shapes():
    """Tensor names and shapes of the real seed_quantizer.pt (encoder and decoder sides)."""
    s = {"query_tokens": (1, QUERIES, H), "pos_embed": (1, QUERIES, H),
         "pos_embed_image": (1, QUERIES, H), "ln_vision.weight": (WIDTH,),
         "ln_vision.bias": (WIDTH,), "Qformer.bert.embeddings.LayerNorm.weight": (H,),
         "Qformer.bert.embeddings.LayerNorm.bias": (H,)}

    def lin(p, o, i, bias=True):
        s[p + ".weight"] = (o, i)
        if bias:
            s[p + ".bias"] = (o,)

    def ln(p, d):
        s[p + ".weight"] = (d,)
        s[p + ".bias"] = (d,)

    for i in range(LAYERS):
        p = f"Qformer.bert.encoder.layer.{i}."
        kinds = [("attention", H)] + ([("crossattention", WIDTH)] if i % 2 == 0 else [])
        for kind, kv in kinds:
            lin(p + kind + ".self.query", H, H)
            lin(p + kind + ".self.key", H, kv)
            lin(p + kind + ".self.value", H, kv)
            lin(p + kind + ".output.dense", H, H)
            ln(p + kind + ".output.LayerNorm", H)
        lin(p + "intermediate_query.dense", INTER, H)
        lin(p + "output_query.dense", H, INTER)
        ln(p + "output_query.LayerNorm", H)
    s["quantize.embedding.weight"] = (N_EMBED, CODE_DIM)
    lin("encode_task_layer.0", H, H)
    lin("encode_task_layer.2", CODE_DIM, H)
    lin("decode_task_layer.0", CODE_DIM, CODE_DIM)
    lin("decode_task_layer.2", H, CODE_DIM)
    for blocks in ("blocks", "blocks_image"):
        for i in range(4):
            p = f"{blocks}.{i}."
            ln(p + "norm1", H)
            lin(p + "attn.qkv", 3 * H, H)
            lin(p + "attn.proj", H, H)
            ln(p + "norm2", H)
            lin(p + "mlp.fc1", 4 * H, H)
            lin(p + "mlp.fc2", H, 4 * H)
    lin("image_down.0", 256, H, bias=False)
    lin("image_down.2", 128, 256, bias=False)
    lin("image_down.4", 32, 128, bias=False)
    lin("distill_image_proj", 1024, 32 * 32)
    return s


def write(args):
    torch.manual_seed(args.seed)
    d = os.path.join(args.out, "seed-tokenizer-2")
    os.makedirs(d, exist_ok=True)
    model = vit()
    sd = {k: v.to(torch.float16) for k, v in model.state_dict().items()
          if not k.startswith(("norm.", "fc_norm.", "head."))}
    torch.save(sd, os.path.join(d, "eva_vit_g.pth"))
    del model, sd
    q = {}
    for name, shape in quantizer_shapes().items():
        if re.search(r"(LayerNorm|norm\d?|ln_vision)\.weight$", name):
            q[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            q[name] = torch.zeros(shape)
        else:
            q[name] = torch.randn(shape) * 0.02
    q["quantize.embedding.weight"] = torch.randn(N_EMBED, CODE_DIM) * 0.1
    torch.save(q, os.path.join(d, "seed_quantizer.pt"))
    # The tokenizer files of the tiny seed folder (tiny_hparams.json is left out: real sizes).
    tiny = common.link_tiny_lm(args.out)
    src = os.path.realpath(os.path.join(tiny, "seed-tokenizer-2"))
    for name in os.listdir(src):
        if name.endswith(".json") and name != "tiny_hparams.json" or name.endswith(".model"):
            dst = os.path.join(d, name)
            if not os.path.lexists(dst):
                os.symlink(os.path.join(src, name), dst)
    print(f"wrote {d}")


def synthetic(k):
    """`runtime/src/bench.rs::synthetic_images`: gradient with a red disc, 640x480."""
    y, x = np.mgrid[0:480, 0:640].astype(np.int64)
    img = np.stack([x // 3, y // 2, (x + y) // 5], -1).astype(np.uint8)
    disc = (x - (100 + 40 * k)) ** 2 + (y - 240) ** 2 < 80 * 80
    img[disc] = (230, 40, 40)
    return img


def pixels(n):
    from PIL import Image

    out = []
    for k in range(n):
        im = Image.fromarray(synthetic(k)).resize((224, 224), Image.BILINEAR)
        a = torch.from_numpy(np.asarray(im).astype(np.float32) / 255.0).permute(2, 0, 1)
        out.append((a - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1))
    return torch.stack(out)


def attention(q_in, kv, w, p, mask=None):
    b, n, _ = q_in.shape
    m = kv.shape[1]
    q = F.linear(q_in, w[p + ".self.query.weight"], w[p + ".self.query.bias"])
    k = F.linear(kv, w[p + ".self.key.weight"], w[p + ".self.key.bias"])
    v = F.linear(kv, w[p + ".self.value.weight"], w[p + ".self.value.bias"])
    q, k, v = (t.view(b, -1, QHEADS, H // QHEADS).transpose(1, 2) for t in (q, k, v))
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    ctx = ctx.transpose(1, 2).reshape(b, n, H)
    out = F.linear(ctx, w[p + ".output.dense.weight"], w[p + ".output.dense.bias"])
    return F.layer_norm(out + q_in, (H,), w[p + ".output.LayerNorm.weight"],
                        w[p + ".output.LayerNorm.bias"], 1e-12)


def encode(model, w, x):
    v = model.patch_embed(x)
    v = torch.cat([model.cls_token.expand(v.shape[0], -1, -1), v], 1) + model.pos_embed
    for blk in model.blocks:
        v = blk(v)
    v = F.layer_norm(v, (WIDTH,), w["ln_vision.weight"], w["ln_vision.bias"], 1e-5)
    b = v.shape[0]
    mask = (1.0 - torch.tril(torch.ones(QUERIES, QUERIES, device=v.device))) * -10000.0
    h = F.layer_norm(w["query_tokens"].expand(b, -1, -1), (H,),
                     w["Qformer.bert.embeddings.LayerNorm.weight"],
                     w["Qformer.bert.embeddings.LayerNorm.bias"], 1e-12)
    for i in range(LAYERS):
        p = f"Qformer.bert.encoder.layer.{i}."
        h = attention(h, h, w, p + "attention", mask)
        if i % 2 == 0:
            h = attention(h, v, w, p + "crossattention")
        t = F.gelu(F.linear(h, w[p + "intermediate_query.dense.weight"],
                            w[p + "intermediate_query.dense.bias"]))
        t = F.linear(t, w[p + "output_query.dense.weight"], w[p + "output_query.dense.bias"])
        h = F.layer_norm(t + h, (H,), w[p + "output_query.LayerNorm.weight"],
                         w[p + "output_query.LayerNorm.bias"], 1e-12)
    z = F.linear(torch.tanh(F.linear(h, w["encode_task_layer.0.weight"],
                                     w["encode_task_layer.0.bias"])),
                 w["encode_task_layer.2.weight"], w["encode_task_layer.2.bias"])
    e = w["quantize.embedding.weight"]
    z = z.reshape(-1, CODE_DIM)
    d = (z * z).sum(1, keepdim=True) + (e * e).sum(1) - 2 * z @ e.t()
    return d.argmin(1).view(b, QUERIES)


def bench(args):
    common.set_threads(args.threads)
    dev = common.set_device(args.device)
    d = os.path.join(args.model, "seed-tokenizer-2")
    # Built on the meta device and filled from the float16 file converted tensor by
    # tensor, so that the peak memory is the float32 model's, not a random init's on top.
    with torch.device("meta"):
        model = vit().eval()
    sd = torch.load(os.path.join(d, "eva_vit_g.pth"), map_location="cpu", mmap=True)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False, assign=True)
    del sd
    for mod in model.modules():
        for name, buf in list(mod.named_buffers(recurse=False)):
            if buf.is_meta:  # the non-persistent zero k bias
                mod.register_buffer(name, torch.zeros(buf.shape, dtype=buf.dtype), persistent=False)
        for name, p in list(mod.named_parameters(recurse=False)):
            if p.is_meta:  # the classifier head, not in the file and never run
                setattr(mod, name, torch.nn.Parameter(torch.zeros(p.shape, dtype=p.dtype),
                                                      requires_grad=False))
    w = torch.load(os.path.join(d, "seed_quantizer.pt"), map_location="cpu", mmap=True)
    model = model.to(dev)
    w = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in w.items()}
    x = pixels(args.batch).to(dev)
    with torch.inference_mode():
        best, codes = common.best_of(args.repeat, lambda: encode(model, w, x), dev)
    codes = codes.cpu()
    common.write_json(args.json, {
        "impl": "pytorch (timm Eva + Q-Former)", "torch": torch.__version__, "device": str(dev),
        "threads": torch.get_num_threads(), "images": args.batch, "seconds": best,
        "images_per_s": args.batch / best, "peak_rss_bytes": common.peak_rss_bytes(),
        "load_average": common.load_average(), "codes": codes.tolist(),
    })


def main():
    common.cli(__doc__, write, bench, [("--batch", int, 2), ("--repeat", int, 1)])


if __name__ == "__main__":
    main()
