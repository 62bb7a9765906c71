# make demo: the whole local job end to end, offline, on generated data.
# make test: the full test suite. Both create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

# smdebug (SageMaker Debugger's hook library) breaks on numpy >= 2.3: the test of our hook runs it from
# an overlay with numpy 2.2, kept apart from the project's environment.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/smdebug --no-deps \
		smdebug==1.0.34 'numpy<2.3' pyinstrument==3.4.2 pyinstrument-cext==0.2.4
	touch $(STAMP)

DEMO_PORT ?= 8080

# Train on generated data, export ONNX + int8, package model.tar.gz, serve it, classify real photos, stop.
demo: $(STAMP)
	set -e; run=outputs/demo/$$(date +%Y-%m-%d_%H-%M-%S); \
	$(PY) -m dogbreed.train +experiment=demo hydra.run.dir=$$run; \
	$(PY) -m dogbreed.export $$run/model --calibration data/demo/valid --check data/demo/test; \
	$(PY) -m dogbreed.package $$run/model $$run/model.tar.gz; \
	$(PY) -m dogbreed.serve $$run/model.tar.gz --port $(DEMO_PORT) --log-level warning & server=$$!; \
	trap "kill $$server" EXIT; \
	$(PY) -m dogbreed.predict --url http://127.0.0.1:$(DEMO_PORT) --wait 60 --top-k 3 tests/data/real-dogs/*.jpg; \
	echo "model: $$run/model  package: $$run/model.tar.gz  serve it: $(PY) -m dogbreed.serve $$run/model"

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) bench/train_loop.py

clean:
	rm -rf outputs data/demo .pytest_cache .ruff_cache
