"""Makes tests/fixtures/bad_media/ (run there; needs Pillow, numpy and the ffmpeg CLI).

Odd but valid images the image tokenizer must read or refuse clearly: a CMYK JPEG, a
3-frame animated GIF (red, blue, green), a 16-bit RGB PNG and a 16-bit grey PNG; NAME.rgb is
`PIL.Image.open(NAME).convert('RGB')` as raw H×W×3 bytes.
"""
import subprocess

import numpy as np
from PIL import Image

h, w = 12, 16
y, x = np.mgrid[0:h, 0:w]
rgb = np.stack([x * 16, y * 20, (x + y) * 8], -1)
Image.fromarray(rgb.astype(np.uint8), "RGB").convert("CMYK").save("cmyk.jpg", quality=95)
frames = [Image.new("RGB", (w, h), c) for c in [(250, 10, 10), (10, 10, 250), (10, 250, 10)]]
frames[0].save("animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)


def ffmpeg_png(raw, pix_fmt, out):
    open("/tmp/raw", "wb").write(raw)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", pix_fmt,
                    "-s", f"{w}x{h}", "-i", "/tmp/raw", "-frames:v", "1", "-pix_fmt", pix_fmt, out],
                   check=True)


rgb16 = (rgb.astype(np.uint16) * 257 + 77).astype(">u2")
ffmpeg_png(rgb16.tobytes(), "rgb48be", "rgb16.png")
ffmpeg_png(rgb16[..., 0].copy().tobytes(), "gray16be", "gray16.png")
for name in ["cmyk.jpg", "animated.gif", "rgb16.png", "gray16.png"]:
    open(name + ".rgb", "wb").write(Image.open(name).convert("RGB").tobytes())
