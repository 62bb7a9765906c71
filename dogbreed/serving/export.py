"""Export a `model/` artifact to ONNX and to int8 ONNX, and check they agree with eager PyTorch.

    python -m dogbreed.export MODEL_DIR [--calibration IMAGE_DIR] [--check IMAGE_DIR]

int8 uses static quantisation (QDQ, per-channel weights; u8 activations × s8 weights is the AVX-512 VNNI
fast path) calibrated on real inputs, so it needs `--calibration`. An int8 model whose top-1 agrees with
eager fp32 on fewer than 99 % of the check images is not kept: the server then uses fp32 ONNX.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from dogbreed.atomic import atomic_file
from dogbreed.data.download import IMAGE_SUFFIXES
from dogbreed.data.images import decode_image
from dogbreed.errors import exit_on_user_error
from dogbreed.serving.artifact import INT8, ONNX, read_artifact
from dogbreed.serving.inference import Predictor, Request

log = logging.getLogger(__name__)
MIN_AGREEMENT = 0.99


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
    predictor = Predictor(model_dir, runtime="eager")
    return predictor.pixels(Request(images=[decode_image(f.read_bytes()) for f in files]))


def sensitive_nodes(onnx_path: Path) -> list[str]:
    """The first convolution and the classifier head: kept in fp32, they cost little time and keep
    top-1 faithful on inputs unlike the calibration set (measured: real photos vs a generated set)."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    return convs[:1] + [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]


def quantize_int8(model_dir: Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation of `model.onnx`, calibrated on `calibration` (N × 3 × H × W)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration[i : i + 8] for i in range(0, len(calibration), 8))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"pixels": batch}

    with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / INT8
        quant_pre_process(str(model_dir / ONNX), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sensitive_nodes(prepared),
        )
        os.replace(out, model_dir / INT8)
    return model_dir / INT8


def top1_agreement(model_dir: Path, runtime: str, pixels: np.ndarray) -> float:
    """Share of inputs whose top-1 class under `runtime` equals eager fp32's."""
    eager = Predictor(model_dir, "eager").probabilities(pixels).argmax(1)
    other = Predictor(model_dir, runtime).probabilities(pixels).argmax(1)
    return float((eager == other).mean())


def export(model_dir: Path, calibration_dir: Path | None, check_dir: Path | None, limit: int = 64) -> dict:
    """ONNX always; int8 when calibration images are given and it agrees with eager. Returns agreements."""
    export_onnx(model_dir)
    check_dir = check_dir or calibration_dir
    check = load_pixels(model_dir, image_files(check_dir, 256)) if check_dir else None
    report = {}
    if check is not None:
        report["onnx"] = top1_agreement(model_dir, "onnx", check)
    if calibration_dir is None:
        log.info("no --calibration images: int8 model not built")
        return report
    quantize_int8(model_dir, load_pixels(model_dir, image_files(calibration_dir, limit)))
    report["int8"] = top1_agreement(model_dir, "int8", check)
    if report["int8"] < MIN_AGREEMENT:
        (model_dir / INT8).unlink()
        log.warning("int8 top-1 agreement %.3f < %.2f: int8 model removed", report["int8"], MIN_AGREEMENT)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path, help="a model/ artifact folder")
    parser.add_argument("--calibration", type=Path, help="images for int8 calibration (e.g. data/x/valid)")
    parser.add_argument("--check", type=Path, help="images for the agreement check (default: calibration)")
    parser.add_argument("--limit", type=int, default=64, help="calibration images to use")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for folder in (args.calibration, args.check):
        if folder is not None and not folder.is_dir():
            parser.error(f"{folder} is not a folder of images")
    with exit_on_user_error():
        report = export(args.model_dir, args.calibration, args.check, args.limit)
    for runtime, agreement in report.items():
        print(f"{runtime}: top-1 agreement with eager fp32 {agreement:.1%}")
    print(f"exported: {', '.join(p.name for p in sorted(args.model_dir.glob('*.onnx')))}")


if __name__ == "__main__":
    main()
