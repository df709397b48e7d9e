"""The independent reference backtest (vectorbt) and our pipeline run the same way (decision 0006)."""
