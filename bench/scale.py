"""DDP and checkpointing costs on this machine, through the real entry point.

    python bench/scale.py [--classes 10] [--per-class 40] [--epochs 2]

1. Training throughput (samples/s, from each rank's own count and time) of `trainer=ddp trainer.devices=2`
   against one process, both with the frozen-backbone demo recipe on a generated dataset.
2. The cost of `last.ckpt` every N steps: the same single-process run with N = 5 against N = 100000 (never).
Medians of interleaved repeats; everything runs in this one invocation, so ratios compare runs made here, now.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from dogbreed.data.synthetic import generate_dataset
from dogbreed.processes import child, raise_on_signals

REPO = Path(__file__).resolve().parent.parent


def demo_command(root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Our entry point on the demo experiment, as a benchmark runs it (also bench/startup.py)."""
    return [
        sys.executable,
        "-m",
        "dogbreed.train",
        "+experiment=demo",
        f"data.root={root}",
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]


def run(root: Path, run_dir: Path, *extra: str) -> float:
    """Samples per second of training (all ranks' samples over the slowest rank's time)."""
    command = demo_command(root, run_dir, *extra)
    with child(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        output, _ = process.communicate()
    logs = output + "".join(p.read_text() for p in run_dir.glob("*.log"))
    if process.returncode != 0:
        raise RuntimeError(logs[-3000:])
    ranks = re.findall(r"rank \d+ of \d+ saw \d+ training batches \((\d+) samples\) in ([\d.]+) s", logs)
    return sum(int(n) for n, _ in ranks) / max(float(t) for _, t in ranks)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raise_on_signals()  # a SIGTERM stops the training run being measured too
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate_dataset(tmp / "data", args.classes, args.per_class, seed=2)
        common = [f"trainer.max_epochs={args.epochs}", "data.batch_size=16"]
        ddp = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
        rates: dict[str, list[float]] = {"one": [], "two": [], "never": [], "often": []}
        for i in range(args.repeats):  # interleaved, so drift hits every variant alike
            rates["one"].append(run(root, tmp / f"one{i}", *common))
            rates["two"].append(run(root, tmp / f"two{i}", *common, *ddp))
            rates["never"].append(run(root, tmp / f"never{i}", *common, "checkpoint.every_n_steps=100000"))
            rates["often"].append(run(root, tmp / f"often{i}", *common, "checkpoint.every_n_steps=5"))
        one, two, never, often = (statistics.median(rates[k]) for k in ("one", "two", "never", "often"))
    print(
        f"{os.cpu_count()} cores; {args.classes * args.per_class} generated training images, 224 px, "
        f"frozen backbone, batch 16, {args.epochs} epochs"
    )
    print(f"1 process : {one:7.1f} samples/s")
    print(f"2 processes (DDP, gloo): {two:7.1f} samples/s  ratio {two / one:.2f}")
    print(f"last.ckpt never       : {never:7.1f} samples/s")
    print(f"last.ckpt every 5 steps: {often:7.1f} samples/s  overhead {never / often - 1:.1%}")


if __name__ == "__main__":
    main()
