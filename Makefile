# make demo: the whole local job end to end, offline, on generated data.
# make test: the full test suite. Both create .venv and install the project first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test browser java stacks lint format bench clean

# smdebug (SageMaker Debugger's hook library) breaks on numpy >= 2.3: the test of our hook runs it from
# an overlay with numpy 2.2, kept apart from the project's environment.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/smdebug --no-deps \
		smdebug==1.0.34 'numpy<2.3' pyinstrument==3.4.2 pyinstrument-cext==0.2.4
	touch $(STAMP)

DEMO_PORT ?= 8080

# Train on generated data, export ONNX + int8, package model.tar.gz, serve it, classify real photos, stop
# (dogbreed/demo.py: the server ends with the demo, on Ctrl-C and SIGTERM alike).
demo: $(STAMP)
	$(PY) -m dogbreed.demo --port $(DEMO_PORT)

# The demo-page test drives Debian's Chromium headless: installed through apt when missing and possible,
# otherwise one line says what to install (the test never skips silently).
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the demo-page test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "error: the demo-page test needs Chromium at $(CHROMIUM): install it (Debian/Ubuntu: sudo apt-get install chromium) or pass CHROMIUM=/path/to/chromium" >&2; \
	    exit 2; \
	  fi; }
	@test -x $(CHROMIUM) || { echo "error: apt-get ran but $(CHROMIUM) is still missing; pass CHROMIUM=/path/to/chromium" >&2; exit 2; }

# The PyTorch inference image's replayed stack runs real TorchServe, whose frontend needs Java 17 or newer,
# and a test rebuilds our /ping plugin for it with the Eclipse compiler, which runs on that JRE
# (launch/replay/stacks/ping_plugin.py): Debian's openjdk-17-jre-headless and ecj through apt when either
# is missing and possible (no JDK), otherwise one line says what to install.
JAVA ?= java
JAVA_MAJOR = $$($(JAVA) -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
JAVA_FOUND = test "$(JAVA_MAJOR)" -ge 17 2>/dev/null && command -v ecj >/dev/null
JAVA_PACKAGES = openjdk-17-jre-headless ecj
java:
	@$(JAVA_FOUND) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's $(JAVA_PACKAGES) for the TorchServe stack (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(JAVA_PACKAGES) >/dev/null; \
	  elif command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(JAVA_PACKAGES) >/dev/null; \
	  else \
	    echo "error: the TorchServe stack needs Java 17 or newer as $(JAVA) and ecj on PATH: install them (Debian/Ubuntu: sudo apt-get install $(JAVA_PACKAGES)) or pass JAVA=/path/to/java" >&2; \
	    exit 2; \
	  fi; }
	@$(JAVA_FOUND) || { echo "error: apt-get ran but $(JAVA) is still not Java 17 or newer, or ecj is not on PATH; pass JAVA=/path/to/java" >&2; exit 2; }

# The replayed images' own stacks (launch/replay/stacks) run in environments with each image's Python and
# packages, built from the package index and cached by content under ~/.cache/dogbreed/stacks
# (DOGBREED_STACKS): the Ray Serve image's needs Python 3.13 (pyenv's, or python3.13 on PATH) or stops with
# one line; the training image's and the PyTorch inference image's (TorchServe) need Python 3.12. Each
# holds its image's own torch (the index's CUDA builds: Ray Serve 2.10.0, 7.4 GB; training 2.14.0, 5.7 GB;
# TorchServe 2.6.0, 5.6 GB; 1½ min each quiet, ~8 min loaded), later runs find them. It lists the
# environments an older profile left; `$(PY) -m launch.replay.stacks --prune` deletes them.
stacks: $(STAMP)
	$(PY) -m launch.replay.stacks

test: $(STAMP) browser java stacks
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	DOGBREED_CHROMIUM=$(CHROMIUM) $(PY) -m pytest

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) bench/train_loop.py

clean:
	rm -rf outputs data/demo .pytest_cache .ruff_cache
