# The two commands of the README:
#   make demo   set up (first run) and run the demo on embedded brokers
#   make test   set up (first run) and run lint, type checks and the tests
# Extra arguments for the demo: make demo ARGS="--fast --duration 60"
.PHONY: demo test setup-demo setup-test lint bench docs

VENV := .venv/bin

demo: setup-demo
	$(VENV)/streetwatch demo $(ARGS)

test: setup-test lint
	$(VENV)/pytest -q $(PYTEST_ARGS)

setup-demo:
	@scripts/setup.sh demo

setup-test:
	@scripts/setup.sh test

lint:
	$(VENV)/lint-imports
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/streetwatch docs --check docs

bench: setup-test
	$(VENV)/python -m bench.edge_path
	$(VENV)/python -m bench.gating
	$(VENV)/python -m bench.sensors
	$(VENV)/python -m bench.dispatch
	$(VENV)/python -m bench.outbox
	$(VENV)/python -m bench.review
	$(VENV)/python -m bench.privacy
	$(VENV)/python -m bench.box

docs:
	$(VENV)/streetwatch docs --write docs
