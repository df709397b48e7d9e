"""The ML-refined signal (decision 0007, "The ML-refined signal"): features, labels, training windows, the
estimator interface and the model artifacts' layout. Pure: no Dagster here.

The interface the signals asset needs (the `ml_filter` strategy kind) is four names:

    key = model_key("signal_model", period_of(session))          # "models/signal_model/2015/"
    model = model_from_bytes(raw_store.get_artifact(key + MODEL_FILE), sha256=meta["sha256"])
    scores = score(model, indicators)                             # (symbol, session, probability)

`score` keeps every input row: `probability` is null where a feature is null (a symbol's first ~252 bars,
before the 52-week high and the 200-session SMA exist); the caller decides what a buy without a
probability does (the `ml_filter` kind drops it, like a probability below `min_probability`).

Features (`FEATURES`) are row-local columns of the indicators table, so a feature of session D reads bars up
to D only and inherits the table's anchored, one-day-equals-range guarantee. `feature_frame` *drops* the rows
with any null (or non-finite) feature: a model is never fed a guessed value.

Label of (symbol, D): 1 when the symbol's close on the session `horizon` calendar sessions after D is above
D's close, 0 when it is not above; no label (no row) when the symbol has no bar on that session.

A model for period P (a calendar year "2015" by default, or a month "2015-03") is trained on the rows whose
label session is before P's first session, and whose session is within the `train_years` years before P's
start (`training_rows`), sampled deterministically to `max_rows` (`sample_rows`). `train_model` holds the
last `validation_fraction` of those sessions out (with a purge of `horizon` sessions, so no validation label
overlaps a training one) and fits on the rest: the validation figures are out of sample, and the artifact is
that fitted model.

Models are pickled (`to_bytes`), and unpickling runs code: load only artifacts this pipeline wrote, and pass
the sha256 from their metadata.json to `model_from_bytes`, which refuses other bytes. Same rows + seed give
the same bytes (tested).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import io
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

FEATURES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_21",
    "ret_63",
    "rsi_14",
    "macd_hist_close",  # macd_hist / close
    "close_sma_20",  # close / sma_20 - 1
    "close_sma_50",
    "close_sma_200",
    "pct_below_high_52w",
    "atr_close",  # atr_14 / close
    "bb_width",  # (bb_upper - bb_lower) / bb_middle
    "volume_ratio_20",
)
"""Model inputs, in the column order of every feature matrix."""

INDICATOR_INPUTS: tuple[str, ...] = (
    "symbol", "session", "close", "ret_1", "ret_5", "ret_21", "ret_63", "rsi_14", "macd_hist", "sma_20",
    "sma_50", "sma_200", "pct_below_high_52w", "atr_14", "bb_upper", "bb_middle", "bb_lower", "volume_ratio_20",
)
"""The indicators-table columns the features are computed from (what to select from the warehouse)."""

DEFAULT_HORIZON = 5
DEFAULT_TRAIN_YEARS = 3
DEFAULT_MAX_ROWS = 200_000
DEFAULT_VALIDATION_FRACTION = 0.2
MODEL_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
Retrain = Literal["yearly", "monthly"]

_EXPRESSIONS: dict[str, pl.Expr] = {
    "ret_1": pl.col("ret_1"),
    "ret_5": pl.col("ret_5"),
    "ret_21": pl.col("ret_21"),
    "ret_63": pl.col("ret_63"),
    "rsi_14": pl.col("rsi_14"),
    "macd_hist_close": pl.col("macd_hist") / pl.col("close"),
    "close_sma_20": pl.col("close") / pl.col("sma_20") - 1.0,
    "close_sma_50": pl.col("close") / pl.col("sma_50") - 1.0,
    "close_sma_200": pl.col("close") / pl.col("sma_200") - 1.0,
    "pct_below_high_52w": pl.col("pct_below_high_52w"),
    "atr_close": pl.col("atr_14") / pl.col("close"),
    "bb_width": (pl.col("bb_upper") - pl.col("bb_lower")) / pl.col("bb_middle"),
    "volume_ratio_20": pl.col("volume_ratio_20"),
}


# ------------------------------------------------------------------------------------------ features, labels


def _check_columns(frame: pl.DataFrame, needed: Sequence[str], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {frame.columns})")


def _features(indicators: pl.DataFrame) -> pl.DataFrame:
    _check_columns(indicators, INDICATOR_INPUTS, "the indicators frame")
    finite = [
        pl.when(e.cast(pl.Float64).is_finite()).then(e.cast(pl.Float64)).otherwise(None).alias(name)
        for name, e in _EXPRESSIONS.items()
    ]
    return indicators.select(pl.col("symbol").cast(pl.Utf8), pl.col("session").cast(pl.Date), *finite).sort(
        "session", "symbol"
    )


def feature_frame(indicators: pl.DataFrame) -> pl.DataFrame:
    """(symbol, session, *FEATURES) for every row of the indicators table whose features are all known
    (rows with a null or non-finite feature are dropped), sorted by (session, symbol)."""
    return _features(indicators).drop_nulls(list(FEATURES))


def feature_matrix(features: pl.DataFrame) -> np.ndarray:
    """The float64 (rows x FEATURES) matrix of a frame holding the FEATURES columns, in FEATURES order."""
    _check_columns(features, FEATURES, "the feature frame")
    return np.ascontiguousarray(features.select(FEATURES).to_numpy().astype(np.float64, copy=False))


def _epoch_days(calendar: Sequence[dt.date]) -> np.ndarray:
    return pl.Series(list(calendar), dtype=pl.Date).to_physical().to_numpy().astype(np.int64)


def _session_index(sessions: pl.Series, calendar: Sequence[dt.date], what: str) -> np.ndarray:
    cal_days = _epoch_days(calendar)
    days = sessions.cast(pl.Date).to_physical().to_numpy().astype(np.int64)
    at = np.searchsorted(cal_days, days)
    bad = (at >= cal_days.size) | (cal_days[np.minimum(at, cal_days.size - 1)] != days)
    if bad.any():
        day = sessions[int(np.flatnonzero(bad)[0])]
        raise ValueError(f"{what} holds {day}, which is not a session of the calendar given")
    return at


def labels(indicators: pl.DataFrame, calendar: Sequence[dt.date], horizon: int = DEFAULT_HORIZON) -> pl.DataFrame:
    """(symbol, session, label_session, label): label 1 when the symbol's close on `label_session` (the
    calendar session `horizon` sessions after `session`) is above the close of `session`, else 0. Rows whose
    symbol has no bar on `label_session` (not yet happened, delisted, a gap) get no row."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 session, got {horizon}")
    _check_columns(indicators, ("symbol", "session", "close"), "the indicators frame")
    bars = indicators.select(
        pl.col("symbol").cast(pl.Utf8), pl.col("session").cast(pl.Date), pl.col("close").cast(pl.Float64)
    )
    if bars.height == 0:
        return pl.DataFrame(schema={"symbol": pl.Utf8, "session": pl.Date, "label_session": pl.Date, "label": pl.Int8})
    at = _session_index(bars["session"], calendar, "the indicators frame") + horizon
    inside = at < len(calendar)
    cal_days = _epoch_days(calendar)
    label_session = pl.Series("label_session", cal_days[np.minimum(at, cal_days.size - 1)]).cast(pl.Int32).cast(pl.Date)
    ahead = bars.with_columns(label_session).filter(pl.Series(inside))
    later = bars.rename({"session": "label_session", "close": "_later"})
    return (
        ahead.join(later, on=["symbol", "label_session"], how="inner")
        .select(
            "symbol", "session", "label_session", (pl.col("_later") > pl.col("close")).cast(pl.Int8).alias("label")
        )
        .sort("session", "symbol")
    )


