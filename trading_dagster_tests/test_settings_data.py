"""`[data]` of the config: outages and whether the bars are split-adjusted (settings.data_policy)."""

from __future__ import annotations

import pytest

from trading_dagster.resources.configured import TradingConfigResource
from trading_dagster.settings import SettingsError, data_policy


def test_defaults_and_spellings():
    assert data_policy({}) == {"on_missing_session": "outage", "bars_split_adjusted": "auto"}
    assert data_policy({"data": {"bars_split_adjusted": False}})["bars_split_adjusted"] == "no"
    assert data_policy({"data": {"bars_split_adjusted": True, "on_missing_session": "halt"}}) == {
        "on_missing_session": "halt",
        "bars_split_adjusted": "yes",
    }


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"on_missing_session": "skip"}, "on_missing_session must be one of"),
        ({"bars_split_adjusted": "maybe"}, "bars_split_adjusted must be one of"),
        ({"bars_adjusted": "no"}, r"unknown keys \['bars_adjusted'\]"),
    ],
)
def test_a_bad_value_or_a_misspelt_key_is_refused(section, message):
    with pytest.raises(SettingsError, match=message):
        data_policy({"data": section})


@pytest.mark.parametrize(
    ("declared", "actions", "follows"),
    [("auto", "none", False), ("auto", "file", True), ("auto", "alpaca", True), ("yes", "file", False), ("no", "none", True)],
)
def test_the_book_follows_confirmed_breaks_only_on_unadjusted_bars(declared, actions, follows):
    assert TradingConfigResource(bars_split_adjusted=declared).book_follows_confirmed_breaks(actions) is follows
