# ollamapy developer entry points. `make serve` sets everything up and serves the default model;
# `make test` runs the whole suite (runner build and model fetch included, both cached).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VARIANT ?= auto
TEST_VARIANT ?= cpu
PYTEST_ARGS ?=
export OLLAMAPY_CACHE ?= $(HOME)/.cache/ollamapy

.PHONY: all venv vendor runner runner-test model-file model serve test test-agents unit lint bench clean install-service

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

# model-file: the verified GGUF in the cache (what tests need); model: also registered as
# smollm2:135m in $$OLLAMA_MODELS (what `make serve` needs).
model-file: venv
	$(BIN)/python -m ollamapy.default_model

model: model-file
	$(BIN)/python -m ollamapy.default_model --register

serve: venv runner model
	$(BIN)/ollamapy serve

lint: venv
	$(BIN)/ruff check ollamapy tests runners bench

unit: venv
	$(BIN)/pytest -m "not e2e and not integration" $(PYTEST_ARGS)

test: venv runner-test model-file lint
	$(BIN)/pytest --ignore=tests/agents $(PYTEST_ARGS)

# The slow agents suite (not in `make test`): npm-installs the pinned Claude Code and Codex CLI
# into $(OLLAMAPY_CACHE)/agents (once) and runs them against a real server; skips without npm.
test-agents: venv runner-test model-file
	$(BIN)/pytest tests/agents $(PYTEST_ARGS)

bench: venv runner-test model-file
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) vendor/llama.cpp runners/cpu runners/cuda runners/metal runners/rocm runners/vulkan

# Run ollamapy as a systemd service: `make venv runner`, then `sudo make install-service`.
# Installs packaging/ollamapy.service with this checkout's venv in ExecStart, keeps an existing
# /etc/ollamapy/ollamapy.env, creates the `ollamapy` system user (home and store under
# /var/lib/ollamapy), then enables and starts the unit. DESTDIR=/some/root only stages the files
# (packaging, tests): no user, no systemctl.
UNIT_DIR ?= /etc/systemd/system
DESTDIR ?=

install-service:
	@test -x $(BIN)/ollamapy || { echo "no $(BIN)/ollamapy: run 'make venv runner' first"; exit 1; }
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" != 0 ]; then \
		echo "install-service needs root: sudo make install-service"; exit 1; fi
	install -d $(DESTDIR)$(UNIT_DIR) $(DESTDIR)/etc/ollamapy
	sed -e 's|/opt/ollamapy/.venv|$(abspath $(VENV))|g' packaging/ollamapy.service \
		> $(DESTDIR)$(UNIT_DIR)/ollamapy.service
	chmod 0644 $(DESTDIR)$(UNIT_DIR)/ollamapy.service
	test -e $(DESTDIR)/etc/ollamapy/ollamapy.env || \
		install -m 0640 packaging/ollamapy.env $(DESTDIR)/etc/ollamapy/ollamapy.env
	@if [ -n "$(DESTDIR)" ]; then echo "staged under $(DESTDIR)"; exit 0; fi; \
	id -u ollamapy >/dev/null 2>&1 || useradd --system --user-group \
		--home-dir /var/lib/ollamapy --shell /usr/sbin/nologin ollamapy; \
	chgrp ollamapy /etc/ollamapy/ollamapy.env; \
	runuser -u ollamapy -- $(abspath $(BIN))/ollamapy --help >/dev/null 2>&1 || echo \
		"WARNING: user ollamapy cannot run $(abspath $(BIN))/ollamapy (checkout or the venv's" \
		"base interpreter unreadable, e.g. pyenv under /root): rebuild with a system python"; \
	for g in render video; do getent group $$g >/dev/null && usermod -aG $$g ollamapy; done; \
	if [ -d /run/systemd/system ]; then \
		systemctl daemon-reload && systemctl enable --now ollamapy.service && \
		systemctl --no-pager status ollamapy.service; \
	else echo "systemd is not running here: unit installed, start it on a systemd host"; fi
