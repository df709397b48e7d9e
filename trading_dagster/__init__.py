"""trading-dagster."""
