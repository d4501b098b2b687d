# `make demo` and `make test` work on a fresh machine: they create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: setup test test-browser lint demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade "pip>=23"
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	$(BIN)/python -m pytest

# The person-search page in headless Chromium: the system's `chromium` (apt-get install chromium)
test-browser: setup
	$(BIN)/python -m pytest -m browser

demo: setup
	$(BIN)/cerberus demo --out $(DEMO_DIR)

clean:
	rm -rf $(VENV) runs data/synthetic .pytest_cache .ruff_cache
