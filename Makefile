# make run   start a local Elasticsearch node, migrate, serve the demo on :8000
# make test  the whole suite against real PostgreSQL and Elasticsearch (and, through
#            node, the JavaScript clients in tests/clients)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the dependencies may have changed; the stamp dies with the venv.
STAMP := $(VENV)/.installed-from-pyproject
PYTEST_ARGS ?=
# The JavaScript clients some tests drive (tests/clients); `npm ci` again only when
# the lock changed, and the stamp dies with node_modules (npm ci starts afresh).
CLIENTS := tests/clients
CLIENTS_STAMP := $(CLIENTS)/node_modules/.installed-from-lock

.PHONY: venv clients test run lint schema packages-run packages-test graphiql-assets

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
	touch $@

clients: $(CLIENTS_STAMP)

$(CLIENTS_STAMP): $(CLIENTS)/package-lock.json $(CLIENTS)/package.json
	cd $(CLIENTS) && npm ci --no-audit --no-fund
	touch $@

# The system packages each command needs, installed when missing (as root or with sudo;
# without either, tools/install.sh prints the command to run).
packages-run:
	tools/install.sh run

packages-test:
	tools/install.sh test

# GraphiQL's assets, pinned by api/graphiql_assets/package-lock.json, so that GraphiQL
# works offline (api/pages.py serves them; without them the page uses the CDN).
GRAPHIQL_ASSETS := api/graphiql_assets
GRAPHIQL_STAMP := $(GRAPHIQL_ASSETS)/node_modules/.installed-from-lock

graphiql-assets: $(GRAPHIQL_STAMP)

$(GRAPHIQL_STAMP): $(GRAPHIQL_ASSETS)/package-lock.json
	npm ci --prefix $(GRAPHIQL_ASSETS) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test: packages-test venv clients graphiql-assets
	$(BIN)/python -m pytest $(PYTEST_ARGS)

run: packages-run venv graphiql-assets
	$(BIN)/bicameral search-node start
	$(BIN)/bicameral migrate
	$(BIN)/bicameral serve --demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# schema.graphql, and beside it the possibleTypes map Apollo's and urql's caches need
schema: venv
	$(BIN)/strawberry export-schema api.schema:schema --output schema.graphql
	$(BIN)/python -m tools.possible_types --schema schema.graphql --output possible-types.json

# make bench  each path against a baseline without Bicameral (BENCH_SIZE=smoke|default|full)
BENCH_SIZE ?= default
BENCH_ARGS ?=
.PHONY: bench
bench: venv
	$(BIN)/python -m bench --size $(BENCH_SIZE) $(BENCH_ARGS)
