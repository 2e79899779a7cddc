.PHONY: bootstrap test test-unit demo lint clean

VENV := .venv/bin

bootstrap:
	@scripts/bootstrap

test: bootstrap
	$(VENV)/pytest -q

test-unit: bootstrap
	$(VENV)/pytest -q tests/unit

demo: bootstrap
	$(VENV)/riskwatch demo

lint: bootstrap
	$(VENV)/ruff check .

clean:
	-$(VENV)/riskwatch services down
	rm -rf .riskwatch
