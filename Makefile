# The commands of README.md and docs/. `make help` lists them.
VENV ?= .venv
BIN := $(VENV)/bin
# `make run` and `make simulate` share a local demo key unless RECPIPE_GME_SECRET_KEYS is
# set, and a 15 s settle window so the demo is quick. Production sets its own of both.
# The CSS demo serves its files from 127.0.0.1:8089, so the demo allows exactly that address
# and port.
DEMO_ENV = RECPIPE_GME_SECRET_KEYS=$${RECPIPE_GME_SECRET_KEYS:-1400000000=recpipe-local-demo} \
	RECPIPE_SETTLE_SECONDS=$${RECPIPE_SETTLE_SECONDS:-15} \
	RECPIPE_CSS_CALLBACK_KEY=$${RECPIPE_CSS_CALLBACK_KEY:-recpipe-local-demo-css} \
	RECPIPE_CSS_ALLOWED_HOSTS=$${RECPIPE_CSS_ALLOWED_HOSTS:-127.0.0.1:8089}

.PHONY: help setup services run simulate simulate-css console test check lint unit integration bench soak docs

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install ffmpeg if missing and a virtualenv with recpipe in .venv
	@scripts/bootstrap.sh

services: ## start PostgreSQL, Redis and RabbitMQ where they are not answering; install prometheus if missing
	@scripts/services.sh

run: setup ## run recpipe on its embedded defaults: webhook on :8080, worker and beat
	$(DEMO_ENV) $(BIN)/recpipe run

simulate: setup ## post a simulated GME recording to `make run` and follow it to the archive
	$(DEMO_ENV) $(BIN)/recpipe simulate gme --wait

simulate-css: setup ## post simulated CSS recordings (split mp4, HLS) to `make run` and follow them
	$(DEMO_ENV) $(BIN)/recpipe simulate css --wait --port 8089

lint: setup ## ruff, mypy and the import contracts (lint-imports: which room may import which)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: setup ## regenerate docs/configuration.md from the settings' definitions (foundation/config.py)
	$(BIN)/recpipe config --markdown > docs/configuration.md

console: setup ## the operator console and HTTP API on 127.0.0.1:8081 (first: recpipe users add)
	$(BIN)/recpipe console

# The tests run on TEST_WORKERS pytest-xdist processes (TEST_WORKERS=0: one process). Most
# of their time is spent waiting on recpipe's processes, timers and ffmpeg, not on the CPU,
# so 4 workers pay on 2 cores. Each test has its own database, Redis database, virtual host
# and ports; tests/conftest.py puts those that must not overlap in one xdist group.
TEST_WORKERS ?= 4
XDIST = $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadgroup)

test: setup services lint ## everything: lint, types, unit and integration tests on real services
	$(BIN)/pytest $(XDIST)

check: lint ## the inner loop, under 2 minutes: lint, types and the unit tests
	$(BIN)/pytest tests/unit -q -n 2

unit: setup ## only the pure-core unit tests (no services)
	$(BIN)/pytest tests/unit

integration: setup services ## only the integration tests (tests/integration and tests/e2e)
	$(BIN)/pytest -m integration $(XDIST)

# `make bench BENCH_ARGS=--quick` for a short run; figures and profiles go to bench/out.
BENCH_ARGS ?=
bench: setup services ## gme_chain, webhook_load, burst and room_mix against their baselines (docs/testing.md); BENCH_ARGS=--quick
	$(BIN)/python bench/gme_chain.py $(BENCH_ARGS)
	$(BIN)/python bench/webhook_load.py $(BENCH_ARGS)
	$(BIN)/python bench/burst.py $(BENCH_ARGS)
	$(BIN)/python bench/room_mix.py $(BENCH_ARGS)

SOAK_ARGS ?=
soak: setup services ## 20 minutes of steady load: memory, fds, ledger and queues (docs/testing.md); SOAK_ARGS=--quick
	$(BIN)/python bench/soak.py $(SOAK_ARGS)
