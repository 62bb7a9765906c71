"""Time to the first training step: our entry point, phase by phase, against a plain PyTorch script.

    python bench/startup.py [--repeats 3]

Both train one epoch of the demo's data (10 generated breeds, 224 px, frozen random ResNet18) from a fresh
process. Ours runs `python -m dogbreed.train +experiment=demo` twice per repeat: cold (the image scan not
cached) and warm (the same data again, as a second run or a resumed job sees it); its phases come from the
run's `startup.json`. The reference imports torch/torchvision only and starts a plain loop over an
ImageFolder. Medians; the ratio is ours / reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import demo_command

from dogbreed.data.synthetic import generate_dataset
from dogbreed.processes import child, raise_on_signals

REPO = Path(__file__).resolve().parent.parent
# The reference: what a short script needs before its first step, and nothing else.
PLAIN = """
import sys, time
import torch, torchvision
from torchvision import transforms as T
from torchvision.datasets import ImageFolder
data = ImageFolder(sys.argv[1] + "/train", T.Compose([T.RandomResizedCrop(224), T.ToTensor()]))
loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, num_workers=2)
net = torchvision.models.resnet18(num_classes=len(data.classes))
optimizer = torch.optim.AdamW(net.fc.parameters())
for x, y in loader:
    print(f"first step at {time.time():.3f}", flush=True)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    optimizer.step()
    break
"""


def started_at(command: list[str]) -> tuple[float, str]:
    """(seconds from launch to the line `first step at T`, or to the end; the output)."""
    launched = time.time()
    with child(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(output[-3000:])
    return launched, output


def ours(root: Path, run_dir: Path, cache: Path) -> dict[str, float]:
    started_at(demo_command(root, run_dir, f"data.cache_dir={cache}", "trainer.max_epochs=1"))
    return json.loads((run_dir / "startup.json").read_text())


def plain(root: Path) -> float:
    launched, output = started_at([sys.executable, "-c", PLAIN, str(root)])
    first = float(output.split("first step at ")[1].split()[0])
    return first - launched


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raise_on_signals()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = generate_dataset(
            tmp / "data", classes=10, train_per_class=24, valid_per_class=6, test_per_class=6
        )
        cold, warm, reference = [], [], []
        for repeat in range(args.repeats):
            cache = tmp / f"cache{repeat}"
            cold.append(ours(root, tmp / f"cold{repeat}", cache))
            warm.append(ours(root, tmp / f"warm{repeat}", cache))
            reference.append(plain(root))
            print(
                f"repeat {repeat + 1}: cold {cold[-1]['total']:.1f} s, warm {warm[-1]['total']:.1f} s, "
                f"plain script {reference[-1]:.1f} s",
                flush=True,
            )
    print(f"\nmedians of {args.repeats}; phases of our entry point (seconds):")
    print(f"{'phase':<34} {'cold':>6} {'warm':>6}")
    for phase in cold[0]:
        print(
            f"{phase:<34} {statistics.median(r[phase] for r in cold):6.1f} "
            f"{statistics.median(r[phase] for r in warm):6.1f}"
        )
    ref = statistics.median(reference)
    print(f"{'plain PyTorch script':<34} {ref:6.1f}")
    print(
        f"ratio to the plain script: cold {statistics.median(r['total'] for r in cold) / ref:.2f}×, "
        f"warm {statistics.median(r['total'] for r in warm) / ref:.2f}×"
    )


if __name__ == "__main__":
    main()
