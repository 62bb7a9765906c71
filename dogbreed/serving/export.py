"""Export a `model/` artifact to ONNX and to int8 ONNX, and check they agree with eager PyTorch.

    python -m dogbreed.export MODEL_DIR [--calibration IMAGE_DIR] [--check IMAGE_DIR]

int8 uses static quantisation (QDQ, per-channel weights; u8 activations × s8 weights is the AVX-512 VNNI
fast path) calibrated on real inputs, so it needs `--calibration`. The gate: top-1 agreement with eager fp32
of at least 99 % on a check set of at least 200 inputs (the `--check` images, in up to four views each), so
that the gate allows at most 1 disagreement in 100, never "0 of 60". To pass it, export tries the
calibration methods MinMax, Entropy and Percentile and keeps the best; if that is still short, it measures
each layer's quantisation error (SQNR against fp32) and leaves the worst layers in fp32, one at a time
(up to `MAX_FP32_LAYERS`). It prints what it chose and why; an int8 model that still fails is removed, and
the server uses fp32 ONNX.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dogbreed import command_line
from dogbreed.atomic import atomic_file
from dogbreed.data.download import IMAGE_SUFFIXES
from dogbreed.data.images import decode_image
from dogbreed.data.transforms import eval_transform_from_config
from dogbreed.errors import exit_on_user_error
from dogbreed.serving.artifact import INT8, ONNX, read_artifact
from dogbreed.serving.service import Request, Service

log = logging.getLogger(__name__)
MIN_AGREEMENT = 0.99
MIN_CHECK_INPUTS = 200  # 99 % of 200: at most 2 disagreements; of 60 it would have been none
METHODS = ("MinMax", "Entropy", "Percentile")
MAX_FP32_LAYERS = 3  # beyond the first convolution and the head, which always stay fp32


def export_onnx(model_dir: Path) -> Path:
    """`model.onnx` with a dynamic batch axis, written atomically next to `model.pt`."""
    net, _, config = read_artifact(model_dir)
    size = config["preprocessing"]["image_size"]
    example = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with atomic_file(model_dir / ONNX) as tmp:
        torch.onnx.export(
            net,
            (example,),
            str(tmp),
            input_names=["pixels"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    return model_dir / ONNX


def image_files(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    step = max(1, len(files) // limit)
    return files[::step][:limit]  # spread over classes, not the first folder only


def load_pixels(model_dir: Path, files: list[Path]) -> np.ndarray:
    service = Service(model_dir, runtime="eager")
    return service.pixels(Request(images=[decode_image(f.read_bytes()) for f in files]))


def check_set(model_dir: Path, folder: Path, minimum: int = MIN_CHECK_INPUTS) -> np.ndarray:
    """The check images as the server sees them, plus — while fewer than `minimum` — the same images
    mirrored, resized whole (no centre crop), and both: inputs a photo could just as well have been."""
    service = Service(model_dir, runtime="eager")
    images = [decode_image(f.read_bytes()) for f in image_files(folder, 512)]
    size = service.image_size
    whole = eval_transform_from_config({**service.config["preprocessing"], "resize_size": size})
    views = [np.stack([service.transform(i) for i in images])]
    views.append(views[0][..., ::-1])
    views.append(np.stack([whole(i) for i in images]))
    views.append(views[2][..., ::-1])
    needed = next((k for k in range(1, 5) if k * len(images) >= minimum), 4)
    return np.ascontiguousarray(np.concatenate(views[:needed]))


def sensitive_nodes(onnx_path: Path) -> list[str]:
    """The first convolution and the classifier head: kept in fp32, they cost little time and keep
    top-1 faithful on inputs unlike the calibration set (measured: real photos vs a generated set)."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    return convs[:1] + [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]


def quantize_int8(
    model_dir: Path, calibration: np.ndarray, method: str = "MinMax", keep_fp32: Sequence[str] = ()
) -> Path:
    """Static int8 quantisation of `model.onnx`, calibrated on `calibration` (N × 3 × H × W) with
    `method`; the first convolution, the head and the nodes `keep_fp32` stay in fp32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / INT8
        with contextlib.redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quant_pre_process(str(model_dir / ONNX), str(prepared))
            quantize_static(
                str(prepared),
                str(out),
                batches(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[*sensitive_nodes(prepared), *keep_fp32],
                calibrate_method=CalibrationMethod[method],
            )
        os.replace(out, model_dir / INT8)
    return model_dir / INT8


def batches(pixels: np.ndarray, size: int = 8) -> Any:
    """`pixels` as ONNX Runtime's calibration data reader, in equal batches of `size` (the histogram
    calibrators stack batches, so a short last batch is dropped)."""
    from onnxruntime.quantization import CalibrationDataReader

    size = max(1, min(size, len(pixels)))
    pixels = pixels[: len(pixels) // size * size]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(pixels[i : i + size] for i in range(0, len(pixels), size))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.rest, None)
            return None if batch is None else {"pixels": batch}

    return Reader()


def worst_layers(model_dir: Path, pixels: np.ndarray, skip: Sequence[str]) -> list[str]:
    """Convolutions ordered by the signal-to-quantisation-noise ratio of their output in the int8 model
    against fp32 (lowest first): the layers whose quantisation hurts most."""
    import onnx
    from onnxruntime.quantization import qdq_loss_debug as debug

    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        debug.modify_model_output_intermediate_tensors(str(model_dir / ONNX), str(fp32))
        debug.modify_model_output_intermediate_tensors(str(model_dir / INT8), str(int8))
        matching = debug.create_activation_matching(
            debug.collect_activations(str(int8), batches(pixels)),
            debug.collect_activations(str(fp32), batches(pixels)),
        )
        errors = debug.compute_activation_error(matching)
        producers = {
            o: n.name
            for n in onnx.load(str(model_dir / ONNX)).graph.node
            if n.op_type == "Conv"
            for o in n.output
        }
    scored = [
        (float(err["xmodel_err"]), producers[name]) for name, err in errors.items() if name in producers
    ]
    return [node for _, node in sorted(scored) if node not in skip]


def top1_agreement(model_dir: Path, runtime: str, pixels: np.ndarray) -> float:
    """Share of inputs whose top-1 class under `runtime` equals eager fp32's."""
    eager = Service(model_dir, "eager").probabilities(pixels).argmax(1)
    other = Service(model_dir, runtime).probabilities(pixels).argmax(1)
    return float((eager == other).mean())


