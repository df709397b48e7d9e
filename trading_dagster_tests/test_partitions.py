"""The partitions are the NYSE sessions, from the exchange calendar, not a hand-written list."""

import datetime as dt
from collections import Counter

import pytest

from trading_dagster.partitions import lookback_mapping, session_calendar, sessions_partitions_def


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return sessions_partitions_def().get_partition_keys()


@pytest.mark.parametrize(("year", "sessions"), [(2008, 253), (2012, 250), (2017, 251), (2018, 251), (2022, 251), (2024, 252)])
def test_sessions_per_year_match_the_exchange(keys, year, sessions):
    assert Counter(k[:4] for k in keys)[str(year)] == sessions


def test_partitions_equal_the_calendar_sessions(keys):
    cal = session_calendar()
    expected = [d.isoformat() for d in cal.between(dt.date(2008, 1, 2), dt.date.fromisoformat(keys[-1]))]
    assert keys == expected
    assert keys[0] == "2008-01-02"


@pytest.mark.parametrize(
    "closed",
    ["2012-10-29", "2012-10-30", "2018-12-05", "2022-06-20", "2023-06-19", "2024-06-19", "2008-03-21", "2016-12-26"],
)
def test_unscheduled_closures_and_holidays_are_not_partitions(keys, closed):
    assert closed not in keys


def test_juneteenth_was_a_session_before_2022(keys):
    assert "2021-06-18" in keys  # observed Friday 2021-06-18 was still a trading day
    assert "2022-06-20" not in keys


def test_lookback_counts_sessions_not_days():
    pdef = sessions_partitions_def()
    mapped = lookback_mapping(200).get_upstream_mapped_partitions_result_for_partitions(
        pdef.subset_with_partition_keys(["2017-11-10"]), pdef, pdef
    )
    got = mapped.partitions_subset.get_partition_keys()
    assert len(got) == 201
    assert got[0] == session_calendar().offset(dt.date(2017, 11, 10), -200).isoformat()


def test_lookback_is_clipped_at_the_first_session():
    pdef = sessions_partitions_def()
    mapped = lookback_mapping(200).get_upstream_mapped_partitions_result_for_partitions(
        pdef.subset_with_partition_keys(["2008-01-04"]), pdef, pdef
    )
    assert mapped.partitions_subset.get_partition_keys() == ["2008-01-02", "2008-01-03", "2008-01-04"]


def test_sessions_before_a_day_skip_holidays_and_stop_at_the_first_session():
    cal = session_calendar()
    # 2024-07-05: the 4th was a holiday and 06-29/30 a weekend
    assert cal.before(dt.date(2024, 7, 5), 4) == [dt.date(2024, 6, 28), dt.date(2024, 7, 1), dt.date(2024, 7, 2), dt.date(2024, 7, 3)]
    assert cal.before(dt.date(2024, 7, 4), 1) == [dt.date(2024, 7, 3)]  # a non-session day works too
    assert cal.before(cal.first, 10) == []
    assert cal.before(cal.sessions[2], 10) == list(cal.sessions[:2])
