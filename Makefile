# ctdhub — `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 5000
FUZZ_EXAMPLES ?= 500

.DEFAULT_GOAL := help
.PHONY: help venv assets demo test browser lint bench toolkit fuzz clean

# The world map's geometry: Natural Earth 1:110m countries as TopoJSON, from the npm package
# world-atlas, pinned by version and sha-256 and kept out of git (hub/static/portal/vendor/ is
# ignored). The hub draws maps from this copy and serves it itself; nothing is fetched at run
# time, so a hub on a closed network needs only this file copied with it.
WORLD_ATLAS_VERSION := 2.0.2
WORLD_ATLAS_TGZ_SHA256 := 032e7765f2ce00edaeafec23ff22bc3b77e42987c257da944cc585b452c05b97
WORLD_ATLAS := hub/static/portal/vendor/world-atlas/countries-110m.json

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create the virtual environment and install ctdhub with its dev tools

$(WORLD_ATLAS):
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	curl -fsSL --retry 3 -o "$$tmp/world-atlas.tgz" \
	  https://registry.npmjs.org/world-atlas/-/world-atlas-$(WORLD_ATLAS_VERSION).tgz && \
	echo "$(WORLD_ATLAS_TGZ_SHA256)  $$tmp/world-atlas.tgz" | sha256sum -c --quiet - && \
	tar -xzf "$$tmp/world-atlas.tgz" -C "$$tmp" package/countries-110m.json package/LICENSE && \
	mkdir -p $(dir $(WORLD_ATLAS)) && \
	cp "$$tmp/package/LICENSE" $(dir $(WORLD_ATLAS))LICENSE && \
	cp "$$tmp/package/countries-110m.json" $@.part && mv $@.part $@
	@echo "make: world-atlas $(WORLD_ATLAS_VERSION) (sha-256 checked) in $(dir $(WORLD_ATLAS))"

assets: $(WORLD_ATLAS) ## Fetch the pinned world map geometry (world-atlas, sha-256 checked) once

demo: $(STAMP) assets ## Initialise the SQLite hub, load the CTDC data through the upload API, serve it
	$(PY) -m hub.demo --host $(HOST) --port $(PORT)

test: $(STAMP) assets browser ## Run the whole test suite (PostgreSQL too when CTDHUB_TEST_POSTGRES_URL is set)
	$(PY) -m pytest

# The /docs tests (Selenium) and the portal's browser suite (Playwright, `pytest -m browser`)
# drive a real browser: Debian's chromium and its chromedriver, installed when missing (as root;
# otherwise it says what to run). Never a browser downloaded by a test tool: Playwright is
# pointed at /usr/bin/chromium.
browser: ## Install Debian's chromium and chromedriver for the browser tests, when missing
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	  else \
	    echo "make: the browser tests need Chromium: sudo apt-get install chromium chromium-driver" >&2; exit 1; \
	  fi; }

fuzz: $(STAMP) ## Fuzz every API operation with each role's token (FUZZ_EXAMPLES per operation)
	CTDHUB_TEST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/hub_security/test_fuzz.py -p no:cacheprovider

lint: $(STAMP) ## Check formatting, lint rules and types
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP) ## Run the benchmarks against their floors and peers (BENCH="upload sdc dp query synth scale ...")
	$(PY) -m bench $(BENCH)

toolkit: $(STAMP) ## Build the partner toolkit's own wheel (ctdhub-contribute) into dist/
	$(PY) -m pip wheel --no-deps -w dist ./toolkit

clean: ## Remove the environment and local state
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache dist toolkit/build
