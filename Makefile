# Two commands do all set-up on a fresh machine:  make demo   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.destatic-installed

# Prefect state stays inside the checkout; no telemetry; the embedded server
# gets time to start on a slow machine.
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
unexport PREFECT_API_URL

.PHONY: demo test test-all bench-deps bench clean-demo

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test,bench,dask,s3]"
	# An editable install is not byte-compiled; without this, every command
	# compiles destatic's modules again where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

# Optional: SoX, a peer in the DSP benchmarks (Debian/Ubuntu).
bench-deps:
	command -v sox >/dev/null || sudo apt-get install -y sox

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_overhead.py

clean-demo:
	rm -rf out/demo
