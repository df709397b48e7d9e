"""The ML-refined signal's pure parts (research/ml.py, decision 0007): labels, training windows, periods, the
model interface, and what a model learns.

Synthetic indicator frames on the real NYSE calendar: a planted pattern (the RSI column decides the sign of the
next sessions' returns) must be learnt well above the base rate, the same frame without the pattern must not
be; a model's bytes must not change when every bar after its training window's labels changes (no look-ahead),
and must repeat with a fixed seed.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from trading_dagster.research import ml

N_SYMBOLS = 16
FIRST, LAST = dt.date(2009, 1, 2), dt.date(2011, 12, 30)
SMALL = {"max_rows": 6000, "params": {"hidden_layer_sizes": [16, 8], "max_iter": 60}}


@pytest.fixture(scope="module")
def sessions(calendar) -> list[dt.date]:
    return [d for d in calendar if FIRST <= d <= LAST]


def synthetic_indicators(sessions: list[dt.date], *, pattern: bool, seed: int = 0) -> pl.DataFrame:
    """An indicators frame (the ml.INDICATOR_INPUTS columns) for N_SYMBOLS symbols: `rsi_14` a slow AR(1) around
    50; with `pattern`, each session's return has the sign of (rsi_14 of the day before - 50), so the close
    `horizon` sessions later is above today's mostly when rsi_14 > 50. Every other feature is noise."""
    rng = np.random.default_rng(seed)
    n = len(sessions)
    frames = []
    for s in range(N_SYMBOLS):
        z = np.zeros(n)
        for t in range(1, n):
            z[t] = 0.95 * z[t - 1] + rng.normal(0, 1)
        rsi = 50 + 6 * z
        drift = 0.004 * np.sign(np.concatenate([[0.0], rsi[:-1] - 50])) if pattern else 0.0
        close = 50 * np.exp(np.cumsum(drift + rng.normal(0, 0.006, n)))
        noise = {c: rng.normal(0, 0.02, n) for c in ("ret_1", "ret_5", "ret_21", "ret_63", "macd_hist")}
        frames.append(
            pl.DataFrame(
                {
                    "symbol": f"S{s:02d}",
                    "session": sessions,
                    "close": close,
                    **noise,
                    "rsi_14": rsi,
                    "sma_20": close * (1 + rng.normal(0, 0.02, n)),
                    "sma_50": close * (1 + rng.normal(0, 0.04, n)),
                    "sma_200": close * (1 + rng.normal(0, 0.08, n)),
                    "pct_below_high_52w": rng.uniform(0, 30, n),
                    "atr_14": close * rng.uniform(0.005, 0.03, n),
                    "bb_upper": close * 1.05,
                    "bb_middle": close,
                    "bb_lower": close * rng.uniform(0.9, 0.97, n),
                    "volume_ratio_20": rng.lognormal(0, 0.3, n),
                }
            )
        )
    return pl.concat(frames).select(ml.INDICATOR_INPUTS).sort("session", "symbol")


def train_for(indicators: pl.DataFrame, calendar, period: str, seed: int = 0, **kwargs) -> ml.TrainedModel:
    bounds = ml.period_bounds(period)
    rows = ml.training_rows(
        ml.feature_frame(indicators), ml.labels(indicators, calendar, 5), bounds.start, 5, 2, calendar
    )
    return ml.train_model(rows, seed=seed, **{**SMALL, **kwargs})


def out_of_sample(trained: ml.TrainedModel, indicators: pl.DataFrame, calendar, period: str) -> dict:
    rows = ml.period_rows(ml.feature_frame(indicators), ml.labels(indicators, calendar, 5), ml.period_bounds(period))
    return ml.evaluate(trained.model, rows)


@pytest.fixture(scope="module")
def planted(sessions) -> pl.DataFrame:
    return synthetic_indicators(sessions, pattern=True)


@pytest.fixture(scope="module")
def planted_model(planted, calendar) -> ml.TrainedModel:
    return train_for(planted, calendar, "2011")


# ---------------------------------------------------------------------------------------- what is learnt


def test_a_planted_pattern_is_learnt_out_of_sample(planted, planted_model, calendar) -> None:
    oos = out_of_sample(planted_model, planted, calendar, "2011")
    assert oos["rows"] > 3000
    assert oos["precision"] > oos["base_rate"] + 0.15, oos
    assert oos["auc"] > 0.7 and oos["recall"] > 0.5, oos
    assert planted_model.metadata["validation"]["precision"] > planted_model.metadata["validation"]["base_rate"] + 0.15


