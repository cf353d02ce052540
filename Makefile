# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with torch installed first (TORCH=... picks another build or version),
# then install xdream-rig with the server and dev extras.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

install: $(STAMP)

# A short in-silico session with the offline default generator and optimizer.
demo: $(STAMP)
	$(BIN)/xdream evolve --target efficientnet-lite0:_fc:1 --budget 1000 --seed 0 \
		--out out/demo-$$(date +%Y%m%d-%H%M%S)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest
