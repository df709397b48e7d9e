"""Which partitions a revision makes stale (domain/staleness.py)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from trading_dagster.domain.staleness import RECORDS_SCHEMA, Dep, contiguous_ranges, stale_partitions

CAL = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(40)]
T0 = dt.datetime(2021, 1, 1, 12, 0)
GRAPH = [
    ("cleaned", [Dep("raw", back=2)]),
    ("indicators", [Dep("cleaned", back=5)]),
    ("orders", [Dep("indicators"), Dep("cleaned")]),
    ("executions", [Dep("orders", back=1), Dep("cleaned")]),
    ("equity", [Dep("cleaned", back=3)]),
]
CHAIN = ["orders", "executions", "equity"]


def _at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _records(sessions, minutes, run="r1") -> pl.DataFrame:
    return pl.DataFrame(
        {"session": list(sessions), "recorded_at": [_at(minutes)] * len(sessions), "run_id": [run] * len(sessions)},
        schema=RECORDS_SCHEMA,
    )


def _backfill(upto: int = 30) -> dict[str, pl.DataFrame]:
    """One range run over CAL[:upto]: every asset recorded in graph order, a minute apart."""
    return {asset: _records(CAL[:upto], k + 1) for k, (asset, _) in enumerate(GRAPH)}


def _raw(changes) -> pl.DataFrame:
    return pl.DataFrame(
        {"session": [s for s, _ in changes], "changed_at": [t for _, t in changes], "run_id": [None] * len(changes)},
        schema={"session": pl.Date(), "changed_at": pl.Datetime("us"), "run_id": pl.Utf8()},
    )


def _stale(raw_changes, records):
    return stale_partitions("raw", raw_changes, records, GRAPH, CHAIN, CAL)


def test_a_fresh_backfill_is_not_stale():
    assert _stale(_raw([(s, _at(0)) for s in CAL[:30]]), _backfill()) == {}


def test_a_revised_session_marks_its_reach_downstream_and_the_book_from_it_on():
    raw = _raw([(s, _at(0)) for s in CAL[:30]] + [(CAL[10], _at(60))])  # session 10 revised an hour later
    stale = _stale(raw, _backfill())
    assert stale["cleaned"].sessions == tuple(CAL[10:13])  # its own and the 2 whose history holds it
    assert stale["cleaned"].cause.upstream == "raw" and stale["cleaned"].cause.session == CAL[10]
    assert stale["indicators"].sessions == tuple(CAL[10:18])  # cleaned 10..12 plus a 5-session lookback
    assert stale["indicators"].cause.changed_at is None  # pending: cleaned is stale itself
    for asset in CHAIN:  # path dependent: from the first stale trading session to the last one recorded
        assert stale[asset].sessions == tuple(CAL[10:30]), asset
    assert contiguous_ranges(stale["indicators"].sessions, CAL) == [(CAL[10], CAL[17])]


def test_a_refresh_in_order_clears_everything():
    raw = _raw([(s, _at(0)) for s in CAL[:30]] + [(CAL[10], _at(60))])
    records = _backfill()
    stale = _stale(raw, records)
    for k, (asset, _) in enumerate(GRAPH):  # re-run each asset's stale sessions, upstream first; the trading
        run = "refresh-trading" if asset in CHAIN else f"refresh-{asset}"  # chain in one run, as the book needs
        again = _records(stale[asset].sessions, 120 + k, run=run)
        records[asset] = pl.concat([records[asset].filter(~pl.col("session").is_in(again["session"].implode())), again])
    assert _stale(raw, records) == {}


def test_refreshing_only_the_start_of_the_chain_leaves_the_rest_stale():
    raw = _raw([(s, _at(0)) for s in CAL[:30]] + [(CAL[10], _at(60))])
    records = _backfill()
    stale = _stale(raw, records)
    again = _records(stale["cleaned"].sessions, 120, run="refresh")
    records["cleaned"] = pl.concat([records["cleaned"].filter(pl.col("session") < CAL[10]), again, records["cleaned"].filter(pl.col("session") > CAL[12])])
    after = _stale(raw, records)
    assert "cleaned" not in after
    assert after["indicators"].sessions == tuple(CAL[10:18])  # now because cleaned changed after them
    assert after["indicators"].cause.changed_at == _at(120).replace(tzinfo=dt.UTC)


def test_a_past_trading_range_rerun_makes_the_later_book_stale():
    records = _backfill()
    for k, asset in enumerate(CHAIN):  # a user re-runs the trading assets of sessions 5..9, later
        records[asset] = pl.concat([records[asset].filter(~pl.col("session").is_between(CAL[5], CAL[9])), _records(CAL[5:10], 200 + k, run="r2")])
    stale = _stale(_raw([(s, _at(0)) for s in CAL[:30]]), records)
    assert set(stale) == set(CHAIN)
    for asset in CHAIN:
        assert stale[asset].sessions == tuple(CAL[10:30])  # the sessions planned on the old book
    cause = stale["orders"].cause  # the re-run's last session: its orders or its events
    assert cause.upstream in ("orders", "executions") and cause.session == CAL[9]


def test_daily_runs_after_a_backfill_are_not_stale():
    records = _backfill(upto=30)
    for day in (30, 31, 32):  # one run per day, each later than the last
        for k, (asset, _) in enumerate(GRAPH):
            records[asset] = pl.concat([records[asset], _records([CAL[day]], 100 * day + k, run=f"daily-{day}")])
    raw = _raw([(s, _at(0)) for s in CAL[:30]] + [(CAL[d], _at(100 * d - 1)) for d in (30, 31, 32)])
    assert _stale(raw, records) == {}


def test_a_late_import_of_new_symbols_into_a_cleaned_session_is_a_change():
    raw = _raw([(s, _at(0)) for s in CAL[:30]] + [(CAL[29], _at(90))])  # MSFT.csv after AAPL.csv
    stale = _stale(raw, _backfill())
    assert stale["cleaned"].sessions == (CAL[29],)
    assert stale["orders"].sessions == (CAL[29],)
