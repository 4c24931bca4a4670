# Riffle developer commands. `make run` starts the local stack, `make test` runs the suite.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv bqemulator contract run test lint wheel-check bench bench-warehouse clean

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
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench,dev,asn]'
	@touch $(STAMP)

# The BigQuery emulator in its own virtualenv: it pins duckdb 1.5.5 and needs the
# spatial extension installed from the duckdb-extension-spatial wheel (no download).
BQ_VENV := .venv-bq
BQ_STAMP := $(BQ_VENV)/.installed
bqemulator: $(BQ_STAMP)

$(BQ_STAMP): $(STAMP)
	@if [ ! -x $(BQ_VENV)/bin/python ]; then \
	  base=$$($(BIN)/python -c 'import sys; print(sys._base_executable)'); \
	  "$$base" -m venv $(BQ_VENV); \
	fi
	$(BQ_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  'bqemulator==1.4.0' 'duckdb==1.5.5' 'duckdb-extensions>=1.5.5,<1.6' \
	  'duckdb-extension-spatial==1.5.5' 'numpy>=2,<3'
	$(BQ_VENV)/bin/python -c "from duckdb_extensions import import_extension; import_extension('spatial')"
	@touch $(BQ_STAMP)

# schemathesis (the API contract tests) in its own virtualenv: it pins a jsonschema-rs
# older than the one the schema registry uses in .venv. The tests call its CLI over HTTP.
CONTRACT_VENV := .venv-contract
CONTRACT_STAMP := $(CONTRACT_VENV)/.installed
contract: $(CONTRACT_STAMP)

$(CONTRACT_STAMP): $(STAMP)
	@if [ ! -x $(CONTRACT_VENV)/bin/python ]; then \
	  base=$$($(BIN)/python -c 'import sys; print(sys._base_executable)'); \
	  "$$base" -m venv $(CONTRACT_VENV); \
	fi
	$(CONTRACT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check 'schemathesis==4.32.5'
	@touch $(CONTRACT_STAMP)

run: venv
	$(BIN)/riffle up

# Test processes (pytest-xdist); each has its own broker, emulator and Redis prefix.
TEST_WORKERS ?= 2
test: venv bqemulator contract
	$(BIN)/pytest -m "not soak" -q -n $(TEST_WORKERS) --dist worksteal

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The built wheel, installed in a fresh virtualenv, runs and imports every module.
wheel-check: venv
	.ci/wheel-check

# The figures of docs/performance.md, one after another (about 20 minutes on 2 cores),
# then issue 12's targets beside what was measured (benchmarks/summary.py).
BENCH_RESULTS := .riffle/bench.jsonl
bench: venv
	@mkdir -p .riffle && rm -f $(BENCH_RESULTS)
	export RIFFLE_BENCH_RESULTS=$(abspath $(BENCH_RESULTS)); \
	$(BIN)/python -m benchmarks.e2e && \
	$(BIN)/python -m benchmarks.pipeline --processes 1,2 && \
	$(BIN)/python -m benchmarks.idle && \
	$(BIN)/python -m benchmarks.ingest && \
	$(BIN)/python -m benchmarks.query && \
	$(BIN)/python -m benchmarks.query --series 1 && \
	$(BIN)/python -m benchmarks.dedup
	$(BIN)/python -m benchmarks.summary $(BENCH_RESULTS)

bench-warehouse: venv bqemulator
	$(BIN)/python -m benchmarks.warehouse

# Resets the local stack too: `riffle reset` revokes its demo key (when Redis answers)
# and deletes .riffle/ (warehouse file, logs, recovery store, demo key).
clean:
	@if [ -x $(BIN)/riffle ]; then $(BIN)/riffle reset || true; fi
	rm -rf .riffle build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
