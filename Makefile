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

.PHONY: all venv demo test test-fast browser postgresql clean constraints help

help:
	@echo "make demo   synthetic data -> train -> convert int8 -> edge-app on frames -> bench report (in demo/)"
	@echo "make test   install everything needed and run the test suite"
	@echo "make test-fast  the suite without the tests marked slow (conversions, trainings, torchrun, the browser)"
	@echo "make pi-check  the Raspberry Pi path on an emulated Pi 4 / Pi 5, compared with x86 (root; after make test)"

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

# Debian's PostgreSQL server programs for the tune test across machines (the test starts its own server).
postgresql:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "postgresql missing: install Debian's 'postgresql' package (the tune test across machines needs it)" >&2; exit 1; fi

test: $(STAMP) browser postgresql
	$(BIN)/python -m pytest -q

# pytest exits 5 when the marker leaves no test: that fails too.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The whole chain on synthetic data, offline. EfficientNet-Lite0 from the ImageNet weights that install with
# the [train] extra (no download), the hybrid loss at the paper's lambda = 1 on the L2-normalised embedding,
# 128 px, 4 epochs on half of the crops (the recipe measured at 79.0 % held-out in the embedding comparison of
# docs/measurements.md#measured-on-this-machine); the last line is the held-out accuracy it reached
# (README "The two commands").
# --threads 2: the same seed, thread count and CPU give the same weights bit for bit (edge-train --threads).
DEMO_RUN   := $(DEMO)/runs/lite0
DEMO_MODEL := $(DEMO)/models/lite0
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/edge-train synth --out $(DEMO)/data --per-class 200 --frames 8 --fields 6 --seed 0
	$(BIN)/edge-train synth --out $(DEMO)/heldout --per-class 40 --frames 2 --seed 1
	$(BIN)/edge-train --data $(DEMO)/data --model efficientnet_lite0 --pretrained --input-size 128 --folds 2 --fold 0 \
	    --epochs 4 --lr 0.01 --threads 2 --out $(DEMO_RUN)
	$(BIN)/edge-convert $(DEMO_RUN)/fold_0 --int8 --out $(DEMO_MODEL)
	$(BIN)/edge-app --model $(DEMO_MODEL) --source $(DEMO)/data/fields --slide demo \
	    --out $(DEMO)/cytoedge-data --save-annotated
	$(BIN)/edge-app report --slide demo --out $(DEMO)/cytoedge-data
	$(BIN)/edge-app classify --model $(DEMO_MODEL) $(DEMO)/data/ood --json $(DEMO)/ood.json --no-table
	$(BIN)/bench-device $(DEMO_MODEL) --data $(DEMO)/heldout \
	    --frames $(DEMO)/data/fields --out $(DEMO)/results
	$(BIN)/bench-device report $(DEMO)/results -o $(DEMO)/report.md
	@echo "demo: runs in $(DEMO_RUN), model in $(DEMO_MODEL), slide store in $(DEMO)/cytoedge-data,"
	@echo "      bench report $(DEMO)/report.md + $(DEMO)/report.html; browse: $(BIN)/edge-app serve --out $(DEMO)/cytoedge-data"
	@$(BIN)/python -m cytoedge.benchmarks.demo_summary $(DEMO)/results

# The Raspberry Pi path on an emulated Pi 4 and Pi 5 (qemu-user, Debian bookworm arm64), compared with
# x86: hardware/pi/check/pi-check.sh. Needs root (it installs Debian's qemu-user-static when missing).
# Nothing is built under emulation: the Pi's root and wheels are unpacked on the host and cached in
# ~/.cache/cytoedge (keyed by hardware/pi/requirements.txt); cold about 10 min on 2 shared cores (docs/pi-check.md).
# An existing x86 venv (VENV=DIR, or the .venv make test built) is used as it is, never reinstalled here.
.PHONY: pi-check
pi-check:
	@test -x $(BIN)/edge-convert || $(MAKE) venv
	VENV=$(abspath $(VENV)) bash hardware/pi/check/pi-check.sh

constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^cytoedge' > requirements/constraints.new
	@echo "review requirements/constraints.new, then move it over requirements/constraints.txt"

clean:
	rm -rf $(DEMO) .pytest_cache
