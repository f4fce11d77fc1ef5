# Set-up and checks. `make run` and `make test` work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
DEV := $(VENV)/.dev
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: install dev run test lint bench eval skills query-model clean

install: $(RUNTIME)

# the runtime only: what `cis` needs to serve (versions from constraints.txt)
$(RUNTIME): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || { echo "making $(VENV) (a Python virtual environment)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing CIS and its runtime into $(VENV) (about 370 MB: ONNX Runtime, the model, FastAPI, wasmtime)..."
	@$(PIP) -e .
	@# bytecode ahead of time: short CLI calls then skip compiling (PYTHONDONTWRITEBYTECODE may be set)
	@$(BIN)/python -m compileall -q src
	@echo "installed: $(BIN)/cis"
	@touch $@

# the runtime and the tools to check it: pytest, hypothesis, ruff, mypy, ziglang (WASM)
dev: $(DEV)

$(DEV): $(RUNTIME)
	@echo "installing the development tools into $(VENV) (pytest, ruff, mypy, ziglang: about 500 MB)..."
	@$(PIP) -e '.[dev]'
	@touch $@

# initialise the node if needed, make a first API token if there is none (its secret is
# shown this once), then serve HTTP and MCP on 127.0.0.1:7676 until Ctrl-C
run: install
	$(BIN)/cis init
	@$(BIN)/cis token list --json | grep -q '"name"' || $(BIN)/cis token create local
	$(BIN)/cis serve

lint: dev
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: dev
	@for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

eval: dev
	$(BIN)/python benchmarks/eval_locomo.py
	$(BIN)/python benchmarks/eval_paraphrase.py
	$(BIN)/python benchmarks/eval_sensitivity.py
	$(BIN)/pytest -m slow

# rebuild the WASM modules of the example skills and test fixtures from their C (ziglang);
# the built modules are committed, so tests need no compiler
SKILL_SOURCES := $(wildcard examples/skills/*/*.c tests/fixtures/skills/*/*.c)
skills: dev
	@for src in $(SKILL_SOURCES); do \
		$(BIN)/python -m ziglang cc --target=wasm32-wasi -Os -s -Wl,-z,stack-size=65536 \
			$$src -o $${src%.c}.wasm || exit 1; echo "built $${src%.c}.wasm"; done

# rewrite the query graph (src/cis/index/data/minilm-query.onnx) from the model wheel;
# it is committed, and a test checks that this writes it byte for byte
query-model: dev
	$(BIN)/python tools/query_model.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