def test_without_a_pattern_precision_is_near_the_base_rate(sessions, calendar) -> None:
    noise = synthetic_indicators(sessions, pattern=False, seed=1)
    oos = out_of_sample(train_for(noise, calendar, "2011"), noise, calendar, "2011")
    assert oos["rows"] > 3000
    assert abs(oos["auc"] - 0.5) < 0.05, oos
    if oos["predicted_positive_rate"] > 0.02:  # precision is meaningful only over enough calls
        assert abs(oos["precision"] - oos["base_rate"]) < 0.06, oos


def test_the_logistic_estimator_is_a_registry_entry(planted, calendar) -> None:
    trained = train_for(planted, calendar, "2011", estimator="logistic", params={})
    assert isinstance(trained.model, ml.LogisticSignalModel) and trained.metadata["estimator"] == "logistic"
    assert out_of_sample(trained, planted, calendar, "2011")["auc"] > 0.7
    with pytest.raises(ValueError, match="unknown estimator 'forest'"):
        ml.make_model("forest")


# ---------------------------------------------------------------------------------------- no look-ahead


def test_bars_after_the_training_labels_do_not_change_the_model(planted, planted_model, calendar) -> None:
    """Every bar from the period's first session on (the training labels all end before it) is replaced by
    another random series: same model bytes. Changing bars inside the window does change them."""
    start = dt.date(2011, 1, 3)  # the first session of 2011
    other = synthetic_indicators(sorted(set(planted["session"].to_list())), pattern=False, seed=99)
    altered = pl.concat([planted.filter(pl.col("session") < start), other.filter(pl.col("session") >= start)])
    assert not altered.equals(planted)
    again = train_for(altered, calendar, "2011")
    assert again.data == planted_model.data and again.metadata["sha256"] == planted_model.metadata["sha256"]

    inside = dt.date(2010, 6, 1)
    touched = pl.concat([planted.filter(pl.col("session") < inside), other.filter(pl.col("session") >= inside)])
    assert train_for(touched, calendar, "2011").data != planted_model.data


def test_training_rows_never_reach_the_period(planted, calendar) -> None:
    features, label_frame = ml.feature_frame(planted), ml.labels(planted, calendar, 5)
    for start in (dt.date(2011, 1, 1), dt.date(2010, 7, 1), dt.date(2011, 3, 1), dt.date(2010, 11, 26)):
        first = next(d for d in calendar if d >= start)
        rows = ml.training_rows(features, label_frame, start, 5, 2, calendar)
        assert rows.height > 0
        assert rows["label_session"].max() < first
        # the boundary is tight: the last label is the session just before the period
        assert rows["label_session"].max() == max(d for d in calendar if d < first)
        assert rows["session"].min() >= ml.years_before(start, 2)
        assert set(rows.columns) >= {"symbol", "session", "label_session", "label", *ml.FEATURES}
    with pytest.raises(ValueError, match="horizon 3"):
        ml.training_rows(features, label_frame, dt.date(2011, 1, 1), 3, 2, calendar)


# ---------------------------------------------------------------------------------------- determinism, bytes


def test_same_rows_and_seed_give_the_same_bytes(planted, planted_model, calendar) -> None:
    again = train_for(planted, calendar, "2011")
    assert again.data == planted_model.data
    assert again.metadata == planted_model.metadata
    assert train_for(planted, calendar, "2011", seed=1).data != planted_model.data


def test_bytes_round_trip_and_the_sha256_guard(planted, planted_model) -> None:
    model = ml.model_from_bytes(planted_model.data, planted_model.metadata["sha256"])
    X = ml.feature_matrix(ml.feature_frame(planted).head(500))
    assert np.array_equal(model.predict_proba(X), planted_model.model.predict_proba(X))
    assert isinstance(model, ml.SignalModel) and isinstance(model, ml.MlpSignalModel)
    with pytest.raises(ValueError, match="refusing to load"):
        ml.model_from_bytes(planted_model.data, "0" * 64)
    with pytest.raises(TypeError, match="not a SklearnSignalModel"):
        ml.SklearnSignalModel.from_bytes(__import__("pickle").dumps({"a": 1}))


