"""DogBreedClassifier: shapes, the frozen backbone, optimizer arguments, weights, checkpoint reload."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torchvision.models import resnet18

from dogbreed import DogBreedClassifier, DogBreedDataModule
from dogbreed.errors import WeightsUnavailableError
from dogbreed.model import apply_optimizer_settings, make_optimizer
from dogbreed.training.run import recalibrate

CLASSES = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]


def tiny_trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_shapes_and_probabilities() -> None:
    model = DogBreedClassifier(CLASSES, pretrained=False).eval()
    assert model.net.fc.in_features == 512 and model.net.fc.out_features == 3
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 3)
    probs = model.predict_step(x)
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))
    assert model.predict_step((x, torch.tensor([0, 1]))).shape == (2, 3)


def test_optimizer_holds_only_the_head_with_configured_arguments() -> None:
    model = DogBreedClassifier(CLASSES, pretrained=False, lr=0.0123, eps=3e-7, weight_decay=0.045)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    (group,) = optimizer.param_groups
    assert {id(p) for p in group["params"]} == {id(p) for p in model.net.fc.parameters()}
    assert (group["lr"], group["eps"], group["weight_decay"]) == (0.0123, 3e-7, 0.045)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["net.fc.weight", "net.fc.bias"]


def test_full_fine_tune_optimizes_everything() -> None:
    model = DogBreedClassifier(CLASSES, pretrained=False, freeze_backbone=False)
    (group,) = model.configure_optimizers().param_groups
    assert len(group["params"]) == len(list(model.net.parameters()))
    assert all(m.training for m in model.modules())


class RecordBatchNormModes(pl.Callback):
    def __init__(self) -> None:
        self.modes: list[bool] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.modes += [m.training for m in pl_module.net.modules() if isinstance(m, nn.BatchNorm2d)]


def test_new_settings_reach_a_restored_optimizer_and_its_cosine_schedule() -> None:
    weight = nn.Parameter(torch.zeros(2))
    optimizer = make_optimizer([weight], {"lr": 0.1, "eps": 1e-8, "weight_decay": 0.0, "betas": (0.9, 0.999)})
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)  # half way down from 0.1
    settings = {"lr": 0.2, "eps": 1e-6, "weight_decay": 0.01, "betas": [0.8, 0.99]}
    apply_optimizer_settings(optimizer, settings, scheduler)
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.1)  # half way down from the new 0.2
    assert (group["eps"], group["weight_decay"], group["betas"]) == (1e-6, 0.01, (0.8, 0.99))
    optimizer.step()
    scheduler.step()
    assert group["lr"] == pytest.approx(0.2 * (1 + math.cos(math.pi * 6 / 10)) / 2)  # the new curve goes on


def test_frozen_backbone_stays_frozen_through_a_training_epoch(tiny_root: Path, tmp_path: Path) -> None:
    dm = DogBreedDataModule(str(tiny_root), batch_size=8, num_workers=0, image_size=64, url=None)
    dm.setup()
    model = DogBreedClassifier(dm.class_names, pretrained=False, lr=0.01)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    recorder = RecordBatchNormModes()
    tiny_trainer(tmp_path, callbacks=[recorder], limit_val_batches=0).fit(model, datamodule=dm)

    assert recorder.modes and not any(recorder.modes), "BatchNorm switched to train mode"
    assert all(p.grad is None for n, p in model.net.named_parameters() if not n.startswith("fc."))
    after = model.net.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["fc.bias", "fc.weight"]  # running stats and backbone weights untouched


def test_adabn_changes_only_batchnorm_statistics_and_leaves_the_global_rng(tiny_root: Path) -> None:
    dm = DogBreedDataModule(str(tiny_root), batch_size=8, num_workers=0, image_size=64, url=None)
    dm.setup()
    model = DogBreedClassifier(dm.class_names, pretrained=False, bn_recalibration=True)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    torch.manual_seed(7)
    recalibrate(model, dm)
    drawn = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(3))  # AdaBN on or off: the same head start and batch order
    after = model.net.state_dict()
    changed = {k.rsplit(".", 1)[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"running_mean", "running_var", "num_batches_tracked"}
    assert not model.net.layer1[0].bn1.training  # the frozen backbone is back in eval mode


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path: Path, monkeypatch) -> None:
    reference = resnet18(num_classes=1000).state_dict()
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference, cache / "resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = DogBreedClassifier(CLASSES, pretrained=True)
    torch.testing.assert_close(model.net.conv1.weight, reference["conv1.weight"])
    torch.testing.assert_close(model.net.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])


def test_weights_path_loads_a_local_state_dict(tmp_path: Path) -> None:
    reference = resnet18(num_classes=1000).state_dict()
    torch.save(reference, tmp_path / "resnet18.pth")
    model = DogBreedClassifier(CLASSES, pretrained=True, weights_path=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(model.net.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])


def test_missing_weights_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        DogBreedClassifier(CLASSES, weights_path=str(tmp_path / "nope.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsUnavailableError, match="do not fit resnet18"):
        DogBreedClassifier(CLASSES, weights_path=str(tmp_path / "bad.pth"))


def test_checkpoint_reload_predicts_exactly_the_same(tiny_root: Path, tmp_path: Path) -> None:
    dm = DogBreedDataModule(str(tiny_root), batch_size=8, num_workers=0, image_size=64, url=None)
    dm.setup()
    model = DogBreedClassifier(dm.class_names, pretrained=False, freeze_backbone=False, lr=0.01)
    trainer = tiny_trainer(tmp_path, limit_train_batches=2, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "model.ckpt")

    x, _ = next(iter(dm.test_dataloader()))
    expected = model.eval().predict_step(x)
    reloaded = DogBreedClassifier.load_from_checkpoint(tmp_path / "model.ckpt", map_location="cpu").eval()
    assert reloaded.class_names == dm.class_names
    assert reloaded.hparams.pretrained is False  # reloading never downloads weights
    assert torch.equal(reloaded.predict_step(x), expected)
