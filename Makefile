# Schakel: every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check bench bench-accept vectors clean

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV) (pip's log: $(VENV)/install.log) ..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@( $(BIN)/python -m pip install --upgrade pip \
	  && $(BIN)/python -m pip install -e '.[dev]' ) > $(VENV)/install.log 2>&1 \
	  || { tail -n 30 $(VENV)/install.log; echo "installing into $(VENV) failed"; exit 1; }
	@touch $(STAMP)

run: $(STAMP)  ## the hub on SQLite at 127.0.0.1:8443 and a desk per organisation from :8501, demo network in ./var/demo
	$(BIN)/schakel demo run

test: $(STAMP)  ## the whole suite, one worker per core (pytest-xdist)
	$(BIN)/python -m pytest -q -n auto

check: $(STAMP)  ## lint, format and types
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy protocol keys hub clients desk pseudonymiser witness schakel bench

bench: $(STAMP)  ## benchmarks; figures as ratios against a floor measured in the same run
	$(BIN)/python -m bench

bench-accept: $(STAMP)  ## the accept path: hub against its group-commit floor, SQLite and PostgreSQL, with wrk
	@command -v wrk >/dev/null || apt-get install -y wrk || sudo apt-get install -y wrk
	$(BIN)/python -m bench.accept

vectors: $(STAMP)  ## regenerate tests/vectors/*.json from the committed generator
	$(BIN)/python tests/vectors/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
