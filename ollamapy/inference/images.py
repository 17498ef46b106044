"""Request images -> what a vision model's llama-server can decode.

llama-server decodes images with stb_image; PNG and JPEG go through untouched, any other format
Pillow reads (WebP, GIF, BMP, TIFF, ...) is converted to PNG first (Ollama converts WebP the
same way). Every image is decoded once to prove it is an image (undecodable data is a 400, not
a runner error), under a pixel bound checked from the header before any pixel is decoded (a
small file can claim gigapixels: a decompression bomb). Synchronous and CPU-bound: the engine
runs `prepare` in a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from collections.abc import Sequence

from ollamapy.errors import BadRequest

# How many images one request may carry is OLLAMAPY_MAX_IMAGES, checked where the body is
# decoded (api/decode.py); the work of decoding them is bounded here, by pixels.
MAX_IMAGE_BYTES = 32 << 20  # decoded size of one image
MAX_PIXELS = 40_000_000  # width x height of one image (about 6300 x 6300)
MAX_REQUEST_PIXELS = 4 * MAX_PIXELS  # all images of one request together
PASS_THROUGH = frozenset({"PNG", "JPEG"})


def decode_base64(img: str) -> bytes:
    try:
        return base64.b64decode(img, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("illegal base64 data in image") from None


class PixelBudget:
    """What is left of one request's MAX_REQUEST_PIXELS, spent from each image's header."""

    __slots__ = ("left",)

    def __init__(self, pixels: int) -> None:
        self.left = pixels

    def spend(self, pixels: int) -> None:
        self.left -= pixels
        if self.left < 0:
            raise BadRequest("images are too large together: more than "
                             f"{MAX_REQUEST_PIXELS} pixels in one request")


def to_runner_image(data: bytes, budget: PixelBudget | None = None) -> bytes:
    """PNG/JPEG bytes unchanged, anything else Pillow reads re-encoded as PNG. `budget`: the
    request's pixels left, spent before any pixel is decoded."""
    if len(data) > MAX_IMAGE_BYTES:
        raise BadRequest(f"image is too large: {len(data)} bytes "
                         f"(at most {MAX_IMAGE_BYTES} bytes)")
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise BadRequest(f"image is too large: {w}x{h} pixels "
                                     f"(at most {MAX_PIXELS} pixels)")
                if budget is not None:
                    budget.spend(w * h)
                fmt = img.format or ""
                img.load()
                if fmt in PASS_THROUGH:
                    return data
                frame: Image.Image = img
                if frame.mode not in ("RGB", "RGBA", "L", "LA"):
                    frame = frame.convert("RGBA" if "A" in frame.getbands()
                                          or "transparency" in frame.info else "RGB")
                out = io.BytesIO()
                frame.save(out, format="PNG")
                return out.getvalue()
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(f"image is too large (at most {MAX_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise BadRequest("image could not be decoded") from None


def prepare(images: Sequence[str], convert: bool = True) -> list[str]:
    """Base64 images -> base64 images the runner decodes (`convert` False: only checked to be
    base64, for a model that will refuse images anyway)."""
    out: list[str] = []
    budget = PixelBudget(MAX_REQUEST_PIXELS)
    for img in images:
        data = decode_base64(img)
        if not convert:
            out.append(img)
            continue
        conv = to_runner_image(data, budget)
        out.append(img if conv is data else base64.b64encode(conv).decode("ascii"))
    return out
