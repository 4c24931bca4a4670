# Riffle developer commands. `make run` starts the local stack, `make test` runs the suite.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint bench clean

venv: $(STAMP)

# Re-installs only when pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml
	@py=$$(command -v python3.11 || true); \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys' 2>/dev/null; then \
	  py=$$(command -v python3 || true); \
	  if [ -z "$$py" ] || ! "$$py" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))'; then \
	    echo "Riffle needs Python 3.11 (or 3.12): install python3.11 and run make again" >&2; exit 1; \
	  fi; \
	fi; \
	if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench,dev]'
	@touch $(STAMP)

run: venv
	$(BIN)/riffle up

test: venv
	$(BIN)/pytest -m "not soak" -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m benchmarks.pipeline

clean:
	rm -rf .riffle build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
