# fangxian — the two commands a newcomer needs are `make run` and `make test` (see README).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test setup test-deps lint bench clean bi bi-install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(STAMP)

setup: $(STAMP)

## Run the main job on embedded defaults: Tansu broker + worker + chdb + simulator.
run: setup
	$(BIN)/fangxian run

## Everything the tests need (Debian ClickHouse server, kcat, Prometheus, Kafka jars, Superset's
## own cached virtualenv), then the whole suite.
test-deps: setup bi-install
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

## Apache Superset in its own cached virtualenv (outside the repo), with the community overview
## dashboard (infra/superset/dashboard) imported and connected as bi_reader over the native
## protocol: FANGXIAN_BI_CLICKHOUSE_URL=clickhouse+native://bi_reader:PASSWORD@HOST:9000/fangxian
SUPERSET_HOME ?= var/superset
bi-install:
	bash infra/superset/install.sh >/dev/null

bi: bi-install
	"$$(bash infra/superset/install.sh | tail -n 1)/bin/python" infra/superset/superset_bi.py setup --home $(SUPERSET_HOME)
	@echo "Superset: SUPERSET_CONFIG_PATH=$(SUPERSET_HOME)/superset_config.py $$(bash infra/superset/install.sh | tail -n 1)/bin/superset run -p 8088"

clean:
	rm -rf $(VENV) var bench-results .mypy_cache .ruff_cache .pytest_cache
