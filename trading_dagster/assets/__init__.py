"""Thin assets: read inputs, call one domain function, return data plus metadata and check results."""