def test_metadata_describes_the_training(planted_model) -> None:
    meta = planted_model.metadata
    assert meta["features"] == list(ml.FEATURES) and meta["estimator"] == "mlp" and meta["seed"] == 0
    assert meta["params"]["hidden_layer_sizes"] == [16, 8] and meta["params"]["early_stopping"] is True
    assert meta["sampled_rows"] == 6000 < meta["training_window"]["rows"]
    assert meta["fit_window"]["last_label_session"] < meta["validation_window"]["first_session"]  # purged
    assert meta["training_window"]["last_label_session"] < "2011-01-01"
    assert meta["sha256"] == ml.sha256(planted_model.data)


def test_sampling_is_seeded_and_keeps_order(planted, calendar) -> None:
    rows = ml.feature_frame(planted)
    a, b = ml.sample_rows(rows, 1000, seed=3), ml.sample_rows(rows, 1000, seed=3)
    assert a.equals(b) and a.height == 1000
    assert not a.equals(ml.sample_rows(rows, 1000, seed=4))
    assert a.equals(a.sort("session", "symbol"))
    assert ml.sample_rows(rows, rows.height + 1).equals(rows)


# ---------------------------------------------------------------------------------------- labels, periods, keys


def test_labels_on_a_hand_made_frame(calendar) -> None:
    days = [d for d in calendar if d >= dt.date(2015, 1, 2)][:8]
    frame = pl.DataFrame(
        {
            "symbol": ["A"] * 8 + ["B"] * 7,
            "session": days + days[:5] + days[6:8],  # B has no bar on days[5]
            "close": [1.0, 2, 3, 2, 1, 1, 5, 0.5] + [3.0, 3, 3, 3, 3, 9, 1],
        }
    )
    got = ml.labels(frame, calendar, 2)
    a = got.filter(pl.col("symbol") == "A")
    assert a["label"].to_list() == [1, 0, 0, 0, 1, 0]  # close 2 sessions later > close: 3>1, 2>2 no, ...
    assert a["label_session"].to_list() == days[2:8]
    b = got.filter(pl.col("symbol") == "B")
    # B's days[3] would be labelled by days[5], where B has no bar: no row; days[4] -> days[6]: 9 > 3
    assert b["session"].to_list() == [days[0], days[1], days[2], days[4]] and b["label"].to_list() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="not a session"):
        ml.labels(frame.with_columns(pl.lit(dt.date(2015, 1, 3)).alias("session")), calendar, 2)


def test_periods_and_model_keys() -> None:
    assert ml.period_of(dt.date(2015, 3, 4)) == "2015" and ml.period_of(dt.date(2015, 3, 4), "monthly") == "2015-03"
    assert ml.period_bounds("2015") == ml.Period("2015", dt.date(2015, 1, 1), dt.date(2015, 12, 31))
    assert ml.period_bounds("2016-02").end == dt.date(2016, 2, 29)
    assert ml.period_bounds("2015-12").end == dt.date(2015, 12, 31)
    for bad in ("15", "2015-13", "2015/03", "2015-3"):
        with pytest.raises(ValueError, match="YYYY"):
            ml.period_bounds(bad)
    assert ml.model_key("signal_model", "2015") == "models/signal_model/2015/"
    with pytest.raises(ValueError, match="model name"):
        ml.model_key("a/b", "2015")
    assert ml.years_before(dt.date(2016, 2, 29), 1) == dt.date(2015, 2, 28)


def test_feature_frame_drops_incomplete_rows_and_score_keeps_them(planted, planted_model) -> None:
    holed = planted.with_columns(
        pl.when(pl.col("symbol") == "S00").then(None).otherwise(pl.col("sma_200")).alias("sma_200"),
        pl.when(pl.col("symbol") == "S01").then(0.0).otherwise(pl.col("sma_20")).alias("sma_20"),  # inf
    )
    features = ml.feature_frame(holed)
    assert features.columns == ["symbol", "session", *ml.FEATURES]
    assert set(features["symbol"].unique()) == {f"S{s:02d}" for s in range(2, N_SYMBOLS)}
    scored = ml.score(planted_model.model, holed)
    assert scored.height == holed.height and scored.columns == ["symbol", "session", "probability"]
    missing = scored.filter(pl.col("probability").is_null())["symbol"].unique().sort().to_list()
    assert missing == ["S00", "S01"]
    p = scored["probability"].drop_nulls()
    assert p.min() >= 0 and p.max() <= 1 and p.std() > 0.05
    with pytest.raises(ValueError, match="lacks columns"):
        ml.feature_frame(planted.drop("volume_ratio_20"))
