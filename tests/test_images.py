"""decode_image: every format a client may send becomes RGB; bad bytes become a clear BadInput."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dogbreed.data.images import BadInput, decode_image
from tests.conftest import REAL_DOGS


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def rgb(w: int = 40, h: int = 30) -> Image.Image:
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[..., 0] = 200  # red, with a blue left column to check orientation
    pixels[:, :4] = (0, 0, 255)
    return Image.fromarray(pixels)


def test_grayscale_palette_and_webp_become_rgb() -> None:
    for data in (
        encode(rgb().convert("L"), "PNG"),
        encode(rgb().convert("P"), "PNG"),
        encode(rgb(), "WEBP"),
        encode(rgb(), "BMP"),
        encode(rgb(), "JPEG"),
    ):
        image = decode_image(data)
        assert image.mode == "RGB" and image.size == (40, 30)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((8, 8), 32768, np.uint16))
    image = decode_image(encode(grey, "PNG"))
    assert image.getpixel((0, 0)) == (127, 127, 127)


def test_alpha_is_composited_on_white() -> None:
    transparent = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert decode_image(encode(transparent, "PNG")).getpixel((5, 5)) == (255, 255, 255)
    la = Image.new("LA", (10, 10), (0, 255))
    assert decode_image(encode(la, "PNG")).getpixel((5, 5)) == (0, 0, 0)
    palette = Image.new("P", (10, 10), 0)
    palette.info["transparency"] = 0
    assert decode_image(encode(palette, "PNG", transparency=0)).getpixel((5, 5)) == (255, 255, 255)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    r, g, b = decode_image(encode(cmyk, "JPEG", quality=95)).getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image = decode_image(encode(rgb(40, 30), "JPEG", exif=exif, quality=95))
    assert image.size == (30, 40)
    top = np.asarray(image)[1, 15]
    assert top[2] > 200 and top[0] < 60, "the blue left column is now on top"


def test_animated_gif_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (12, 12), c) for c in ((0, 0, 255), (255, 0, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    r, _, b = decode_image(data).getpixel((6, 6))
    assert b > 200 and r < 60


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width × height: a decompression bomb's signature."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty body"),
        (b"definitely not an image", 400, "not an image"),
        (encode(rgb(400, 300), "JPEG")[:600], 400, "truncated or corrupt"),
        (png_claiming(8_000, 8_000), 413, "8000×8000 pixels, over the limit"),
        (png_claiming(100_000, 100_000), 413, "decompression bomb"),
    ],
)
def test_bad_bytes_are_named(data: bytes, status: int, message: str) -> None:
    with pytest.raises(BadInput, match=message) as err:
        decode_image(data)
    assert err.value.status == status


def awkward_photos() -> dict[str, tuple[bytes, str]]:
    """The formats training and serving used to see differently, as (bytes, content type)."""
    pixels = np.zeros((48, 80, 3), np.uint8)
    pixels[:, :20] = (0, 0, 255)  # blue on the left: a rotation moves it
    pixels[:24, 20:] = (200, 30, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    rgba = Image.fromarray(pixels).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((80, 48)))
    sixteen = Image.fromarray((np.arange(48 * 80, dtype=np.uint16).reshape(48, 80) * 17).astype(np.uint16))
    return {
        "exif_rotated.jpg": (encode(Image.fromarray(pixels), "JPEG", exif=exif), "image/jpeg"),
        "rgba.png": (encode(rgba, "PNG"), "image/png"),
        "cmyk.jpg": (encode(Image.fromarray(pixels).convert("CMYK"), "JPEG"), "image/jpeg"),
        "sixteen_bit.png": (encode(sixteen, "PNG"), "image/png"),
    }


def test_training_and_serving_see_the_same_tensor(trained_model, tmp_path) -> None:
    from dogbreed import DogBreedDataModule
    from dogbreed.serving.service import Service, decode

    predictor = Service(trained_model)
    classes = predictor.classes
    photos = awkward_photos()
    for split in ("train", "valid", "test"):
        for index, name in enumerate(classes):
            (tmp_path / split / name).mkdir(parents=True)
            if split == "test" and index == 0:
                for file, (data, _) in photos.items():
                    (tmp_path / split / name / file).write_bytes(data)
            else:
                (tmp_path / split / name / "x.png").write_bytes(encode(rgb(), "PNG"))
    size = predictor.image_size
    dm = DogBreedDataModule(str(tmp_path), image_size=size, num_workers=0, url=None, expected_classes=None)
    dm.setup()
    test_set = dm.dataset("test")
    seen = {path.name: test_set[i][0] for i, (path, _) in enumerate(test_set.samples)}
    for file, (data, content_type) in photos.items():
        served = predictor.pixels(decode(data, content_type))[0]
        np.testing.assert_array_equal(seen[file], served, err_msg=file)
    rotated = decode_image(photos["exif_rotated.jpg"][0])
    assert rotated.size == (48, 80)  # upright: EXIF orientation applied on both sides


def torchvision_eval(image: Image.Image, size: int) -> np.ndarray:
    """The evaluation pipeline as torchvision's v2 transforms spell it (what training used before)."""
    import torch
    from torchvision.transforms import v2

    from dogbreed.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_size

    pipeline = v2.Compose(
        [
            v2.Resize(resize_size(size), antialias=True),
            v2.CenterCrop(size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    return pipeline(image).numpy()


@pytest.mark.parametrize("size", [64, 224])
def test_the_numpy_eval_transform_gives_torchvisions_bits(size: int, tiny_root) -> None:
    from dogbreed.data.transforms import eval_transform

    photos = sorted(REAL_DOGS.glob("*.jpg"))
    generated = sorted((tiny_root / "test").rglob("*.jpg"))[:6]
    odd = [rgb(w, h) for w, h in ((31, 500), (500, 31), (size - 3, size + 5), (size, size), (1, 1))]
    images = [decode_image(p.read_bytes()) for p in (*photos, *generated)] + odd
    for image in images:
        np.testing.assert_array_equal(eval_transform(size)(image), torchvision_eval(image, size))
