# CytoEdge: `make demo` and `make test` do all set-up themselves on a fresh machine.
# Everything installs from the package registries; nothing else is downloaded at run time.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PIP      := $(BIN)/python -m pip
STAMP    := $(VENV)/.cytoedge-installed
DEMO     ?= demo
# onnx2tf runs onnxsim as a subprocess: the venv's bin/ must be on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all venv demo test browser clean constraints help

help:
	@echo "make demo   synthetic data -> train -> (convert, edge_app, bench as they land)"
	@echo "make test   install everything needed and run the test suite"

venv: $(STAMP)

# The venv is (re)built when pyproject.toml or the pinned constraints change.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -c requirements/constraints.txt -e '.[all]'
	touch $@

# Debian's Chromium for the browser test (a test tool's own browser download fails offline).
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "chromium missing: install Debian's 'chromium' package (the browser test needs it)" >&2; exit 1; fi

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/edge-train synth --out $(DEMO)/data --per-class 120 --frames 6 --seed 0
	$(BIN)/edge-train --data $(DEMO)/data --model shufflenet_v2_x1_0 --folds 2 --epochs 4 \
	    --lr 0.02 --out $(DEMO)/runs/shufflenet

constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^cytoedge' > requirements/constraints.new
	@echo "review requirements/constraints.new, then move it over requirements/constraints.txt"

clean:
	rm -rf $(DEMO) .pytest_cache
