"""How good a model is, breed by breed, and whether an endpoint answers as the model does.

    python -m dogbreed.evaluate MODEL [--split test] [--data ROOT] [--out DIR]
    python -m dogbreed.evaluate MODEL --url http://127.0.0.1:8080 [--against MODEL]
    python -m dogbreed.evaluate MODEL --endpoint NAME [--region us-east-1]
    python -m dogbreed.evaluate RUN:eager --against RUN:int8

MODEL is a run dir, a `model/` folder, a `model.tar.gz` or a checkpoint, optionally with `:eager`, `:onnx`
or `:int8` (default: the runtime the server would pick). It gives the classes, the data root (recorded in
its config.json; `--data` overrides), and the calibration it serves. `--url` / `--endpoint` send the split
through a live endpoint instead; `--against` (a MODEL, a URL or `sagemaker:NAME`) runs a second target over
the same images. Writes `<out>/evaluation/` (default out: the run dir): metrics.json, predictions.csv,
report.html, report.md. Bad input is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dogbreed import command_line
from dogbreed.errors import exit_on_user_error
from dogbreed.evaluation.evaluate import FOLDER, evaluate
from dogbreed.evaluation.report import headline
from dogbreed.evaluation.targets import split_runtime


def default_out(model: str) -> Path:
    """The run dir: MODEL itself when it is one, else the folder that holds MODEL."""
    path = Path(split_runtime(model)[0])
    return path if (path / "model").is_dir() else path.parent


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.evaluate", __doc__)
    parser.add_argument("model", help="run dir, model/ folder, model.tar.gz or .ckpt (optionally :RUNTIME)")
    parser.add_argument("--split", default="test", help="the split folder under the data root")
    parser.add_argument("--data", type=Path, help="data root (default: the one in the model's config.json)")
    parser.add_argument("--out", type=Path, help="writes OUT/evaluation/ (default: the run dir)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running server with the SageMaker contract")
    target.add_argument("--endpoint", help="a SageMaker endpoint name")
    parser.add_argument("--against", help="a second MODEL, URL or sagemaker:NAME over the same images")
    parser.add_argument("--unseen", type=Path, help="images of classes the model never saw")
    parser.add_argument("--region", help="AWS region for SageMaker endpoints")
    parser.add_argument(
        "--wait", type=command_line.at_least(0, float), default=0, help="with a URL: wait this long for /ping"
    )
    parser.add_argument("--workers", type=command_line.at_least(0), default=2, help="dataloader processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    spec = args.url or (f"sagemaker:{args.endpoint}" if args.endpoint else None)
    out = args.out or default_out(args.model)
    with exit_on_user_error(verbose=args.verbose):
        outcome = evaluate(
            args.model,
            out,
            args.split,
            args.data,
            spec,
            args.against,
            args.unseen,
            args.workers,
            args.wait,
            args.region,
        )
    print(headline(outcome.metrics))
    if "against" in outcome.metrics:
        a = outcome.metrics["against"]
        print(f"against {a['name']}: top-1 agreement {a['top1_agreement']:.2%}, delta {a['top1_delta']:+.2%}")
    print(f"report: {out / FOLDER / 'report.html'}")
