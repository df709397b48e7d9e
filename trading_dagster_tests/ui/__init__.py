"""The Dagster UI as the trader sees it, driven in Debian's chromium (test_browser.py)."""
