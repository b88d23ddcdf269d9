# Two entry points (see README): `make demo` runs the main job, `make test` runs the whole test suite.
# Both create .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The development stack; torch/torchvision pinned to the wheels available on this platform.
DEV_PINS := torch==2.14.1 torchvision==0.29.1

# Schemas: the package ships those its Items need (validation works offline); ../shared/schemas, when it is
# there (CI and development), adds every published version. Without it, other versions go to the user cache.
SHARED_SCHEMAS := $(abspath ../shared/schemas)
ifneq ($(wildcard $(SHARED_SCHEMAS)/INDEX.json),)
export MLM_EXPORT_SCHEMA_DIR ?= $(SHARED_SCHEMAS)
endif

.PHONY: demo test lint venv clean postgres stac-api stac-demo chromium card-screenshot

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(DEV_PINS) -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mlm_export.demo --output demo-output

test: $(STAMP) postgres chromium
	$(BIN)/ruff check mlm_export tests benchmarks fixtures
	$(BIN)/python -m pytest

# PostgreSQL 15 + PostGIS for the local STAC API (tests, stac-api, stac-demo): apt-get when root and missing.
PG_READY := test -x /usr/lib/postgresql/15/bin/initdb -a -f /usr/share/postgresql/15/extension/postgis.control
postgres:
	@$(PG_READY) || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-15-postgis-3; \
	else echo "Install PostgreSQL: sudo apt-get install postgresql-15 postgresql-15-postgis-3" >&2; exit 1; fi; }

# A local STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac) on 127.0.0.1 until Ctrl-C.
stac-api: $(STAMP) postgres
	$(BIN)/mlm-export serve-api $(if $(DATA),--data-dir $(DATA)) $(if $(PORT),--port $(PORT))

# The demo through the local STAC API: publish, search (pystac-client), load_model and check_item from the API Item.
stac-demo: $(STAMP) postgres
	$(BIN)/python -m mlm_export.stac_demo --output demo-output

# The card tests open cards in the system Chromium (Debian package; nothing downloads a browser). Idempotent.
chromium:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium is missing: run 'sudo apt-get install -y chromium' (the card tests need it)"; exit 1; fi; }

# docs/card.png in the README: the card of an official example, rendered and shot at 1280 px by headless Chromium.
CARD_EXAMPLE ?= ../shared/mlm-examples/item_eo_bands.json
card-screenshot: $(STAMP) chromium
	tmp=$$(mktemp -d) && \
	$(BIN)/python -m mlm_export card $(CARD_EXAMPLE) -o $$tmp/card.html && \
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --disable-background-networking \
		--disable-component-update --disable-sync --no-first-run --user-data-dir=$$tmp/profile \
		--window-size=1280,1150 --screenshot=$(abspath docs/card.png) file://$$tmp/card.html; \
	status=$$?; rm -rf $$tmp; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check mlm_export tests benchmarks fixtures
	$(BIN)/ruff format --check mlm_export tests benchmarks fixtures

clean:
	rm -rf $(VENV) demo-output .pytest_cache
