# `make demo` (set-up, then the end-to-end demo), `make lab` (set-up, then JupyterLab on the
# notebooks) and `make test` (set-up, then pytest, the browser test and nbval over every notebook).
# All create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo lab notebooks test lint bench clean

$(STAMP): requirements-cpu.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-cpu.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/visa demo

# JupyterLab on the notebooks folder (opens http://localhost:8888/lab; Ctrl-C stops it).
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Headless runs save text progress bars, not widgets that show "0%" once reopened: with QT_API set,
# tqdm.auto chooses its console bar (tqdm/autonotebook.py), whose last line stays in the output.
HEADLESS := MPLBACKEND=module://matplotlib_inline.backend_inline QT_API=pyqt5

# Re-execute every notebook in place (the committed outputs); slow (~20 min on 2 cores).
# One notebook: make notebooks NOTEBOOKS=05_xmem_propagation.ipynb. The second nbconvert pass merges
# each cell's stream outputs and resolves carriage returns, so a bar is saved as its final line.
NOTEBOOKS ?= *.ipynb
notebooks: setup
	cd notebooks && for nb in $(NOTEBOOKS); do \
	  $(HEADLESS) ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace "$$nb" && \
	  ../$(VENV)/bin/jupyter nbconvert --to notebook --inplace --coalesce-streams "$$nb" || exit 1; done

test: setup
	$(PY) -m ruff check visa_lib tests benchmarks scripts
	$(PY) -m pytest -n 2 --dist loadfile -rs tests
	$(HEADLESS) $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-cell-timeout=900 notebooks

lint: setup
	$(PY) -m ruff check visa_lib tests benchmarks scripts

bench: setup
	$(PY) benchmarks/metrics_speed.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
