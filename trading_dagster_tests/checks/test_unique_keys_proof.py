"""`keys_proven_unique`: the cheap proof that no key repeats (a strictly increasing order of the keys, or as
many distinct key hashes as rows), and the uniqueness checks built on it, on the sample's real frames. A
proof never hides a duplicate: every frame here gets the same verdict as `DataFrame.is_duplicated`."""

from __future__ import annotations

import polars as pl
import pytest

from trading_dagster.checks import gx_suites
from trading_dagster.checks.rules import duplicated_keys, keys_proven_unique, unique_keys

KEYS = ["symbol", "session"]


def _variants(frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
    dup = frame.slice(frame.height // 2, 1)
    return {
        "by (symbol, session)": frame.sort(KEYS),
        "by (session, symbol)": frame.sort(["session", "symbol"]),
        "shuffled": frame.sample(fraction=1.0, shuffle=True, seed=3),
        "sorted, one row twice": pl.concat([frame, dup]).sort(KEYS),
        "shuffled, one row twice": pl.concat([frame, dup]).sample(fraction=1.0, shuffle=True, seed=3),
        "a null symbol twice": pl.concat(
            [frame, frame.head(2).with_columns(pl.lit(None, pl.Utf8).alias("symbol"))]
        ),
        "a null symbol once": pl.concat(
            [frame, frame.head(1).with_columns(pl.lit(None, pl.Utf8).alias("symbol"))]
        ),
    }


@pytest.mark.parametrize(
    "name, proven",
    [
        ("by (symbol, session)", True),
        ("by (session, symbol)", True),
        ("shuffled", True),
        ("sorted, one row twice", False),
        ("shuffled, one row twice", False),
        ("a null symbol twice", False),
        ("a null symbol once", False),
    ],
)
def test_the_proof_and_the_checks_agree_with_is_duplicated(cleaned, name, proven):
    frame = _variants(cleaned)[name]
    assert frame.height > 10_000
    assert keys_proven_unique(frame, KEYS) is proven
    truth = frame.select(KEYS).is_duplicated()
    assert duplicated_keys(frame, KEYS).equals(truth, check_names=False)
    outcome = unique_keys(frame, KEYS)
    assert outcome.passed is (truth.sum() == 0)
    assert outcome.metadata["offending_rows"] == truth.sum()
    if name.endswith("twice"):
        assert truth.sum() == 2


def test_the_order_proof_needs_strictly_increasing_keys(cleaned):
    ordered = cleaned.sort(KEYS)
    assert keys_proven_unique(ordered.head(1), KEYS)
    assert keys_proven_unique(ordered.head(0), KEYS)
    # equal neighbours are no proof even where the hashes would differ in count: the row repeats
    repeated = pl.concat([ordered.head(3), ordered.slice(2, 1), ordered.slice(3, 5)])
    assert not keys_proven_unique(repeated, KEYS)
    assert keys_proven_unique(ordered, ["symbol", "session", "close"])  # a superset of a unique key


@pytest.mark.parametrize("name", ["sorted, one row twice", "shuffled, one row twice", "shuffled"])
def test_the_gx_split_gives_the_verdict_gx_gives(cleaned, name):
    frame = _variants(cleaned)[name]
    sessions = cleaned["session"].unique().sort().to_list()
    split = gx_suites.validate("cleaned", frame, sessions=sessions, engine="split")
    whole = gx_suites.validate("cleaned", frame, sessions=sessions, engine="gx")
    label = "expect_compound_columns_to_be_unique(symbol, session)"
    assert split.passed is whole.passed is (name == "shuffled")
    if name != "shuffled":
        assert split.metadata[f"{label} unexpected_count"] == whole.metadata[f"{label} unexpected_count"] == 2
        assert split.failed_sessions == whole.failed_sessions


def test_a_frame_whose_first_rows_also_increase_on_another_order_is_still_proven_and_checked():
    """Sorted by (session, symbol) with more than the probe's rows in its first session: its first rows also
    increase on (symbol, session), which the rows spread over the frame rule out; a duplicate late in the frame
    is still found."""
    import datetime as dt

    import polars as pl

    from trading_dagster.checks import rules

    symbols = [f"S{i:04d}" for i in range(1500)]
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=d) for d in range(30)]
    frame = pl.DataFrame({"session": [d for d in days for _ in symbols], "symbol": symbols * len(days)})
    assert frame.head(rules._ORDER_PROBE_ROWS).select(
        rules._strictly_increasing(["symbol", "session"]).slice(1).all()
    ).item()
    assert rules.keys_proven_unique(frame, ["symbol", "session"])
    assert rules.unique_keys(frame, ["symbol", "session"]).passed
    twice = pl.concat([frame, frame.tail(1)])
    outcome = rules.unique_keys(twice, ["symbol", "session"])
    assert not outcome.passed and outcome.metadata["offending_rows"] == 2
    assert outcome.failed_sessions == (days[-1],)
