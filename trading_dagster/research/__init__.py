"""Research: parameter sweeps (issue 11). Pure functions, no Dagster; the assets wrap them."""