# ------------------------------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """A training period: `key` "2015" (yearly) or "2015-03" (monthly); days start..end inclusive."""

    key: str
    start: dt.date
    end: dt.date


_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def period_of(session: dt.date, retrain: Retrain = "yearly") -> str:
    """The key of the period holding `session`: "YYYY" (yearly) or "YYYY-MM" (monthly)."""
    if retrain == "yearly":
        return f"{session.year:04d}"
    if retrain == "monthly":
        return f"{session.year:04d}-{session.month:02d}"
    raise ValueError(f"retrain must be 'yearly' or 'monthly', got {retrain!r}")


def period_bounds(key: str) -> Period:
    """The first and last day of a period key ("2015" or "2015-03")."""
    if m := _YEAR.match(key):
        year = int(m.group(1))
        return Period(key, dt.date(year, 1, 1), dt.date(year, 12, 31))
    if (m := _MONTH.match(key)) and 1 <= int(m.group(2)) <= 12:
        year, month = int(m.group(1)), int(m.group(2))
        following = dt.date(year + (month == 12), month % 12 + 1, 1)
        return Period(key, dt.date(year, month, 1), following - dt.timedelta(days=1))
    raise ValueError(f"a training period is 'YYYY' (yearly) or 'YYYY-MM' (monthly), got {key!r}")


