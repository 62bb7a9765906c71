"""The dogImages class list and how a folder name reads as a breed."""

from __future__ import annotations

from importlib import resources


def dogimages_classes() -> list[str]:
    """The 133 class folders of dogImages, in order (`001.Affenpinscher` … `133.Yorkshire_terrier`)."""
    text = resources.files("dogbreed.data").joinpath("classes.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def breed_name(label: str) -> str:
    """`096.Labrador_retriever` → `Labrador retriever`."""
    _, _, name = label.partition(".")
    return (name or label).replace("_", " ")
