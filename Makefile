# Two commands do all set-up on a fresh machine with Python and make:
#   make run   - create .venv, install, migrate, seed the demo company, serve
#   make test  - install and run the whole suite on SQLite and on PostgreSQL
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Two xdist workers: the machines this runs on have two cores.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: run install install-dev test test-sqlite test-postgresql browser-deps lint format typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Links in the demo's emails point at this server unless BASE_URL says otherwise.
run: export BASE_URL ?= http://$(HOST):$(PORT)
run: install
	$(BIN)/python -m app migrate
	$(BIN)/python -m app seed-demo --if-empty
	$(BIN)/python -m app serve --with-worker --host $(HOST) --port $(PORT)

# Browser tests need Debian's chromium; install it when missing and we can (root + apt).
browser-deps:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "chromium is not installed and cannot be installed here: browser tests will be skipped"; \
	fi

# Both databases always run, so one failing does not hide the other's result.
test: install-dev browser-deps
	rm -rf test-reports
	@status=0; \
	$(MAKE) --no-print-directory test-sqlite || status=1; \
	$(MAKE) --no-print-directory test-postgresql || status=1; \
	exit $$status

test-sqlite:
	$(BIN)/pytest -n $(PYTEST_WORKERS) --db sqlite -q $(PYTEST_ARGS)

test-postgresql:
	$(BIN)/pytest -n $(PYTEST_WORKERS) --db postgresql -q $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install-dev
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) test-reports .pytest_cache .mypy_cache .ruff_cache
