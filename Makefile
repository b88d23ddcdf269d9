# Two entry points (see README): `make demo` runs the main job, `make test` runs the whole test suite.
# Both create .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The development stack; torch/torchvision pinned to the wheels available on this platform.
DEV_PINS := torch==2.14.1 torchvision==0.29.1

# Offline schemas: use ../shared/schemas when it is there (CI and development), else the user cache.
SHARED_SCHEMAS := $(abspath ../shared/schemas)
ifneq ($(wildcard $(SHARED_SCHEMAS)/INDEX.json),)
export MLM_EXPORT_SCHEMA_DIR ?= $(SHARED_SCHEMAS)
endif

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(DEV_PINS) -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m mlm_export.demo --output demo-output

test: $(STAMP)
	$(BIN)/ruff check mlm_export tests benchmarks fixtures
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check mlm_export tests benchmarks fixtures
	$(BIN)/ruff format --check mlm_export tests benchmarks fixtures

clean:
	rm -rf $(VENV) demo-output .pytest_cache
