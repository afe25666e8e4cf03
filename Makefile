# One command is the whole check: `make test`. `make run` serves the app locally.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
AZURITE := node_modules/.bin/azurite
# The console's browser tests drive Debian's Chromium (Playwright's own download fails here).
CHROMIUM := /usr/bin/chromium

.PHONY: test check fmt lint types pytest run demo bench clean deps screenshots

deps: $(VENV)/.stamp $(AZURITE)

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 required, found " + sys.version' \
	  || { echo "set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(AZURITE): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(CHROMIUM):
	apt-get update && apt-get install -y chromium

test: deps $(CHROMIUM)
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider

fmt: $(VENV)/.stamp
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

run: deps
	$(PY) -m local.stack

demo: $(VENV)/.stamp
	$(PY) -m local.demo

# The README's console pictures (docs/console-*.png), from a seeded local stack.
screenshots: deps $(CHROMIUM)
	$(PY) -m tests.browser.screenshots docs

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .local-data .mypy_cache .ruff_cache .pytest_cache .hypothesis
