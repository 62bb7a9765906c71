"""Generated datasets in the exact dogImages layout, for tests, demos and benchmarks.

    python -m dogbreed.data.synthetic OUT --classes 10 --per-class 24 [--seed 0]

Each class has its own colour pair, shape and stripe direction, drawn at a random place and scale with
noise, on JPEGs of 200–600 px (some portrait): a model can learn them, and the result depends only on
the seed. `twin=True` draws class 1 as class 0 with a slightly shifted hue (a pair meant to be confused,
as Brittany and Welsh springer spaniel are); `first_class` starts further down the breed list, so that
classes a model never saw can be generated for it.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.progress import track

from dogbreed import command_line
from dogbreed.atomic import atomic_dir
from dogbreed.data.classes import dogimages_classes
from dogbreed.data.download import SPLITS

SHAPES = ("ellipse", "rectangle", "triangle", "ring", "cross", "diamond")
TWIN_HUE_SHIFT = 0.03  # class 1 of a twin dataset: class 0's design, its hue moved by ~11 degrees


def _colour(hue: float, lightness: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def render(
    class_index: int, rng: np.random.Generator, size: tuple[int, int], hue_shift: float = 0.0
) -> Image.Image:
    """One image of class `class_index`: striped background, a class shape, noise."""
    width, height = size
    hue = (class_index * 0.618034 + hue_shift) % 1.0
    angle = np.pi * ((class_index // len(SHAPES)) % 4) / 4
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = rng.uniform(18, 30)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    dark, light = np.array(_colour(hue, 0.25)), np.array(_colour(hue + 0.08, 0.7))
    background = dark + stripes[..., None] * (light - dark)
    image = Image.fromarray(background.clip(0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(image)
    radius = rng.uniform(0.2, 0.35) * min(width, height)
    cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
    fill = _colour(hue + 0.5, rng.uniform(0.45, 0.6))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    shape = SHAPES[class_index % len(SHAPES)]
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(4, int(radius / 3)))
    elif shape == "cross":
        w = radius / 3
        draw.rectangle((cx - radius, cy - w, cx + radius, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - radius, cx + w, cy + radius), fill=fill)
    else:
        corners = 3 if shape == "triangle" else 4
        draw.regular_polygon((cx, cy, radius), corners, rotation=rng.uniform(0, 30), fill=fill)

    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _random_size(rng: np.random.Generator) -> tuple[int, int]:
    long_side, short_side = int(rng.integers(300, 601)), int(rng.integers(200, 451))
    short_side = min(short_side, long_side)
    return (short_side, long_side) if rng.random() < 0.3 else (long_side, short_side)


def generate_dataset(
    out: str | Path,
    classes: int = 10,
    train_per_class: int = 24,
    valid_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
    twin: bool = False,
    first_class: int = 0,
) -> Path:
    """Write train/valid/test class folders (real dogImages names) under `out`, atomically."""
    out = Path(out)
    names = dogimages_classes()
    if not 1 <= classes <= len(names) - first_class or first_class < 0:
        raise ValueError(f"classes must be between 1 and {len(names) - first_class}, got {classes}")
    held_out = max(1, train_per_class // 4)
    per_split = {
        "train": train_per_class,
        "valid": valid_per_class or held_out,
        "test": test_per_class or held_out,
    }
    jobs = [(s, c) for s in SPLITS for c in range(first_class, first_class + classes)]
    with atomic_dir(out) as tmp:
        for split, c in track(jobs, description=f"generating {out.name}", transient=True):
            rng = np.random.default_rng([seed, SPLITS.index(split), c])
            folder = tmp / split / names[c]
            folder.mkdir(parents=True)
            breed = names[c].split(".", 1)[1]
            for i in range(per_split[split]):
                design, shift = (0, TWIN_HUE_SHIFT) if twin and c == 1 else (c, 0.0)
                image = render(design, rng, _random_size(rng), shift)
                image.save(folder / f"{breed}_{c * 1000 + i:05d}.jpg", quality=int(rng.integers(80, 95)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.data.synthetic", __doc__)
    count = command_line.at_least(1)
    parser.add_argument("out", type=Path, help="dataset root to create (must not exist)")
    parser.add_argument("--classes", type=count, default=10, help="number of breeds (first N of 133)")
    parser.add_argument("--per-class", type=count, default=24, help="training images per class")
    parser.add_argument("--valid-per-class", type=count, help="default: per-class / 4")
    parser.add_argument("--test-per-class", type=count, help="default: per-class / 4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--twin", action="store_true", help="class 1 differs from class 0 only slightly")
    parser.add_argument(
        "--first-class", type=command_line.at_least(0), default=0, help="start at this breed of the 133"
    )
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} already exists; choose a new folder or delete it")
    try:
        generate_dataset(
            args.out,
            args.classes,
            args.per_class,
            args.valid_per_class,
            args.test_per_class,
            args.seed,
            args.twin,
            args.first_class,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
