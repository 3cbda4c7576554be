# Two commands on a fresh machine:  make pipeline   (set-up + the default CPU pipeline)
#                                   make test       (set-up + the test suite)
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.act24-installed

.PHONY: setup pipeline report test test-gpu clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

pipeline: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

report: pipeline
	$(BIN)/snakemake --report report.html

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf results logs .snakemake report.html
