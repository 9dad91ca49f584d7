# Two commands: `make demo` (set-up, then the end-to-end demo) and `make test` (set-up, then
# pytest + nbval over every notebook). Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(STAMP): requirements-cpu.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-cpu.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/visa demo

test: setup
	$(PY) -m ruff check visa_lib tests benchmarks scripts
	$(PY) -m pytest -n 2 --dist loadfile tests
	$(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-cell-timeout=900 notebooks

lint: setup
	$(PY) -m ruff check visa_lib tests benchmarks scripts

bench: setup
	$(PY) benchmarks/metrics_speed.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
