"""Writes tests/fixtures/image_tokenizer/*.jpg and their PIL decodes (*.jpg.rgb, HxWx3 uint8).

Run with Pillow 13.0.0 (its bundled libjpeg-turbo) from tests/fixtures/image_tokenizer/:
    python ../../tools/make_jpeg_fixtures.py
A 45x31 noisy gradient (odd sizes exercise the edge handling) saved as baseline 4:4:4,
4:2:2, 4:2:0, grayscale, 4:2:0 with restart markers every 2 MCUs, and progressive 4:2:0.
"""
import numpy as np
from PIL import Image

rng = np.random.default_rng(7)
W, H = 45, 31
y, x = np.mgrid[0:H, 0:W]
base = np.stack([(x * 5 + y * 3) % 256, (x * 2 + 128 + np.sin(y / 3) * 60) % 256,
                 (255 - x * 4 + y * 2) % 256], -1).astype(float)
img = Image.fromarray(np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8))


def save(name, im, **kw):
    im.save(name, "JPEG", **kw)
    np.asarray(Image.open(name).convert("RGB")).tofile(name + ".rgb")


save("s444.jpg", img, quality=92, subsampling=0)
save("s422.jpg", img, quality=92, subsampling=1)
save("s420.jpg", img, quality=75, subsampling=2)
save("gray.jpg", img.convert("L"), quality=85)
save("s420_rst.jpg", img, quality=80, subsampling=2, restart_marker_blocks=2)
save("progressive.jpg", img, quality=80, subsampling=2, progressive=True)

# Other formats (from the decoded 4:4:4 image) and an EXIF-rotated JPEG whose expected
# pixels are PIL's exif_transpose (our decoder applies the orientation; PIL's open does not).
from PIL import ImageOps  # noqa: E402

im = Image.open("s444.jpg").convert("RGB")


def save_as(name, im, fmt, **kw):
    im.save(name, fmt, **kw)
    np.asarray(Image.open(name).convert("RGB")).tofile(name + ".rgb")


save_as("rgb.bmp", im, "BMP")
save_as("lossless.webp", im, "WEBP", lossless=True)
save_as("palette.gif", im.convert("P", palette=Image.ADAPTIVE, colors=64), "GIF")
rgba = np.asarray(im.convert("RGBA")).copy()
rgba[..., 3] = np.arange(45)[None, :] * 5
save_as("rgba.png", Image.fromarray(rgba), "PNG")
exif = Image.Exif()
exif[0x0112] = 6
im.save("orient6.jpg", "JPEG", quality=92, subsampling=0, exif=exif.tobytes())
np.asarray(ImageOps.exif_transpose(Image.open("orient6.jpg")).convert("RGB")).tofile("orient6.jpg.rgb")
# RGB JPEG without colour transform (Adobe APP14 transform 0, no JFIF).
im.save("adobe_rgb.jpg", "JPEG", quality=92, subsampling=0, keep_rgb=True)
np.asarray(Image.open("adobe_rgb.jpg").convert("RGB")).tofile("adobe_rgb.jpg.rgb")