def years_before(day: dt.date, years: int) -> dt.date:
    """The same day `years` calendar years earlier (28 February for a 29th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def training_rows(
    features: pl.DataFrame,
    label_frame: pl.DataFrame,
    period_start: dt.date,
    horizon: int,
    train_years: int,
    calendar: Sequence[dt.date],
) -> pl.DataFrame:
    """(symbol, session, label_session, *FEATURES, label) usable to train the model of the period starting on
    `period_start`: label session strictly before the period's first session (the label is known when the
    period begins), session on or after `period_start` minus `train_years` years. Sorted by (session, symbol).

    `label_frame` must be `labels(..., horizon)` with this `horizon` (checked against `calendar`)."""
    if train_years < 1:
        raise ValueError(f"train_years must be >= 1, got {train_years}")
    _check_columns(label_frame, ("symbol", "session", "label_session", "label"), "the label frame")
    i = bisect.bisect_left(calendar, period_start)
    cutoff = calendar[i] if i < len(calendar) else period_start  # the period's first session
    rows = (
        features.join(label_frame.select("symbol", "session", "label_session", "label"), on=["symbol", "session"])
        .filter(
            (pl.col("label_session") < cutoff) & (pl.col("session") >= years_before(period_start, train_years))
        )
        .sort("session", "symbol")
    )
    if rows.height:
        gap = _session_index(rows["label_session"], calendar, "label_session") - _session_index(
            rows["session"], calendar, "session"
        )
        if not np.all(gap == horizon):
            raise ValueError(f"the labels were not made with horizon {horizon} (found a gap of {int(gap[gap != horizon][0])})")
    return rows


def period_rows(features: pl.DataFrame, label_frame: pl.DataFrame, period: Period) -> pl.DataFrame:
    """(symbol, session, label_session, *FEATURES, label) of the sessions inside `period` whose label is in
    `label_frame` (known within the data): the rows a model of that period is judged on, out of sample."""
    return (
        features.filter(pl.col("session").is_between(period.start, period.end))
        .join(label_frame.select("symbol", "session", "label_session", "label"), on=["symbol", "session"])
        .sort("session", "symbol")
    )


def sample_rows(rows: pl.DataFrame, max_rows: int, seed: int = 0) -> pl.DataFrame:
    """At most `max_rows` rows, chosen uniformly with a numpy Generator seeded by `seed`, kept in their order.
    The same rows (in the same order) and seed always give the same sample."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if rows.height <= max_rows:
        return rows
    picked = np.sort(np.random.default_rng(seed).choice(rows.height, size=max_rows, replace=False))
    return rows[pl.Series(picked)]


# ------------------------------------------------------------------------------------------------ the model


