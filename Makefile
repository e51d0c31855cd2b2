# Two commands do all the set-up on a fresh machine:
#   make study   builds the environment and runs the embedded micro study (CPU preset)
#   make test    builds the environment and runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY_OUT ?= studies/micro
PRESET ?= cpu

.PHONY: study test env clean

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first (it lies on this machine's disk); then the rest, which it satisfies.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $@

env: $(BIN)/.installed

study: $(BIN)/.installed
	$(BIN)/rlscale study --preset $(PRESET) --out $(STUDY_OUT)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
