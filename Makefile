# alignment-harness
#   make demo    set up, then run the default comparison
#   make test    set up, then run the test suite
#   make setup   create .venv with the pinned stack (fast when already done)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# No hub is needed: the testbed builds its own model and data. Tests must never reach for one.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline WANDB_SILENT=true

.PHONY: setup demo test lint clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(OFFLINE) $(BIN)/harness -m experiment=sft_vs_base

test: setup
	$(OFFLINE) $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

clean-results:
	rm -rf results/runs results/sweeps results/cache results/wandb results/smoke