def agreement_text(agreement: float, inputs: int) -> str:
    return f"{agreement:.1%} ({round((1 - agreement) * inputs)} of {inputs} disagree)"


def export(model_dir: Path, calibration_dir: Path | None, check_dir: Path | None, limit: int = 64) -> dict:
    """ONNX always; int8 when calibration images are given and it passes the gate. Returns what was chosen
    and measured: agreements, the calibration method, the layers kept in fp32."""
    export_onnx(model_dir)
    check_dir = check_dir or calibration_dir
    check = check_set(model_dir, check_dir) if check_dir else None
    report: dict[str, Any] = {}
    if check is not None:
        report["check_inputs"] = len(check)
        report["allowed_disagreements"] = int((1 - MIN_AGREEMENT) * len(check) + 1e-9)
        report["onnx"] = top1_agreement(model_dir, "onnx", check)
    if calibration_dir is None:
        log.info("no --calibration images: int8 model not built")
        return report
    calibration = load_pixels(model_dir, image_files(calibration_dir, limit))
    tried = {}
    with tempfile.TemporaryDirectory(dir=model_dir) as candidates:
        for method in METHODS:  # each candidate measured in place, then kept aside
            quantize_int8(model_dir, calibration, method)
            tried[method] = top1_agreement(model_dir, "int8", check)
            os.replace(model_dir / INT8, Path(candidates) / f"{method}.onnx")
            log.info(
                "int8 calibrated with %s: top-1 agreement %s",
                method,
                agreement_text(tried[method], len(check)),
            )
        method = max(METHODS, key=lambda m: tried[m])  # ties: the first, MinMax, the cheapest to redo
        os.replace(Path(candidates) / f"{method}.onnx", model_dir / INT8)
    report.update(int8_methods=tried, int8_method=method, int8_fp32_layers=[])
    agreement = tried[method]
    if agreement < MIN_AGREEMENT:
        ranked = worst_layers(model_dir, check[:32], skip=())
        for layer in ranked[:MAX_FP32_LAYERS]:
            report["int8_fp32_layers"].append(layer)
            quantize_int8(model_dir, calibration, method, report["int8_fp32_layers"])
            agreement = top1_agreement(model_dir, "int8", check)
            log.info(
                "int8 with %s also in fp32: top-1 agreement %s", layer, agreement_text(agreement, len(check))
            )
            if agreement >= MIN_AGREEMENT:
                break
    report["int8"] = agreement
    report["int8_kept"] = agreement >= MIN_AGREEMENT
    if not report["int8_kept"]:
        (model_dir / INT8).unlink()
    return report


def describe(report: dict[str, Any]) -> list[str]:
    """What export chose and why, for a person."""
    lines = []
    if "check_inputs" in report:
        n, allowed = report["check_inputs"], report["allowed_disagreements"]
        lines.append(f"check set: {n} inputs; the {MIN_AGREEMENT:.0%} gate allows {allowed} disagreement(s)")
        lines.append(f"onnx fp32: top-1 agreement with eager {agreement_text(report['onnx'], n)}")
    if "int8" in report:
        n = report["check_inputs"]
        methods = ", ".join(f"{m} {a:.1%}" for m, a in report["int8_methods"].items())
        lines.append(f"int8 calibration: {methods} → {report['int8_method']}")
        if report["int8_fp32_layers"]:
            lines.append(
                f"int8 layers left in fp32 (worst SQNR first): {', '.join(report['int8_fp32_layers'])}"
            )
        verdict = "kept" if report["int8_kept"] else "removed: the server uses fp32 ONNX"
        lines.append(f"int8: top-1 agreement {agreement_text(report['int8'], n)} → {verdict}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.export", __doc__)
    parser.add_argument("model_dir", type=Path, help="a model/ artifact folder")
    parser.add_argument("--calibration", type=Path, help="images for int8 calibration (e.g. data/x/valid)")
    parser.add_argument("--check", type=Path, help="images for the agreement check (default: calibration)")
    parser.add_argument(
        "--limit", type=command_line.at_least(1), default=64, help="calibration images to use"
    )
    args = parser.parse_args(argv)
    # our progress lines; the exporter's and quantizer's INFO chatter (onnx_ir passes, shape inference) not
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("dogbreed").setLevel(logging.INFO)
    for folder in (args.calibration, args.check):
        if folder is not None and not folder.is_dir():
            parser.error(f"{folder} is not a folder of images")
    with exit_on_user_error(verbose=args.verbose):
        report = export(args.model_dir, args.calibration, args.check, args.limit)
        for line in describe(report):
            print(line)
        print(f"exported: {', '.join(p.name for p in sorted(args.model_dir.glob('*.onnx')))}")


if __name__ == "__main__":
    main()
