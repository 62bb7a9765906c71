"""DogBreedDataModule and the synthetic generator on generated data."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dogbreed import DogBreedDataModule
from dogbreed.data.classes import breed_name, dogimages_classes
from dogbreed.data.synthetic import generate_dataset
from dogbreed.data.synthetic import main as synthetic_main
from dogbreed.errors import DatasetError


def datamodule(root: Path, **kwargs) -> DogBreedDataModule:
    kwargs = {"batch_size": 4, "num_workers": 0, "image_size": 64, "url": None, **kwargs}
    dm = DogBreedDataModule(str(root), **kwargs)
    dm.setup()
    return dm


def test_class_mapping_and_transform_shapes(tiny_root: Path) -> None:
    dm = datamodule(tiny_root)
    assert dm.class_names == dogimages_classes()[:6]
    assert [len(dm.samples[s]) for s in ("train", "valid", "test")] == [48, 18, 18]
    for path, index in dm.samples["valid"]:
        assert path.parent.name == dm.class_names[index]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 64, 64) and y.shape == (4,)
    image, target = dm.dataset("test")[0]
    assert image.shape == (3, 64, 64) and target == 0
    assert abs(float(image.mean())) < 3  # normalised, not 0..255


def test_generated_data_matches_the_dogimages_layout(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", classes=3, train_per_class=4, seed=7)
    again = generate_dataset(tmp_path / "e", classes=3, train_per_class=4, seed=7)
    files = sorted(p.relative_to(root) for p in root.rglob("*.jpg"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.jpg"))
    assert [p.name for p in sorted((root / "train").iterdir())] == dogimages_classes()[:3]
    assert len(files) == 3 * (4 + 1 + 1)
    sizes = [Image.open(root / f).size for f in files]
    assert all(min(s) >= 150 and max(s) <= 600 for s in sizes)
    assert any(h > w for w, h in sizes), "some images are portrait"
    first = root / files[0]
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again / files[0])))
    assert not list(tmp_path.glob(".*")), "no temporary folder left behind"


def test_synthetic_cli_refuses_an_existing_folder(tmp_path: Path, capsys) -> None:
    synthetic_main([str(tmp_path / "gen"), "--classes", "2", "--per-class", "2"])
    assert (tmp_path / "gen" / "test" / "002.Afghan_hound").is_dir()
    with pytest.raises(SystemExit):
        synthetic_main([str(tmp_path / "gen")])
    assert "already exists" in capsys.readouterr().err


def test_split_class_mismatch_names_the_difference(tiny_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    shutil.rmtree(root / "valid" / "003.Airedale_terrier")
    with pytest.raises(DatasetError, match=r"valid lacks \['003.Airedale_terrier'\]"):
        datamodule(root)


def test_missing_split_is_a_clear_error(tiny_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    shutil.rmtree(root / "test")
    with pytest.raises(DatasetError, match=r"lacks the split folder\(s\) \['test'\]"):
        datamodule(root)


@pytest.fixture
def root_with_bad_files(tiny_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "copy"
    shutil.copytree(tiny_root, root)
    folder = root / "train" / "001.Affenpinscher"
    good = sorted(folder.iterdir())[0].read_bytes()
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    not_image = folder / "notes.jpg"
    not_image.write_text("this is not a picture")
    return root, truncated, not_image


def test_unreadable_images_are_named_and_skipped(root_with_bad_files, caplog) -> None:
    root, truncated, not_image = root_with_bad_files
    with caplog.at_level(logging.WARNING):
        dm = datamodule(root)
    assert "skipping 2 unreadable file(s)" in caplog.text
    assert str(truncated) in caplog.text and str(not_image) in caplog.text
    paths = {p for p, _ in dm.samples["train"]}
    assert truncated not in paths and not_image not in paths and len(paths) == 48
    assert {p for p, _ in dm.skipped} == {truncated, not_image}
    for batch in dm.train_dataloader():  # a full pass never touches a bad file
        assert batch[0].shape[1:] == (3, 64, 64)


def test_strict_mode_lists_the_bad_files(root_with_bad_files) -> None:
    root, truncated, not_image = root_with_bad_files
    with pytest.raises(DatasetError, match="2 unreadable image") as err:
        datamodule(root, strict=True)
    assert str(truncated) in str(err.value) and str(not_image) in str(err.value)


def test_breed_names() -> None:
    assert breed_name("096.Labrador_retriever") == "Labrador retriever"
    assert len(dogimages_classes()) == 133
