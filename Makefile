# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv with torch installed first (TORCH=... picks another build or version),
# then install xdream-rig with the server and dev extras.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install tools

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

test: lint tools
	$(BIN)/python -m pytest

# Quick iteration: lint, then every test but the slow ones (no browser, no ConvNet loops).
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"
