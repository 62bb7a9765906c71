"""Decoding images into RGB: every format a phone or browser sends, never a bomb.

One conversion for training and serving (`to_rgb`): the first frame, EXIF orientation applied, alpha
composited on white, 16-bit greyscale scaled, CMYK and palettes converted. A photo is then the same
tensor in the data module and at the endpoint.
"""

from __future__ import annotations

import io
import mimetypes
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dogbreed.errors import DogBreedError

MAX_PIXELS = 40_000_000  # ~ 8000 × 5000: far above any photo, far below what would exhaust memory


class BadInput(DogBreedError):
    """A request the client must fix; `status` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with alpha composited on white and 16/32-bit greyscale scaled (not clipped) to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(pixels.max()), 1.0)
        image = Image.fromarray((pixels.clip(0, top) * (255.0 / top)).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """The first frame, upright as the camera's EXIF orientation says, as RGB (see `_to_rgb`)."""
    image.seek(0)  # first frame of an animation
    image.load()
    return _to_rgb(ImageOps.exif_transpose(image))


def content_type(path: Path) -> str:
    """A file's image type from its suffix (what a client sends it as); anything else goes as
    application/octet-stream, for the server to sniff."""
    guessed = mimetypes.guess_type(path.name)[0] or ""
    return guessed if guessed.startswith("image/") else "application/octet-stream"


def open_rgb(path: str | Path) -> Image.Image:
    """An image file as training and evaluation see it: exactly what `decode_image` gives for its bytes."""
    with Image.open(path) as image:
        return to_rgb(image)


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """RGB image from encoded bytes; `BadInput` names what is wrong with them."""
    if not data:
        raise BadInput("empty body: send an image (JPEG, PNG, GIF, WebP, …)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            if image.width * image.height > max_pixels:
                raise BadInput(
                    f"image is {image.width}×{image.height} pixels, over the limit of {max_pixels:,}", 413
                )
            return to_rgb(image)
    except BadInput:
        raise
    except UnidentifiedImageError as exc:
        raise BadInput("body is not an image in a format we can read") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadInput(f"image rejected as a decompression bomb: {exc}", 413) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInput(f"image data is truncated or corrupt ({exc})") from exc
