# ollamapy developer entry points. `make serve` sets everything up and serves the default model;
# `make test` runs the whole suite (runner build and model fetch included, both cached).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VARIANT ?= auto
TEST_VARIANT ?= cpu
PYTEST_ARGS ?=
export OLLAMAPY_CACHE ?= $(HOME)/.cache/ollamapy

.PHONY: all venv vendor runner runner-test model serve test unit lint bench clean install-service

all: runner model

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

vendor:
	$(PYTHON) runners/vendor.py

runner: vendor
	$(PYTHON) runners/build.py --variant $(VARIANT)

runner-test: vendor
	$(PYTHON) runners/build.py --variant $(TEST_VARIANT)

model: venv
	$(BIN)/python -m ollamapy.default_model

serve: venv runner model
	$(BIN)/ollamapy serve

lint: venv
	$(BIN)/ruff check ollamapy tests runners bench

unit: venv
	$(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

test: venv runner-test model lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: venv runner-test model
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) vendor/llama.cpp runners/cpu runners/cuda runners/metal runners/rocm runners/vulkan
