# Two commands do all the set-up on a fresh machine:
#   make study   builds the environment and runs the embedded micro study (cpu-words-10m preset;
#                SEED=N: a replicate, compare replicates with `rlscale replicates DIR...`)
#   make test    builds the environment and runs the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STUDY_OUT ?= studies/micro
PRESET ?= cpu-words-10m
SEED ?=

VERL_VENV := .venv-verl

.PHONY: study test env verl-env clean

# What the study needs; the test extras (TRL, Ray, hypothesis: the peers the tests run against)
# come on top, for `make test` only, so a fresh-clone `make study` does not wait for them.
# Byte-code: pip's own compilation runs on one core (85 s of a 152 s install here), so pip does
# none. This machine runs Python with PYTHONDONTWRITEBYTECODE=1, where an uncompiled module is
# recompiled by every process that imports it, so the study runs with it cleared: each module it
# imports (~2,700 of the venv's ~12,300) is compiled once, by its first importer (a fresh-clone
# smoke study with its set-up 28 s, against 40 s after a `compileall` of the whole venv, session
# 38). The test suite's many processes import more: `make test` compiles the whole venv first.
#
# The installer: the CPU build of torch goes in the same call as the project, so the resolver
# takes it and never reaches for a CUDA build. Which torch file that is, pip says (its own
# configuration knows where this machine keeps the CPU build; the system's pip answers for the
# venv's Python). Where that file lies on disk, uv installs it with the rest, resolving and
# fetching in parallel, into a venv made without ensurepip's copy of pip (uv adds pip): a fresh
# clone's set-up in ~10 s against pip's 24-32 s here, the same packages. Where it does not,
# pip does it all.
TORCH := torch==2.13.0
TORCH_FILE = $(PY) -m pip install -q --dry-run --no-deps --ignore-installed --report - $(TORCH) \
	2>/dev/null | $(PY) -c 'import json, sys; \
	print(json.load(sys.stdin)["install"][0]["download_info"]["url"])' 2>/dev/null
define install
	url=$$($(TORCH_FILE)); \
	if case "$$url" in file://*) true ;; *) false ;; esac && { [ -x $(BIN)/uv ] || \
	    $(PY) -m pip --python $(BIN)/python install -q uv 2>/dev/null; }; then \
	  $(BIN)/uv pip install -q --python $(BIN)/python "torch @ $$url" $(1); \
	else \
	  $(BIN)/python -m pip --version > /dev/null 2>&1 || $(BIN)/python -m ensurepip --default-pip > /dev/null; \
	  $(BIN)/python -m pip install -q --no-compile $(TORCH) $(1); \
	fi
endef

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv --without-pip $(VENV)
	$(call install,pip -e .)
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(call install,-e '.[test]')
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $@

env: $(BIN)/.installed

# verl 0.9.1 without its heavy pins, for the test that runs verl's own config validation on an
# exported launch (tests/test_verl.py finds it at .venv-verl or $$RLSCALE_VERL_PYTHON).
# Its own venv: verl pins transformers below the main env's. The CPU torch first, always pinned.
$(VERL_VENV)/.installed:
	$(PY) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/pip install -q --upgrade pip
	$(VERL_VENV)/bin/pip install -q torch==2.13.0
	$(VERL_VENV)/bin/pip install -q --no-deps verl==0.9.1
	$(VERL_VENV)/bin/pip install -q hydra-core omegaconf numpy 'tensordict>=0.8,<0.11' \
	    'transformers>=5.5.3,<5.11' ray codetiming datasets pillow
	touch $@

# lm-eval 0.4.13 in the same interop env, for the test that builds its k-shot chat prompts
# (tests/lmeval_prompts.py): its task code needs datasets (above) and sacrebleu, not its
# metrics' heavy pins. A stamp of its own, so an env built before gains it.
$(VERL_VENV)/.installed-lmeval: $(VERL_VENV)/.installed
	$(VERL_VENV)/bin/pip install -q --no-deps lm_eval==0.4.13
	$(VERL_VENV)/bin/pip install -q sacrebleu
	touch $@

verl-env: $(VERL_VENV)/.installed $(VERL_VENV)/.installed-lmeval

study: $(BIN)/.installed
	PYTHONDONTWRITEBYTECODE= $(BIN)/rlscale study --preset $(PRESET) --out $(STUDY_OUT) $(if $(SEED),--seed $(SEED))

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(VERL_VENV) build *.egg-info
