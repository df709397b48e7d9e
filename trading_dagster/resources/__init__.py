"""Resources: small interfaces (raw store, market data, broker, ...) with a real and a built-in implementation.

The core classes here are Dagster-free; the Dagster resource wrappers live next to the definitions.
"""
