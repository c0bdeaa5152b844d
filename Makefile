# alignment-harness
#   make demo    set up, then run the default comparison (experiment=compare, about 8 minutes on 2 cores)
#   make test    set up, then run the test suite
#   make bench   set up, then run the benchmarks (bench/; about 45 minutes) -> results/bench/summary.json and .md
#   make setup   create .venv with the pinned stack (fast when already done)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# No hub is needed: the testbed builds its own model and data. Tests must never reach for one.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline WANDB_SILENT=true

CHROMIUM := /usr/bin/chromium
# The core's boundary (pyproject.toml [tool.importlinter]): plugins import harness.api only, no cycles in the core;
# and the example plugin package, from its source folder, under the contract an out-of-tree plugin can copy.
EXAMPLE_PLUGIN := examples/harness-example-plugin
IMPORT_CONTRACT := $(BIN)/lint-imports --no-cache && \
	PYTHONPATH=$(EXAMPLE_PLUGIN) $(BIN)/lint-imports --no-cache $(EXAMPLE_PLUGIN)/.importlinter

.PHONY: setup demo test docs bench lint browser clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# Six algorithms x three seeds on the testbed; ends with the comparison table and the path of report.html.
# (Every method: `harness -m experiment=zoo`.)
demo: setup
	$(OFFLINE) $(BIN)/harness -m experiment=compare

# ruff and the import contract first (a clean clone once failed ruff), then the docs build; then the suite on both
# cores, each test file on one worker so its module fixtures (shared trained stages) are built once
test: setup browser
	$(BIN)/ruff check .
	$(IMPORT_CONTRACT)
	$(MAKE) --no-print-directory docs
	$(OFFLINE) $(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

# The documentation site (mkdocs.yml: docs/ -> results/docs-site/); strict, so a broken link or anchor is an error
docs: setup
	$(BIN)/mkdocs build --strict --quiet

# Headless Chromium for the browser check of report.html, from Debian (Playwright's own browser download host is
# out of reach). Best effort: where it cannot be installed the browser test skips and says why.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing chromium with apt-get (for the report.html browser test)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null \
			|| echo "browser: note: apt-get could not install chromium; the browser test will skip"; \
	else echo "browser: note: $(CHROMIUM) missing and apt-get not usable (needs root); the browser test will skip"; fi

# Harness overhead vs plain TRL (SFT, DPO), our PPO vs TRL 1.12's PPOTrainer (own venv, made by the benchmark),
# and the demo end to end; ratios against baselines measured in the same run. BENCH_ARGS="--only ppo --reps 5"
bench: setup
	$(OFFLINE) $(BIN)/python -m bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(IMPORT_CONTRACT)

clean-results:
	rm -rf results/runs results/sweeps results/cache results/wandb results/smoke