@runtime_checkable
class SignalModel(Protocol):
    """What the pipeline needs from an estimator: fit, P(label = 1), and bytes both ways."""

    name: str

    def fit(self, X: np.ndarray, y: np.ndarray) -> SignalModel: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(label = 1) per row of X (rows x FEATURES), a 1-D float64 array."""
        ...

    def to_bytes(self) -> bytes: ...

    @classmethod
    def from_bytes(cls, data: bytes) -> SignalModel: ...


@dataclass
class SklearnSignalModel:
    """A scikit-learn classifier pipeline behind the `SignalModel` interface (pickled whole)."""

    pipeline: Any
    params: dict[str, Any] = field(default_factory=dict)
    name: ClassVar[str] = "sklearn"

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnSignalModel:
        y = np.asarray(y).astype(np.int64)
        if np.unique(y).size < 2:
            raise ValueError(f"{self.name}: the training labels hold one class only ({int(y[0]) if y.size else 'none'})")
        self.pipeline.fit(np.asarray(X, dtype=np.float64), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(FEATURES):
            raise ValueError(f"{self.name}: X must be rows x {len(FEATURES)} features {FEATURES}, got {X.shape}")
        if X.shape[0] == 0:
            return np.empty(0)
        classes = list(self.pipeline.classes_)
        return np.ascontiguousarray(self.pipeline.predict_proba(X)[:, classes.index(1)], dtype=np.float64)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer, protocol=5)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SklearnSignalModel:
        model = pickle.loads(data)  # noqa: S301  (our own artifacts only: see model_from_bytes)
        if not isinstance(model, cls):
            raise TypeError(f"the bytes hold a {type(model).__name__}, not a {cls.__name__}")
        return model


@dataclass
class MlpSignalModel(SklearnSignalModel):
    """The default: Pipeline(StandardScaler, MLPClassifier(hidden, early stopping, a fixed seed))."""

    name: ClassVar[str] = "mlp"

    @classmethod
    def create(
        cls, seed: int = 0, hidden_layer_sizes: Sequence[int] = (32, 16), max_iter: int = 200, **extra: Any
    ) -> MlpSignalModel:
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        params = {
            "hidden_layer_sizes": tuple(int(h) for h in hidden_layer_sizes), "random_state": int(seed),
            "early_stopping": True, "max_iter": int(max_iter), **extra,
        }
        pipeline = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(**params))])
        return cls(pipeline, {**params, "hidden_layer_sizes": list(params["hidden_layer_sizes"])})


@dataclass
class LogisticSignalModel(SklearnSignalModel):
    """Pipeline(StandardScaler, LogisticRegression): a linear baseline."""

    name: ClassVar[str] = "logistic"

    @classmethod
    def create(cls, seed: int = 0, C: float = 1.0, max_iter: int = 1000, **extra: Any) -> LogisticSignalModel:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        params = {"C": float(C), "max_iter": int(max_iter), "random_state": int(seed), **extra}
        pipeline = Pipeline([("scale", StandardScaler()), ("logistic", LogisticRegression(**params))])
        return cls(pipeline, params)


ESTIMATORS: dict[str, Callable[..., SklearnSignalModel]] = {
    "mlp": MlpSignalModel.create,
    "logistic": LogisticSignalModel.create,
}
"""name -> factory(seed=..., **params). Add an entry to make another estimator configurable."""


def make_model(estimator: str = "mlp", seed: int = 0, **params: Any) -> SklearnSignalModel:
    """An unfitted model of the registered `estimator` with a fixed seed."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; registered: {sorted(ESTIMATORS)}")
    return ESTIMATORS[estimator](seed=seed, **params)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_from_bytes(data: bytes, sha256_hex: str | None = None) -> SklearnSignalModel:
    """A model from `model.pkl` bytes; with `sha256_hex` (metadata.json's "sha256"), other bytes are refused."""
    if sha256_hex is not None and sha256(data) != sha256_hex:
        raise ValueError(f"model bytes have sha256 {sha256(data)}, the metadata says {sha256_hex}: refusing to load")
    return SklearnSignalModel.from_bytes(data)


def score(model: SignalModel, indicators: pl.DataFrame) -> pl.DataFrame:
    """(symbol, session, probability) for every row of `indicators`, sorted by (session, symbol);
    `probability` = P(label 1) from `model`, null where a feature is null."""
    every = _features(indicators)
    known = every.select(pl.all_horizontal(pl.col(FEATURES).is_not_null()).alias("_ok"))["_ok"]
    probability = np.full(every.height, np.nan)
    if known.any():
        probability[known.to_numpy()] = model.predict_proba(feature_matrix(every.filter(known)))
    return every.select("symbol", "session").with_columns(pl.Series("probability", probability, nan_to_null=True))


