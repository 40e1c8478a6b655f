# fangxian — the two commands a newcomer needs are `make run` and `make test` (see README).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup test-deps lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

## Run the main job on embedded defaults: Tansu broker + worker + chdb + simulator.
run: setup
	$(BIN)/fangxian run

## Everything the tests need (Debian ClickHouse server, kcat, Kafka jars), then the whole suite.
test-deps: setup
	bash infra/install-test-deps.sh

test: test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## The benchmark harness (not part of the test run); figures in bench-results/.
bench: test-deps
	$(BIN)/fangxian bench

clean:
	rm -rf $(VENV) var bench-results .mypy_cache .ruff_cache .pytest_cache
