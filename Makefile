.DEFAULT_GOAL := help
.PHONY: help install check test test-fast demo demo-stop bench soak stack-up stack-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-12s %s\n", $$1, $$2}'

install: ## create .venv and install the pinned dependencies
	scripts/bootstrap

check: ## ruff and mypy
	scripts/check

test: ## the whole suite against a real local stack it starts and stops
	scripts/test

test-fast: ## unit tests only (tests/core, tests/agents, tests/streams): no servers, seconds
	scripts/bootstrap
	.venv/bin/pytest -q -m unit

demo: ## start a stack, seed 50,000 users (DEMO_USERS=n), migrate them all, show live progress
	scripts/demo

demo-stop: ## stop the demo's worker and stack
	.venv/bin/python scripts/demo.py --stop

bench: ## end-to-end benchmark on a fresh stack: table + JSON (BENCH_QUICK=1, BENCH_USERS=n,m)
	scripts/bench

soak: ## fault soak (SOAK_TOPOLOGY=1: issue 21 runs: rolling restart, 3 brokers, scaling): SOAK_KILLS worker kills (25) among server faults, SOAK_USERS users (20000), SOAK_RUNS seeds (1), SOAK_CI=1: the CI schedule
	scripts/soak

stack-up: ## start the local stack under .stack and print its export lines
	@scripts/bootstrap && .venv/bin/migrator stack up

stack-down: ## stop the local stack under .stack
	@.venv/bin/migrator stack down

clean: ## stop stacks and remove .venv and stack data
	-.venv/bin/migrator stack down --dir .stack/test
	-.venv/bin/python scripts/demo.py --stop
	-.venv/bin/migrator stack down --dir .stack/bench
	-.venv/bin/migrator stack down
	rm -rf .venv .stack