def model_key(model_name: str, period: str) -> str:
    """"models/<model_name>/<period>/": where a model's artifacts live in the raw store."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", model_name):
        raise ValueError(f"a model name is letters, digits, '_', '-', '.', got {model_name!r}")
    period_bounds(period)  # validates
    return f"models/{model_name}/{period}/"


# ---------------------------------------------------------------------------------------- training, metrics


def evaluate(model: SignalModel, rows: pl.DataFrame, threshold: float = 0.5) -> dict[str, float | int]:
    """Precision, recall, accuracy, base rate, AUC and the share predicted positive (probability >=
    `threshold`) of `model` on `rows` (FEATURES and `label`). NaN where undefined (no positive predicted:
    precision; one class only: AUC)."""
    from sklearn.metrics import roc_auc_score

    n = rows.height
    if n == 0:
        nan = float("nan")
        return {"rows": 0, "base_rate": nan, "precision": nan, "recall": nan, "accuracy": nan, "auc": nan,
                "predicted_positive_rate": nan}
    y = rows["label"].to_numpy().astype(np.int64)
    p = model.predict_proba(feature_matrix(rows))
    predicted = p >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    positives, called = int(y.sum()), int(predicted.sum())
    return {
        "rows": n,
        "base_rate": positives / n,
        "precision": tp / called if called else float("nan"),
        "recall": tp / positives if positives else float("nan"),
        "accuracy": float(np.mean(predicted == (y == 1))),
        "auc": float(roc_auc_score(y, p)) if 0 < positives < n else float("nan"),
        "predicted_positive_rate": called / n,
    }


@dataclass(frozen=True)
class TrainedModel:
    model: SklearnSignalModel
    data: bytes  # model.to_bytes()
    metadata: dict[str, Any]  # what metadata.json holds (no timestamps: same inputs, same file)


def _split(rows: pl.DataFrame, validation_fraction: float, horizon: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    sessions = rows["session"].unique().sort()
    if validation_fraction <= 0 or sessions.len() < 2:
        return rows, rows.clear()
    first_validation = sessions[min(sessions.len() - 1, int(sessions.len() * (1 - validation_fraction)))]
    # purge: a training row's label must be known before the first validation session
    fit = rows.filter(pl.col("label_session") < first_validation)
    return fit, rows.filter(pl.col("session") >= first_validation)


def _window(rows: pl.DataFrame) -> dict[str, Any]:
    if rows.height == 0:
        return {"rows": 0}
    return {
        "rows": rows.height,
        "first_session": str(rows["session"].min()),
        "last_session": str(rows["session"].max()),
        "last_label_session": str(rows["label_session"].max()),
        "symbols": rows["symbol"].n_unique(),
    }


def train_model(
    rows: pl.DataFrame,
    *,
    estimator: str = "mlp",
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    horizon: int = DEFAULT_HORIZON,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    extra_metadata: Mapping[str, Any] | None = None,
) -> TrainedModel:
    """Fit a model on `training_rows` output: sample to `max_rows` (seeded), hold out the last
    `validation_fraction` of the sessions (purged by `horizon`), fit on the rest, and describe it all.

    Raises ValueError when there is nothing (or one class only) to fit on."""
    if rows.height == 0:
        raise ValueError("no training rows: the window holds no session with known features and label")
    sampled = sample_rows(rows, max_rows, seed)
    fit_rows, validation_rows = _split(sampled, validation_fraction, horizon)
    if fit_rows.height == 0:
        raise ValueError(f"no training rows left before the validation window ({_window(validation_rows)})")
    model = make_model(estimator, seed=seed, **dict(params or {}))
    model.fit(feature_matrix(fit_rows), fit_rows["label"].to_numpy())
    data = model.to_bytes()
    import sklearn

    metadata = {
        **dict(extra_metadata or {}),
        "estimator": estimator,
        "params": model.params,
        "seed": seed,
        "features": list(FEATURES),
        "horizon": horizon,
        "max_rows": max_rows,
        "validation_fraction": validation_fraction,
        "training_window": _window(rows),
        "sampled_rows": sampled.height,
        "fit_window": _window(fit_rows),
        "validation_window": _window(validation_rows),
        "in_sample": evaluate(model, fit_rows),
        "validation": evaluate(model, validation_rows),
        "sklearn_version": sklearn.__version__,
        "sha256": sha256(data),
    }
    return TrainedModel(model=model, data=data, metadata=metadata)
