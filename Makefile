# sgnb set-up and checks. `make test` is what CI runs (.ci/run).
#
#   make venv          .venv with torch 2.13.0 and sgnb installed editable with [test,serve]
#   make model         pull SmolLM2-135M-Instruct into $SGNB_CACHE (default ~/.cache/sgnb), once
#   make kernels       build the C++ CPU kernels into $SGNB_CACHE/kernels (a note, not a failure, without g++)
#   make demo          run a short real sgnb program
#   make browser-deps  Debian chromium for the browser tests (root + apt only; otherwise a note)
#   make test          venv, model, browser-deps, kernels and demo, then the whole pytest suite
#   make bench-envs    bench-only venvs: bench/.venv-constrained (outlines, xgrammar), bench/.venv-llama (~15 min build)

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
MODEL ?= smollm2-135m
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.sgnb-installed
PIP := $(BIN)/python -m pip --quiet
# This machine's pip config names local index folders that lack most packages; pip warns once per package.
PIP_NOISE := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: help venv model kernels demo browser-deps test bench-envs

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

venv: $(STAMP)

# Rebuilt when the dependency list changes; otherwise `make venv` is a no-op.
# torch goes first and pinned: an unpinned torch would pull a multi-GB CUDA build
# (this machine's pip config finds a local CPU wheel for torch==2.13.0).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
		|| { echo "error: $(PYTHON) is $$($(PYTHON) --version 2>&1); sgnb needs Python >= 3.10" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) \
		|| { echo "error: '$(PYTHON) -m venv' failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
	@echo "pip install --upgrade pip"; $(PIP) install --upgrade pip $(PIP_NOISE)
	@echo "pip install '$(TORCH_SPEC)'"; $(PIP) install '$(TORCH_SPEC)' $(PIP_NOISE)
	@echo "pip install -e '.[test,serve]'"; $(PIP) install -e '.[test,serve]' $(PIP_NOISE)
	@touch $(STAMP)

model: venv
	$(BIN)/sgnb pull $(MODEL)

# Built once per source change (about a minute); the engine would build it on first use otherwise. Without a
# C++ compiler the engine runs its torch path, so a failed build here is a note.
kernels: venv
	@$(BIN)/python -m sgnb.kernels.cpu_extension \
		|| echo "note: the C++ CPU kernels did not build; the engine will use its torch path" >&2

demo: venv model kernels
	$(BIN)/python -m sgnb.demo

browser-deps:
	@if command -v chromium >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
			|| echo "note: apt-get could not install chromium; browser tests will not run" >&2; \
	else \
		echo "note: chromium is missing and cannot be installed here (needs root and apt-get); browser tests will not run" >&2; \
	fi

# pytest's exit status is make's: failures fail, and exit 5 (no tests collected) fails too.
test: venv model browser-deps kernels demo
	@rc=0; $(BIN)/pytest -q -ra -p no:cacheprovider --timeout=600 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
	exit $$rc

# Bench-only venvs, never part of .venv or the tests: the baselines of bench/constrained_json.py
# (outlines, xgrammar; torch pinned first as above) and of `bench/fewshot.py --llama-python`
# (llama-cpp-python, compiled from source). Each is rebuilt when its requirements file changes.
bench-envs: bench/.venv-constrained/.installed bench/.venv-llama/.installed

bench/.venv-constrained/.installed: bench/requirements-constrained.txt
	@test -x bench/.venv-constrained/bin/python || $(PYTHON) -m venv bench/.venv-constrained
	@echo "bench/.venv-constrained: pip install '$(TORCH_SPEC)' -r $<"
	@bench/.venv-constrained/bin/python -m pip --quiet install '$(TORCH_SPEC)' $(PIP_NOISE)
	@bench/.venv-constrained/bin/python -m pip --quiet install -r $< $(PIP_NOISE)
	@touch $@

bench/.venv-llama/.installed: bench/requirements-llama.txt
	@test -x bench/.venv-llama/bin/python || $(PYTHON) -m venv bench/.venv-llama
	@echo "bench/.venv-llama: pip install -r $< (compiles llama.cpp)"
	@bench/.venv-llama/bin/python -m pip --quiet install -r $< $(PIP_NOISE)
	@touch $@
