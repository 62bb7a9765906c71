"""The whole local path on generated data, offline: what `make demo` runs.

    python -m dogbreed.demo [--port 8080] [--run-dir outputs/demo/<time>] [--photos tests/data/real-dogs]

Train (`+experiment=demo`) → export ONNX and int8 → package `model.tar.gz` → serve it → classify the
photos through the server → stop the server → a short summary. Every step is the command a user would
type, run as a child process that ends with this one (SIGTERM or Ctrl-C stop the server too).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from dogbreed import command_line
from dogbreed.errors import DogBreedError, exit_on_user_error
from dogbreed.evaluation.report import headline
from dogbreed.processes import child, die_with_parent, raise_on_signals, run_child
from dogbreed.serving.service import runtime_for

RUNTIME_NAMES = {"int8": "ONNX Runtime int8", "onnx": "ONNX Runtime fp32", "eager": "eager PyTorch"}


def step(what: str, *args: str) -> None:
    """`python -m dogbreed.<args>`, announced; a failure stops the demo with the step's name."""
    print(f"\n== {what}: python -m {' '.join(args)}", flush=True)
    if run_child([sys.executable, "-m", *args]) != 0:
        raise DogBreedError(f"demo step failed: {what} (its output is above)")


def classify_through_server(tar: Path, port: int, photos: list[Path]) -> None:
    from dogbreed.data.images import content_type
    from dogbreed.serving.predict import format_predictions, url_classifier, wait_until_ready

    url = f"http://127.0.0.1:{port}"
    print(f"\n== serve: python -m dogbreed.serve {tar} --port {port}", flush=True)
    server = [sys.executable, "-m", "dogbreed.serve", str(tar), "--port", str(port), "--log-level", "warning"]
    with child(server):
        wait_until_ready(url, 60)
        classify = url_classifier(url)
        for photo in photos:
            print(format_predictions(str(photo), classify(photo.read_bytes(), content_type(photo), 3)))


def summary(run_dir: Path, tar: Path, port: int) -> str:
    """What a person reads last: how good the model is, where it is, what to do next."""
    config = json.loads((run_dir / "model" / "config.json").read_text())
    metrics = config.get("metrics", {})
    runtime = RUNTIME_NAMES[runtime_for(run_dir / "model")]
    classes = config["num_classes"]
    accuracy = metrics.get("test_acc", float("nan"))
    evaluation = run_dir / "evaluation"
    evaluated = json.loads((evaluation / "metrics.json").read_text())
    return f"""
== done
  test accuracy   {accuracy:.3f} on {classes} generated breeds (chance {1 / classes:.3f})
                  a model of generated shapes: the breeds it gives real photos are arbitrary
  evaluation      {evaluation / "report.html"}
                  {headline(evaluated)}
  model           {run_dir / "model"} (served with {runtime})
  package         {tar}
  serve it        python -m dogbreed.serve {tar} --port {port}
  open the page   http://127.0.0.1:{port}/
  the real job    python -m dogbreed.train +experiment=local   (dogImages + ImageNet weights)"""


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.demo", __doc__)
    parser.add_argument("--port", type=command_line.port, default=8080, help="the local endpoint's port")
    parser.add_argument("--run-dir", type=Path, help="default: outputs/demo/<date>_<time>")
    parser.add_argument("--photos", type=Path, default=Path("tests/data/real-dogs"))
    parser.add_argument("overrides", nargs="*", help="training overrides, e.g. trainer.max_epochs=1")
    args = parser.parse_args(argv)
    die_with_parent()  # `make demo` stopped: stop too
    raise_on_signals()
    run_dir = args.run_dir or Path("outputs/demo") / time.strftime("%Y-%m-%d_%H-%M-%S")
    photos = sorted(args.photos.glob("*.jpg"))
    with exit_on_user_error(verbose=args.verbose):
        step("train", "dogbreed.train", "+experiment=demo", f"hydra.run.dir={run_dir}", *args.overrides)
        data = Path(OmegaConf.load(run_dir / "config.yaml").data.root)
        model, tar = run_dir / "model", run_dir / "model.tar.gz"
        step(
            "export",
            "dogbreed.export",
            str(model),
            "--calibration",
            str(data / "valid"),
            "--check",
            str(data / "test"),
        )
        step("package", "dogbreed.package", str(model), str(tar))
        if photos:
            classify_through_server(tar, args.port, photos)
        print(summary(run_dir, tar, args.port))


if __name__ == "__main__":
    main()
