# The project's entry points. `make run` and `make test` are the README's two commands.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test test-sqlite lint bench clean screenshots

install: $(STAMP)

# Re-installs only when the project's declared dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	PORT=$(PORT) $(BIN)/python scripts/run_embedded.py

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The suite on SQLite, the embedded default `make run` users get, whatever DATABASE_URL says;
# the tests that need PostgreSQL are deselected (with CI=true a selected one fails the run).
test-sqlite: install
	env -u DATABASE_URL $(BIN)/python -m pytest -m "not postgres" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

bench: install
	$(BIN)/python -m bench $(if $(QUICK),--quick,) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) db.sqlite3 var/

# The README's page screenshots (needs Debian's chromium).
screenshots: install
	$(BIN)/python scripts/screenshots.py
