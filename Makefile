# Two commands on a fresh machine:  make pipeline   (set-up + the default CPU pipeline)
#                                   make test       (set-up + the test suite)
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= 2
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.act24-installed
EXTRAS ?= workflow,test,gpu,slurm
# torch first, the CPU build from PyTorch's CPU index; where that index is unreachable, from the default index
# (on Linux that is the CUDA build, several GB: set TORCH_INDEX to a reachable mirror of the CPU index instead).
# Then the package with its extras, every version pinned by the lock (used as constraints).
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements-lock.txt)
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu

.PHONY: setup pipeline report test test-gpu clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --timeout 30 --retries 1 --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION) \
	  || { echo "make setup: $(TORCH_INDEX) unreachable, torch $(TORCH_VERSION) from the default index" >&2; \
	       $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION); }
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[$(EXTRAS)]"
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
