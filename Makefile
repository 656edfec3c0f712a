# Two commands take a fresh clone to a running Herald: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck coverage serve bench clean lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# setuptools 70.1 builds wheels by itself (tests/test_container.py builds one without isolation).
	$(BIN)/pip install --quiet --upgrade pip "setuptools>=70.1"
	$(BIN)/pip install --quiet -e '.[test,bench,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/herald demo --drill config/drills/order-api-outage.yaml

serve: $(STAMP)
	$(BIN)/herald serve

# One pytest worker a core (pytest-xdist; each worker has a PostgreSQL database of its own),
# measured by coverage as it runs; the table is printed at the end.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist load --cov --cov-report=term $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

coverage: test

bench: $(STAMP)
	$(BIN)/python -m bench.dispatch

# The container's dependency sets, every file pinned by hash, from PyPI: requirements.lock (what
# Herald runs on) and requirements-build.lock (setuptools, which builds the wheel and the one
# source-only dependency). Run after changing dependencies in pyproject.toml.
LOCK := PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-find-links --no-emit-index-url --index-url https://pypi.org/simple
lock: $(STAMP)
	$(BIN)/pip install --quiet "pip-tools>=7.4"
	$(LOCK) --output-file requirements.lock pyproject.toml
	echo "setuptools>=70.1" | $(LOCK) --output-file requirements-build.lock -

clean:
	rm -rf $(VENV) .pytest_cache *.db *.db-wal *.db-shm
