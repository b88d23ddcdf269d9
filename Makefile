# Two entry points (see README): `make demo` runs the main job, `make test` runs the whole test suite (then the
# integration and adapter tests again on Python 3.12 + torchgeo 0.10 when a Python 3.12 is there: test-py312).
# Both create .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The development stack; torch/torchvision pinned to the wheels available on this platform.
DEV_PINS := torch==2.14.1 torchvision==0.29.1

# A second venv for the newest torchgeo (0.9+ needs Python >= 3.12): the integration and adapter tests run there too.
VENV312 := .venv312
STAMP312 := $(VENV312)/.installed
PY312_PINS := $(DEV_PINS) torchgeo==0.10.1
# pyenv's newest 3.12, else python3.12 on PATH; empty when none of them runs (then test-py312 is skipped).
PYTHON312 ?= $(shell for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null \
	| sort -rV) $$(command -v python3.12); do "$$p" -c '' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

# Schemas: the package ships those its Items need (validation works offline); ../shared/schemas, when it is
# there (CI and development), adds every published version. Without it, other versions go to the user cache.
SHARED_SCHEMAS := $(abspath ../shared/schemas)
ifneq ($(wildcard $(SHARED_SCHEMAS)/INDEX.json),)
export MLM_EXPORT_SCHEMA_DIR ?= $(SHARED_SCHEMAS)
endif

.PHONY: demo test test-py312 lint venv clean postgres stac-api stac-demo chromium card-screenshot form-screenshot

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
	@$(MAKE) --no-print-directory test-py312

$(STAMP312): pyproject.toml
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --upgrade pip
	$(VENV312)/bin/python -m pip install --quiet $(PY312_PINS) -e '.[all,dev]'
	touch $(STAMP312)

# The integration and adapter tests on Python 3.12 + torchgeo 0.10 (torchgeo.tasks); skipped without a Python 3.12.
test-py312:
	@if [ -z "$(PYTHON312)" ]; then \
		echo "test-py312: skipped (no Python 3.12: neither pyenv's versions/3.12* nor python3.12 on PATH)"; \
	else \
		$(MAKE) --no-print-directory $(STAMP312) PYTHON312="$(PYTHON312)" && \
		$(VENV312)/bin/python -m pytest tests/integrations tests/adapters; \
	fi

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

# docs/form.png in the README: the mlm-export form page filled in for a small ONNX model, shot by headless Chromium.
form-screenshot: $(STAMP) chromium
	$(BIN)/python fixtures/form_screenshot.py $(abspath docs/form.png)

lint: $(STAMP)
	$(BIN)/ruff check mlm_export tests benchmarks fixtures
	$(BIN)/ruff format --check mlm_export tests benchmarks fixtures

clean:
	rm -rf $(VENV) $(VENV312) demo-output .pytest_cache
