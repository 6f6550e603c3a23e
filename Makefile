# The two commands: `make demo` and `make test`. Everything else is set up by them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-minimums install lint typecheck migrate clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

migrate: install
	$(BIN)/tianxun db upgrade

demo: install
	$(BIN)/tianxun demo

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The suite again on the oldest release of each dependency that pyproject.toml allows, so that
# its minimums stay true.
MINIMUMS := .venv-minimums
test-minimums: install
	rm -rf $(MINIMUMS)
	$(BIN)/uv venv --quiet --python $(BIN)/python $(MINIMUMS)
	$(BIN)/uv pip install --quiet --python $(MINIMUMS)/bin/python --resolution lowest-direct \
		--only-binary :all: -e '.[dev]'
	$(MINIMUMS)/bin/pytest

clean:
	rm -rf $(VENV) $(MINIMUMS) tianxun.db tianxun.db-wal tianxun.db-shm var .pytest_cache
