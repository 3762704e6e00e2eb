#!/usr/bin/env python3
"""SD 2.1 unCLIP UNet + VAE at the real size, diffusers side of `mio bench image-decode` (5.8).

    python image_decode.py write --out DIR    # random seeded weights -> DIR/stable-diffusion-2-1-unclip/
    python image_decode.py bench --model DIR --threads 2 --steps 2 --json FILE

`write` builds diffusers' `UNet2DConditionModel` and `AutoencoderKL` from the release's
config.json values (stabilityai/stable-diffusion-2-1-unclip: UNet blocks 320/640/1280/1280,
head dims 5/10/20/20, cross-attention 1024, linear projections, projection class
embedding of 2 x 1024, 96 x 96 latents; VAE 128/256/512/512), seeded random weights, and
saves them with `save_pretrained` (float16 safetensors, to keep the disk use down: both
sides compute in float32), plus the image normalizer (1024) and the scheduler configs of
the tiny fixture, and a random empty-prompt embedding (1 x 77 x 1024). The decode head
lives in seed_quantizer.pt (image_encode.py write makes it).

`bench` loads the UNet and VAE in float32 and times what one denoising step of the
pipeline costs: one UNet call on the guidance batch (2 x 4 x 96 x 96), plus the PNDM update,
best of --steps calls after a warm-up; then one VAE decode of 1 x 4 x 96 x 96.
"""

import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

UNET = {
    "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024, "norm_num_groups": 32,
    "projection_class_embeddings_input_dim": 2048, "sample_size": 96,
}
VAE = {"block_out_channels": [128, 256, 512, 512], "norm_num_groups": 32, "sample_size": 768}
SD = "stable-diffusion-2-1-unclip"


def tiny_dir():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "tests", "fixtures", "model", SD)


def config(component, real):
    with open(os.path.join(tiny_dir(), component, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(real)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def write(args):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    d = os.path.join(args.out, SD)
    os.makedirs(d, exist_ok=True)
    unet = UNet2DConditionModel(**config("unet", UNET))
    unet.to(torch.float16).save_pretrained(os.path.join(d, "unet"))
    n_unet = sum(p.numel() for p in unet.parameters())
    del unet
    vae = AutoencoderKL(**config("vae", VAE))
    vae.to(torch.float16).save_pretrained(os.path.join(d, "vae"))
    norm = StableUnCLIPImageNormalizer(embedding_dim=1024)
    with torch.no_grad():
        norm.mean.normal_(0, 0.1)
        norm.std.uniform_(0.5, 1.5)
    norm.save_pretrained(os.path.join(d, "image_normalizer"))
    for sub in ("scheduler", "image_noising_scheduler"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.copy(os.path.join(tiny_dir(), sub, "scheduler_config.json"), os.path.join(d, sub))
    shutil.copy(os.path.join(tiny_dir(), "model_index.json"), d)
    save_file({"empty_prompt_embeds": torch.randn(1, 77, 1024)},
              os.path.join(d, "empty_prompt_embeds.safetensors"))
    common.link_tiny_lm(args.out)
    print(f"wrote {d} (UNet {n_unet / 1e6:.0f} M parameters)")


def bench(args):
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel

    common.set_threads(args.threads)
    dev = common.set_device(args.device)
    d = os.path.join(args.model, SD)
    f32 = {"torch_dtype": torch.float32, "low_cpu_mem_usage": True}
    unet = UNet2DConditionModel.from_pretrained(os.path.join(d, "unet"), **f32).eval().to(dev)
    vae = AutoencoderKL.from_pretrained(os.path.join(d, "vae"), **f32).eval().to(dev)
    sched = PNDMScheduler.from_pretrained(os.path.join(d, "scheduler"))
    sched.set_timesteps(20)
    g = torch.Generator().manual_seed(0)
    s = unet.config.sample_size
    latents = torch.randn(1, 4, s, s, generator=g)
    context = torch.randn(1, 77, 1024, generator=g).expand(2, -1, -1)
    labels = torch.cat([torch.zeros(1, 2048), torch.randn(1, 2048, generator=g)])
    latents, context, labels = latents.to(dev), context.to(dev), labels.to(dev)
    times = []
    with torch.inference_mode():
        for i, t in enumerate(sched.timesteps[: args.steps + 1]):
            t0 = time.perf_counter()
            out = unet(torch.cat([latents] * 2), t, context, class_labels=labels).sample
            uncond, cond = out.chunk(2)
            latents = sched.step(uncond + 10.0 * (cond - uncond), t, latents).prev_sample
            common.sync(dev)
            if i > 0:  # the first call is the warm-up
                times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        img = vae.decode(latents / vae.config.scaling_factor).sample
        common.sync(dev)
        vae_s = time.perf_counter() - t0
    step = min(times)
    common.write_json(args.json, {
        "impl": "diffusers", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "device": str(dev),
        "latent": [2, 4, s, s], "steps_timed": len(times), "step_times": times,
        "seconds_per_step": step, "vae_s": vae_s, "before_first_step_s": 0.0,
        "image": list(img.shape), "peak_rss_bytes": common.peak_rss_bytes(),
        "load_average": common.load_average(),
    })


def main():
    common.cli(__doc__, write, bench, [("--steps", int, 2)])


if __name__ == "__main__":
    main()
