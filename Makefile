# Shortcuts for the README's commands (each one also works without make).
.PHONY: run test ui lint bench
run:   ## install everything and run the main job on the shipped sample
	python3 -m pip install -q uv && python3 -m uv run --locked trading-dagster demo
test:  ## install everything and run the tests
	python3 -m pip install -q uv && python3 -m uv run --locked pytest
ui:    ## the Dagster UI on the demo's history
	python3 -m uv run --locked trading-dagster ui
lint:
	python3 -m uv run --locked ruff check trading_dagster trading_dagster_tests benchmarks
bench: ## the full shared dataset through P&L (needs ../shared/data)
	python3 -m uv run --locked python benchmarks/full_backfill.py
