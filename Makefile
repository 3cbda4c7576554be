# Two commands on a fresh machine:  make pipeline   (set-up + the default CPU pipeline)
#                                   make test       (set-up + the fast tier of the tests; make test-all: every test)
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

# A CUDA machine: torch from PyTorch's CUDA 13.0 index at the GPU lock's version, the package with the GPU extras
# and CUTLASS's headers, every version the GPU lock pins; then `act24 env` checks nvcc, CUTLASS, cuSPARSELt and
# xformers' kernels, a line each.
GPU_TORCH_INDEX   ?= https://download.pytorch.org/whl/cu130
GPU_TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements-gpu-lock.txt)
GPU_STAMP         := $(VENV)/.act24-gpu-installed

.PHONY: setup setup-gpu gpu-wheels pipeline report docs-notebooks test test-rest test-all test-gpu clean

setup: $(STAMP)

$(STAMP): requirements-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --timeout 30 --retries 1 --index-url $(TORCH_INDEX) torch==$(TORCH_VERSION) \
	  || { echo "make setup: $(TORCH_INDEX) unreachable, torch $(TORCH_VERSION) from the default index" >&2; \
	       $(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION); }
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup-gpu: $(GPU_STAMP)

$(GPU_STAMP): requirements-gpu-lock.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --index-url $(GPU_TORCH_INDEX) torch==$(GPU_TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -c requirements-gpu-lock.txt -e ".[workflow,test,gpu,cutlass]" \
	  nvidia-cuda-runtime-cu12
	touch $(GPU_STAMP) $(STAMP)
	$(BIN)/act24 env

# For a GPU machine without network: the wheels it needs beyond a CUDA PyTorch image, to copy there with the project.
gpu-wheels: $(STAMP)
	$(BIN)/act24 wheels --out wheels

pipeline: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

report: pipeline
	$(BIN)/snakemake --report report.html

# The notebooks executed on the committed reference (a copy beside reference/ without results/), for readers who
# do not run them: docs/notebooks/.
docs-notebooks: $(STAMP)
	rm -rf .docs-build && mkdir -p .docs-build/notebooks docs/notebooks && cp notebooks/*.ipynb .docs-build/notebooks/
	ln -s $(CURDIR)/reference .docs-build/reference
	cd .docs-build/notebooks && $(CURDIR)/$(BIN)/jupyter nbconvert --to notebook --execute \
	  --output-dir $(CURDIR)/docs/notebooks *.ipynb
	rm -rf .docs-build

# The fast tier: everything but Snakemake in subprocesses and the Triton interpreter's kernel matrix.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not workflow and not kernels"

# The rest (CI runs both): the workflow's planning, the tiny end-to-end pipeline and kills, the kernels.
test-rest: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or workflow or kernels"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu

clean:
	rm -rf results logs .snakemake report.html
