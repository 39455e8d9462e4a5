# nerfstudio-humanfeat: `make demo` and `make test` work from a fresh clone (they create .venv/ first).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.humanfeat-installed
DEMO_DATA ?= data/synth-demo
DEMO_OUT ?= outputs/demo
DEMO_STEPS ?= 1000
METHOD ?= ghnerf
# ns-humanfeat-bench flags, e.g. make bench-table BENCH_ARGS="--minutes 10 --max-steps 100000"
BENCH_ARGS ?= --max-steps 1000 --eval-every 250

.PHONY: install test viewer-test lint demo demo-data bench bench-table clean-demo

install: $(STAMP)

# Re-installs only when the package metadata changes; code is picked up through the editable install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[dev]"
	# the capture extra without its declared deps, which clash with nerfstudio's pins (docs/capture.md)
	$(BIN)/python -m pip install -q --no-deps mediapipe==0.10.14 flatbuffers
	@command -v ffmpeg >/dev/null || ln -sf "$$($(BIN)/python -c 'import imageio_ffmpeg as f; print(f.get_ffmpeg_exe())')" $(BIN)/ffmpeg
	@touch $@

test: install
	$(BIN)/python -m pytest -q tests

# The viewer in headless Chromium alone (installs Chromium when missing; a missing browser fails, never skips).
viewer-test: install
	bash scripts/install_browser.sh
	HUMANFEAT_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q tests/test_viewer_browser.py

lint: install
	$(BIN)/ruff check nerfstudio_humanfeat tests benchmarks
	$(BIN)/ruff format --check nerfstudio_humanfeat tests benchmarks

demo-data: install
	@test -f $(DEMO_DATA)/splits.json || $(BIN)/ns-humanfeat-synth --preset demo --output-dir $(DEMO_DATA)
	$(BIN)/ns-humanfeat-inspect --data $(DEMO_DATA)

demo: demo-data
	bash scripts/demo.sh $(METHOD) $(DEMO_DATA) $(DEMO_OUT) $(DEMO_STEPS)

bench: install
	$(BIN)/python benchmarks/bench_speed.py

# Table 1 of the GHNeRF paper on the synthetic bench split (trains every method; CPU budget from BENCH_ARGS).
bench-table: install
	$(BIN)/ns-humanfeat-bench $(BENCH_ARGS)

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_OUT)
