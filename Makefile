# Two commands that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv if absent and installs synthseq (editable, with [dev]) before running.
PYTHON ?= python3
DEMO_OUT ?= demo_out/$(shell date +%Y%m%d-%H%M%S)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/synthseq demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check synthseq tests benchmarks train.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --device cpu

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
