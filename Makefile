# `make demo` and `make test` are all a fresh clone needs: each creates .venv if it
# is missing, installs the project with its dev extra, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The CUDA build of torch and its libraries need about 7.5 GB free while installing
# (measured peak); pip's own "No space left on device" does not say how much.
MIN_FREE_GB ?= 8

$(STAMP): $(BIN)/python pyproject.toml
	@$(BIN)/python -c "import shutil, sys; free = shutil.disk_usage('$(VENV)').free / 2**30; \
	free < $(MIN_FREE_GB) and print(f'warning: {free:.1f} GB free where $(VENV) lives; installing torch needs about $(MIN_FREE_GB) GB. Free some space (old clones, pip cache) or set VENV to a bigger disk.', file=sys.stderr)"
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Source-only, then adapted, on rendered -> real digits (offline, a few minutes on 2 CPU cores).
demo: $(STAMP)
	$(BIN)/lightning-synth demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs lightning_logs .pytest_cache
