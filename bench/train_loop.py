"""Images/s of our Lightning training step vs a plain PyTorch loop on the same model and batch.

    python bench/train_loop.py [--batch-size 32] [--image-size 224] [--steps 20] [--repeats 3]

Both loops run the same DogBreedClassifier on the same in-memory batch, so the ratio measures what
Lightning (and our logging/metrics) cost per step, not data loading. Frozen backbone and full
fine-tune; the ratio is Lightning/plain (goal ≥ 0.98).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from dogbreed import DogBreedClassifier


class StepTimer(pl.Callback):
    """Wall time from the end of the warm-up steps to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


class Repeat:
    """The same batch `n` times: an iterable Lightning accepts as a dataloader."""

    def __init__(self, batch: tuple[torch.Tensor, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __iter__(self):
        return iter([self.batch] * self.n)

    def __len__(self) -> int:
        return self.n


def make_model(freeze: bool, classes: int) -> DogBreedClassifier:
    torch.manual_seed(0)
    return DogBreedClassifier(num_classes=classes, pretrained=False, freeze_backbone=freeze)


def lightning_rate(batch, steps: int, warmup: int, freeze: bool, classes: int, callbacks=()) -> float:
    timer = StepTimer(warmup)
    lightning_run(batch, steps, warmup, freeze, classes, [*callbacks, timer])
    return steps * len(batch[1]) / (timer.end - timer.start)


def lightning_run(batch, steps: int, warmup: int, freeze: bool, classes: int, callbacks) -> None:
    """`warmup + steps` Lightning training steps on `batch`; the timers among `callbacks` measure them.
    A timer last in the list sees each step's window after every other callback's hooks ran."""
    model = make_model(freeze, classes)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(model, train_dataloaders=Repeat(batch, warmup + steps))


def plain_rate(batch, steps: int, warmup: int, freeze: bool, classes: int) -> float:
    model = make_model(freeze, classes).train()
    optimizer = model.configure_optimizers()
    x, y = batch
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(y) / (time.perf_counter() - start)


def loop_arguments(description: str) -> argparse.Namespace:
    """The options both loop benchmarks take (this one and bench/debug_overhead.py)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", type=int, default=133)
    args = parser.parse_args()
    for name in ("batch_size", "image_size", "steps", "repeats", "classes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be 0 or more")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    return args


def fixed_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return (
        torch.randn(args.batch_size, 3, args.image_size, args.image_size),
        torch.randint(0, args.classes, (args.batch_size,)),
    )


def main() -> None:
    args = loop_arguments(__doc__)

    batch = fixed_batch(args)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, batch {args.batch_size}×3×{args.image_size}²"
    )
    print(f"{'mode':<10} {'plain img/s':>12} {'lightning img/s':>16} {'ratio':>7}")
    for freeze in (True, False):
        plain, light = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both sides alike
            plain.append(plain_rate(batch, args.steps, args.warmup, freeze, args.classes))
            light.append(lightning_rate(batch, args.steps, args.warmup, freeze, args.classes))
        p, lt = statistics.median(plain), statistics.median(light)
        print(f"{'frozen' if freeze else 'full':<10} {p:>12.1f} {lt:>16.1f} {lt / p:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
