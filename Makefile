.PHONY: bootstrap test test-unit demo lint clean

VENV := .venv/bin

bootstrap:
	@scripts/bootstrap

# The whole suite, after lint: a type or lint error fails `make test` before any test runs.
test: bootstrap lint
	$(VENV)/pytest -q -n 2 --durations=15

test-unit: bootstrap
	$(VENV)/pytest -q tests/unit

demo: bootstrap
	$(VENV)/riskwatch demo

# ruff over the tree; mypy strict over the stages (core ingest rules hazards alerting: [tool.mypy] in
# pyproject.toml); the architecture test (tests/unit/test_architecture.py) checks the import arrows.
lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/mypy

clean:
	-$(VENV)/riskwatch services down
	rm -rf .riskwatch
