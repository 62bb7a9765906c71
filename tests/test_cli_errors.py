"""The argparse commands end as the training app does (`dogbreed.command_line`, `dogbreed.errors`): a bad
argument is one `error:` line with exit code 2; an unexpected error one sentence with exit code 1; `--verbose`
or HYDRA_FULL_ERROR=1 lets its trace through. In-process calls of each `main(argv)`; one subprocess shows
the trace a user sees with `--verbose`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

MISSING = "/nonexistent/dogbreed-model"

# (module with the main, argv, what the one line must say)
BAD_ARGUMENTS = [
    ("dogbreed.serving.server", [MISSING], f"MODEL {MISSING} does not exist"),
    (
        "dogbreed.serving.server",
        ["{model}", "--port", "abc"],
        "argument --port: must be an integer, not 'abc'",
    ),
    ("dogbreed.serving.server", ["{model}", "--port", "70000"], "must be a port (0 to 65535), not 70000"),
    ("dogbreed.serving.server", ["{model}", "--max-batch-size", "0"], "--max-batch-size: must be ≥ 1, not 0"),
    ("dogbreed.serving.predict", [MISSING, "photo.jpg"], f"{MISSING} does not exist"),
    ("dogbreed.serving.predict", ["--top-k", "0", "{model}", "photo.jpg"], "--top-k: must be ≥ 1, not 0"),
    ("dogbreed.serving.predict", ["{model}"], "give MODEL and at least one IMAGE"),
    ("dogbreed.serving.export", [MISSING], f"{MISSING} is not a dogbreed model"),
    (
        "dogbreed.serving.export",
        ["{model}", "--calibration", MISSING],
        f"{MISSING} is not a folder of images",
    ),
    ("dogbreed.serving.export", ["{model}", "--limit", "nan"], "--limit: must be an integer, not 'nan'"),
    ("dogbreed.serving.package", [MISSING, "{model}/out.tar.gz"], f"{MISSING} is not a dogbreed model"),
    ("dogbreed.serving.package", ["{model}"], "the following arguments are required: out"),
    ("dogbreed.debug.report", ["{model}"], "has no metrics.csv"),
    ("dogbreed.evaluation.command", [MISSING], f"{MISSING} does not exist"),
    ("dogbreed.evaluation.command", ["{model}", "--wait", "-1"], "--wait: must be ≥ 0, not -1"),
    ("dogbreed.demo", ["--port", "-5"], "--port: must be ≥ 0, not -5"),
]

# (module, argv, the function its main calls that is made to fail)
UNEXPECTED = [
    ("dogbreed.serving.server", ["{model}"], "create_app"),
    ("dogbreed.serving.predict", ["{model}", "photo.jpg"], "photos"),
    ("dogbreed.serving.export", ["{model}"], "export"),
    ("dogbreed.serving.package", ["{model}", "{model}/out.tar.gz"], "build_model_tar"),
    ("dogbreed.debug.report", ["{model}"], "write_report"),
    ("dogbreed.evaluation.command", ["{model}"], "evaluate"),
]


def call(module: str, argv: list[str], folder: Path) -> int:
    """`main(argv)` of `module`, {model} standing for an existing folder; its exit code."""
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(model=folder) for arg in argv])
    return stopped.value.code


def explode(*args, **kwargs):
    raise RuntimeError("boom\n  deep in a library")


@pytest.mark.parametrize(("module", "argv", "said"), BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_and_exit_2(module, argv, said, tmp_path, capsys) -> None:
    assert call(module, argv, tmp_path) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert said in captured.err and "Traceback" not in captured.err
    assert sorted(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(("module", "argv", "target"), UNEXPECTED)
def test_an_unexpected_error_is_one_sentence_exit_1_and_verbose_shows_it(
    module, argv, target, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(importlib.import_module(module), target, explode)
    assert call(module, argv, tmp_path) == 1
    err = capsys.readouterr().err
    assert err == "error: RuntimeError: boom deep in a library (--verbose shows the trace)\n"
    main = importlib.import_module(module).main
    with pytest.raises(RuntimeError, match="boom"):
        main(["--verbose", *(arg.format(model=tmp_path) for arg in argv)])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the Hydra apps' switch works here too
    with pytest.raises(RuntimeError, match="boom"):
        main([arg.format(model=tmp_path) for arg in argv])


def test_verbose_shows_the_trace_on_the_console(tmp_path: Path) -> None:
    forced = (
        "import sys, dogbreed.debug.report as r\n"
        "def explode(*a): raise RuntimeError('boom')\n"
        "r.write_report = explode\n"
        "r.main(sys.argv[1:])\n"
    )
    loud = subprocess.run(
        [sys.executable, "-c", forced, str(tmp_path), "--verbose"], capture_output=True, text=True
    )
    assert loud.returncode == 1 and "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.rstrip().endswith("RuntimeError: boom")


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("dogbreed.serving.package", ["{model}", "{out}/model.tar.gz"]),
        ("dogbreed.serving.export", ["{model}"]),
        ("dogbreed.serving.predict", ["{model}", "{model}/config.json"]),
    ],
)
def test_an_unreadable_model_file_is_one_line_naming_it(module, argv, tmp_path, capsys) -> None:
    model, out = tmp_path / "model", tmp_path / "out"
    model.mkdir()
    for name in ("model.pt", "classes.json", "config.json"):
        (model / name).write_bytes(b"\x00not what it should be")
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stopped:
        main([arg.format(model=model, out=out) for arg in argv])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and "is corrupt or unreadable" in err, err
    assert not out.exists() and sorted(p.name for p in model.iterdir()) == sorted(
        ["model.pt", "classes.json", "config.json"]
    )


def test_a_package_of_a_missing_extra_is_one_line_with_the_pip_command(capsys) -> None:
    """torch.onnx.export imports onnxscript only when it runs: export on a core-only install."""
    from dogbreed.errors import exit_on_user_error

    with pytest.raises(SystemExit) as stopped, exit_on_user_error(verbose=False):
        raise ModuleNotFoundError("No module named 'onnxscript'", name="onnxscript")
    assert stopped.value.code == 2
    said = "onnxscript is not installed; the `serve` extra has it: pip install 'dogbreed[serve]'"
    assert capsys.readouterr().err.strip() == f"error: {said}"


def test_the_local_server_without_the_serve_extra_says_what_to_install() -> None:
    hidden = (
        "import runpy, sys; "
        "sys.modules['uvicorn'] = None; runpy.run_module('dogbreed.serve', None, '__main__')"
    )
    out = subprocess.run([sys.executable, "-c", hidden, "--help"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        "error: uvicorn is not installed; the `serve` extra has it: pip install 'dogbreed[serve]'"
    )
