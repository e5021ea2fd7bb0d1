# Two commands do all set-up on a fresh machine with Python and make:
#   make run   - create .venv, install, migrate, seed the demo company, serve
#   make test  - install and run the whole suite on SQLite and on PostgreSQL
# Installs come from the lock files (exact versions with hashes); `make lock`
# regenerates them after a change to the dependencies in pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Two xdist workers: the machines this runs on have two cores.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=
UV     := $(BIN)/uv
LOCK     := requirements.lock
DEV_LOCK := requirements-dev.lock
# e.g. LOCK_ARGS=--upgrade to move every pin to the newest allowed version
LOCK_ARGS ?=
COMPILE = $(UV) pip compile --quiet pyproject.toml --universal --python-version 3.11 \
	--generate-hashes $(LOCK_ARGS)
LOWEST := .venv-lowest

.PHONY: run install install-dev lock test test-sqlite test-postgresql test-lowest browser-deps \
	lint format typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The locked versions first (pip checks every hash), then the project itself; pip check
# fails when the lock misses a dependency that pyproject.toml gained (run make lock).
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(BIN)/pip install -q -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip check
	touch $(VENV)/.installed $@

$(UV): | $(BIN)/python
	$(BIN)/pip install -q 'uv>=0.5'

# Runtime pins, and runtime + dev + bench pins, for every platform; the pins already
# in the files are kept unless a requirement moved (LOCK_ARGS=--upgrade moves them all).
# The runtime lock is constrained by the dev lock, so `make run` installs exactly the
# versions the suite ran on.
lock: | $(UV)
	$(COMPILE) --extra dev --extra bench -o $(DEV_LOCK)
	$(COMPILE) --constraint $(DEV_LOCK) -o $(LOCK)

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

# The unit tests (no database) on the lowest versions pyproject.toml allows, in a venv
# of their own: a floor that is too low fails here.
test-lowest: install-dev | $(UV)
	rm -rf $(LOWEST)
	$(UV) venv --quiet --python $(BIN)/python $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(UV) pip install --quiet --resolution lowest-direct -e '.[dev]'
	TEST_REPORT_DIR=test-reports/lowest $(LOWEST)/bin/python -m pytest -n $(PYTEST_WORKERS) \
		-q -m unit -p no:cacheprovider $(PYTEST_ARGS)

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
	rm -rf $(VENV) $(LOWEST) test-reports .pytest_cache .mypy_cache .ruff_cache
